package cloudsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

const patchDocument = "AWS-RunPatchBaseline"

func ssmService() *service {
	return &service{
		name: "ssm",
		handlers: map[string]handler{
			"SendCommand":                 ssmSendCommand,
			"ListCommands":                ssmListCommands,
			"ListCommandInvocations":      ssmListCommandInvocations,
			"GetCommandInvocation":        ssmGetCommandInvocation,
			"CancelCommand":               ssmCancelCommand,
			"DescribeInstanceInformation": ssmDescribeInstanceInformation,
			"DescribeInstancePatches":     ssmDescribeInstancePatches,
			"DescribeInstancePatchStates": ssmDescribeInstancePatchStates,
		},
		operation: func(c *call) error {
			target := c.r.Header.Get("X-Amz-Target")
			op, ok := strings.CutPrefix(target, "AmazonSSM.")
			if !ok || op == "" {
				return errf("UnknownOperationException", "X-Amz-Target %q: must be AmazonSSM.<Operation>", target)
			}
			c.op = op
			return nil
		},
		write: func(rw http.ResponseWriter, c *call, v any) {
			writeJSON(rw, c, http.StatusOK, v)
		},
		writeErr: func(rw http.ResponseWriter, c *call, e *apiError) {
			writeJSON(rw, c, e.Status, map[string]string{"__type": e.Code, "message": e.Message})
		},
		unknownKey:   apiError{"UnrecognizedClientException", "The security token included in the request is invalid.", 400},
		badSignature: apiError{"InvalidSignatureException", "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method.", 400},
		expired:      apiError{"ExpiredTokenException", "The security token included in the request is expired", 400},
		throttle:     apiError{"ThrottlingException", "Rate exceeded", 400},
		internal:     apiError{"InternalFailure", "The request processing has failed because of an unknown error, exception or failure.", 500},
	}
}

// jsonBufs are the hand-written answers' buffers, reused between calls as xmlBufs are.
var jsonBufs = sync.Pool{New: func() any { return new([]byte) }}

func writeJSON(rw http.ResponseWriter, c *call, status int, v any) {
	if a, ok := v.(jsonAppender); ok {
		buf := jsonBufs.Get().(*[]byte)
		body := a.appendJSON((*buf)[:0])
		rw.Header()["X-Amzn-Requestid"] = []string{c.requestID}
		writeBody(rw, status, jsonContentType, body)
		if cap(body) <= 1<<20 { // a very large page's array is dropped, as putXMLBuf does
			*buf = body
			jsonBufs.Put(buf)
		}
		return
	}
	b := getXMLBuf() // any bytes.Buffer: the JSON is encoded into a reused buffer
	defer putXMLBuf(b)
	if err := json.NewEncoder(b).Encode(v); err != nil {
		http.Error(rw, "encode response: "+err.Error(), http.StatusInternalServerError)
		return
	}
	b.Truncate(b.Len() - 1) // Encode ends the value with a newline; Marshal does not
	rw.Header()["X-Amzn-Requestid"] = []string{c.requestID}
	writeBody(rw, status, jsonContentType, b.Bytes())
}

// decode reads a JSON 1.1 request body.
func decode(c *call, v any) error {
	if len(c.body) == 0 {
		return nil
	}
	if err := json.Unmarshal(c.body, v); err != nil {
		return errf("SerializationException", "the request body is not valid JSON for %s: %v", c.op, err)
	}
	return nil
}

// epoch is a JSON 1.1 timestamp: seconds since the epoch, with milliseconds, 0 for the zero
// time. It is a json.Number, which encoding/json writes as it is: a MarshalJSON method was
// called through an interface and its output compacted again, for every time of a page.
type epoch = json.Number

// epochOf is t as an epoch.
func epochOf(t time.Time) epoch {
	if t.IsZero() {
		return "0"
	}
	return json.Number(strconv.FormatFloat(float64(t.UnixMilli())/1000, 'f', 3, 64))
}

func epochPtr(t time.Time) *epoch {
	if t.IsZero() {
		return nil
	}
	e := epochOf(t)
	return &e
}

var (
	concurrencyPattern = regexp.MustCompile(`^([1-9][0-9]*|[1-9][0-9]%|[1-9]%|100%|0)$`)
)

func validationErr(format string, args ...any) *apiError {
	return errf("ValidationException", "1 validation error detected: "+format, args...)
}

// ssmLimit checks MaxResults within [lo, hi] (def when absent).
func ssmLimit(n *int, lo, hi, def int) (int, error) {
	if n == nil {
		return def, nil
	}
	if *n < lo || *n > hi {
		return 0, validationErr("Value '%d' at 'maxResults' failed to satisfy constraint: Member must have value between %d and %d", *n, lo, hi)
	}
	return *n, nil
}

func ssmToken(prefix, token string) (uint64, error) {
	after, ok := parseToken(prefix, token)
	if !ok {
		return 0, errf("InvalidNextToken", "The specified token is not valid.")
	}
	return after, nil
}

// --- SendCommand ---

type ssmSendCommandInput struct {
	InstanceIDs    []string            `json:"InstanceIds"`
	Targets        []json.RawMessage   `json:"Targets"`
	DocumentName   string              `json:"DocumentName"`
	TimeoutSeconds *int                `json:"TimeoutSeconds"`
	Comment        string              `json:"Comment"`
	Parameters     map[string][]string `json:"Parameters"`
	MaxConcurrency string              `json:"MaxConcurrency"`
	MaxErrors      string              `json:"MaxErrors"`
}

type ssmCommand struct {
	CommandID             string              `json:"CommandId"`
	DocumentName          string              `json:"DocumentName"`
	DocumentVersion       string              `json:"DocumentVersion"`
	Comment               string              `json:"Comment"`
	ExpiresAfter          *epoch              `json:"ExpiresAfter,omitempty"`
	Parameters            map[string][]string `json:"Parameters"`
	InstanceIDs           []string            `json:"InstanceIds"`
	Targets               []any               `json:"Targets"`
	RequestedDateTime     *epoch              `json:"RequestedDateTime,omitempty"`
	Status                string              `json:"Status"`
	StatusDetails         string              `json:"StatusDetails"`
	OutputS3Region        string              `json:"OutputS3Region"`
	MaxConcurrency        string              `json:"MaxConcurrency"`
	MaxErrors             string              `json:"MaxErrors"`
	TargetCount           int                 `json:"TargetCount"`
	CompletedCount        int                 `json:"CompletedCount"`
	ErrorCount            int                 `json:"ErrorCount"`
	DeliveryTimedOutCount int                 `json:"DeliveryTimedOutCount"`
	TimeoutSeconds        int                 `json:"TimeoutSeconds"`
	ServiceRole           string              `json:"ServiceRole"`
}

func ssmSendCommand(c *call) (any, error) {
	var in ssmSendCommandInput
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	if in.DocumentName == "" {
		return nil, validationErr("Value null at 'documentName' failed to satisfy constraint: Member must not be null")
	}
	if in.DocumentName != patchDocument && !strings.HasSuffix(in.DocumentName, ":document/"+patchDocument) {
		return nil, errf("InvalidDocument", "Document %s does not exist in your account (cloudsim emulates %s only)", in.DocumentName, patchDocument)
	}
	if len(in.Targets) > 0 {
		return nil, errf("InvalidParameters", "cloudsim sends commands to InstanceIds only; Targets are not emulated")
	}
	ids := dedupe(in.InstanceIDs)
	if len(ids) == 0 {
		return nil, validationErr("Value null at 'instanceIds' failed to satisfy constraint: Member must not be null (cloudsim needs InstanceIds)")
	}
	if len(ids) > 50 {
		return nil, validationErr("Value '%s' at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to 50", "["+strings.Join(ids[:3], ", ")+", ...]")
	}
	timeout := 3600
	if in.TimeoutSeconds != nil {
		if *in.TimeoutSeconds < 30 || *in.TimeoutSeconds > 2592000 {
			return nil, validationErr("Value '%d' at 'timeoutSeconds' failed to satisfy constraint: Member must have value between 30 and 2592000", *in.TimeoutSeconds)
		}
		timeout = *in.TimeoutSeconds
	}
	for name, v := range map[string]string{"maxConcurrency": in.MaxConcurrency, "maxErrors": in.MaxErrors} {
		if v != "" && !concurrencyPattern.MatchString(v) {
			return nil, validationErr("Value '%s' at '%s' failed to satisfy constraint: Member must satisfy regular expression pattern: ^([1-9][0-9]*|[1-9][0-9]%%|[1-9]%%|100%%)$", v, name)
		}
	}
	p, err := patchParams(in.Parameters)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if !validSSMInstanceID(id) {
			return nil, errf("InvalidInstanceId", "Instance Id %s is not valid", id)
		}
	}
	var resp struct {
		Command ssmCommand `json:"Command"`
	}
	err = c.s.update(func(w *world, now time.Time) error {
		insts := make([]*instance, 0, len(ids))
		var invalid []string
		for _, id := range ids {
			x := w.instances[id]
			if x == nil || x.Account != c.id.Account || x.Region != c.region {
				invalid = append(invalid, id)
				continue
			}
			insts = append(insts, x)
		}
		c.instances = append(c.instances, ids...)
		if len(invalid) > 0 {
			return errf("InvalidInstanceId", "Instances [[%s]] not in a valid state for account %s", strings.Join(invalid, ", "), c.id.Account)
		}
		list, listErr := w.readOverrideList(p.overrideList)
		cmd := &command{ID: w.newUUID(), Account: c.id.Account, Region: c.region, DocumentName: patchDocument, Comment: in.Comment,
			Parameters: in.Parameters, InstanceIDs: ids, Requested: now, TimeoutSeconds: timeout,
			MaxConcurrency: in.MaxConcurrency, MaxErrors: in.MaxErrors}
		cmd.Ord = w.nextOrd()
		if cmd.MaxConcurrency == "" {
			cmd.MaxConcurrency = "50"
		}
		if cmd.MaxErrors == "" {
			cmd.MaxErrors = "0"
		}
		w.commands[cmd.ID] = cmd
		indexAdd(w.cmdByRegion, regionKey{cmd.Account, cmd.Region}, cmd)
		w.markCommand(cmd)
		for _, x := range insts {
			w.settle(x, now)
			v := w.planInvocation(cmd, x, p, list, listErr, now)
			w.invs[invKey{v.CommandID, v.InstanceID}] = v
			w.indexInvocation(v)
			w.markInvocation(v)
			c.s.stats.operation(x.ID, now, v.EndAt)
			w.settle(x, now)
		}
		resp.Command = commandJSON(cmd, now)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// patchRun are the parsed AWS-RunPatchBaseline parameters.
type patchRun struct {
	operation, reboot, overrideList, snapshotID string
	executionTimeout                            time.Duration
}

var documentParams = []string{"Operation", "RebootOption", "InstallOverrideList", "SnapshotId", "BaselineOverride", "AssociationId", "executionTimeout"}

func patchParams(params map[string][]string) (patchRun, error) {
	first := func(k string) string {
		if v := params[k]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	for _, k := range sortedKeys(params) {
		if !slices.Contains(documentParams, k) {
			return patchRun{}, errf("InvalidParameters", "Parameter %q is not defined for document %s (it takes %s)", k, patchDocument, strings.Join(documentParams, ", "))
		}
	}
	p := patchRun{operation: first("Operation"), reboot: first("RebootOption"), overrideList: first("InstallOverrideList"), snapshotID: first("SnapshotId")}
	if p.operation != "Install" && p.operation != "Scan" {
		return patchRun{}, errf("InvalidParameters", "Parameter \"Operation\" is %q: must be Install or Scan", p.operation)
	}
	if p.reboot == "" {
		p.reboot = "RebootIfNeeded"
	}
	if p.reboot != "RebootIfNeeded" && p.reboot != "NoReboot" {
		return patchRun{}, errf("InvalidParameters", "Parameter \"RebootOption\" is %q: must be RebootIfNeeded or NoReboot", p.reboot)
	}
	if p.overrideList != "" && !strings.HasPrefix(p.overrideList, "s3://") && !strings.HasPrefix(p.overrideList, "https://") {
		return patchRun{}, errf("InvalidParameters", "Parameter \"InstallOverrideList\" is %q: must be an s3:// or https:// URL", p.overrideList)
	}
	if v := first("executionTimeout"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return patchRun{}, errf("InvalidParameters", "Parameter \"executionTimeout\" is %q: must be a number of seconds >= 1", v)
		}
		p.executionTimeout = time.Duration(n) * time.Second
	}
	return p, nil
}

// readOverrideList reads and parses the install override list from cloudsim's S3
// (s3://bucket/key, or an https:// S3 URL, path or virtual-host style).
func (w *world) readOverrideList(u string) ([]overridePatch, error) {
	if u == "" {
		return nil, nil
	}
	bucketName, key, err := splitS3URL(u)
	if err != nil {
		return nil, err
	}
	objs := w.objects[bucketName]
	if w.buckets[bucketName] == nil {
		return nil, fmt.Errorf("download %s: NoSuchBucket: the bucket %s does not exist", u, bucketName)
	}
	o := objs[key]
	if o == nil {
		return nil, fmt.Errorf("download %s: NoSuchKey: the object %s does not exist", u, key)
	}
	return parseOverrideList(o.Data)
}

func splitS3URL(raw string) (bucketName, key string, err error) {
	if rest, ok := strings.CutPrefix(raw, "s3://"); ok {
		b, k, found := strings.Cut(rest, "/")
		if !found || b == "" || k == "" {
			return "", "", fmt.Errorf("install override list %q: must be s3://bucket/key", raw)
		}
		return b, k, nil
	}
	u, perr := url.Parse(raw)
	if perr != nil {
		return "", "", fmt.Errorf("install override list %q: %w", raw, perr)
	}
	host := u.Hostname()
	path := strings.TrimPrefix(u.Path, "/")
	switch {
	case strings.HasPrefix(host, "s3.") || strings.HasPrefix(host, "s3-") || host == "s3.amazonaws.com":
		b, k, _ := strings.Cut(path, "/")
		if b != "" && k != "" {
			return b, k, nil
		}
	case strings.Contains(host, ".s3.") || strings.Contains(host, ".s3-"):
		if i := strings.Index(host, ".s3"); i > 0 && path != "" {
			return host[:i], path, nil
		}
	}
	return "", "", fmt.Errorf("download %s: cloudsim reaches only its own S3 (s3://bucket/key or an https S3 URL)", raw)
}

// planInvocation decides an invocation's whole course when it is sent: its timing, its status
// and per-patch results, from the instance's state now, the configured rates and the
// injected faults. Its status is then a function of the clock alone.
func (w *world) planInvocation(cmd *command, in *instance, p patchRun, list []overridePatch, listErr error, now time.Time) *invocation {
	info := osCatalog[in.OS]
	v := &invocation{CommandID: cmd.ID, InstanceID: in.ID, Account: in.Account, Region: in.Region, Ord: w.nextOrd(),
		Requested: now, PendingUntil: now, EffectAt: now, EndAt: now, Operation: p.operation, RebootOption: p.reboot,
		OverrideList: p.overrideList, SnapshotID: p.snapshotID, Plugin: "PatchLinux", ResponseCode: -1}
	if info.Platform == "Windows" {
		v.Plugin = "PatchWindows"
	}
	undeliverable := func(why string) *invocation {
		v.Final, v.FinalDetails, v.Stderr, v.Applied = "Failed", "Undeliverable", why, true
		return v
	}
	switch {
	case !in.Agent:
		return undeliverable(fmt.Sprintf("The command could not be delivered to %s: it is not a managed node (no SSM Agent is registered for it).", in.ID))
	case in.State != "running":
		return undeliverable(fmt.Sprintf("The command could not be delivered to %s: the instance is %s, so its SSM Agent is not reachable.", in.ID, in.State))
	case in.AgentDropped:
		return undeliverable(fmt.Sprintf("The command could not be delivered to %s: its SSM Agent is not responding (PingStatus ConnectionLost).", in.ID))
	}
	start := now.Add(w.timing.CommandPending)
	if in.RebootUntil.After(start) {
		start = in.RebootUntil // delivered when the agent is back
	}
	runEnd := start.Add(w.timing.Command)
	v.PendingUntil, v.EffectAt, v.EndAt = start, runEnd, runEnd

	// Timeouts: TimeoutSeconds bounds the whole invocation, executionTimeout its run.
	limit := now.Add(time.Duration(cmd.TimeoutSeconds) * time.Second)
	switch {
	case !start.Before(limit):
		v.EffectAt, v.EndAt, v.PendingUntil = limit, limit, limit
		v.Final, v.FinalDetails, v.Applied = "TimedOut", "DeliveryTimedOut", true
		v.Stderr = fmt.Sprintf("The command was not delivered to %s within TimeoutSeconds (%d s).", in.ID, cmd.TimeoutSeconds)
		return v
	case runEnd.After(limit) || (p.executionTimeout > 0 && w.timing.Command > p.executionTimeout):
		end := limit
		if p.executionTimeout > 0 && start.Add(p.executionTimeout).Before(end) {
			end = start.Add(p.executionTimeout)
		}
		v.EffectAt, v.EndAt = end, end
		v.Final, v.FinalDetails, v.Applied, v.ResponseCode = "TimedOut", "ExecutionTimedOut", true, 124
		v.Stderr = fmt.Sprintf("The patch operation on %s was still running when it timed out.", in.ID)
		return v
	}
	if listErr != nil {
		v.Final, v.FinalDetails, v.ResponseCode, v.Applied = "Failed", "Failed", 1, true
		v.EffectAt, v.EndAt = start, start
		v.Stderr = "Failed to read the install override list: " + listErr.Error()
		v.Output = v.Stderr
		return v
	}
	forceFail := false
	if p.operation == "Install" && in.FailNextInstalls > 0 {
		in.FailNextInstalls--
		forceFail = true
		w.markInstance(in)
	}
	if list == nil && in.Patches != nil { // no override list: the baseline's missing patches
		for _, id := range sortedKeys(in.Patches) {
			if r := in.Patches[id]; p.operation == "Scan" || r.State == "MISSING" || r.State == "FAILED" {
				list = append(list, overridePatch{ID: id, Title: r.Title})
			}
		}
	}
	counts := map[string]int{}
	needReboot := false
	for _, op := range list {
		rec := w.patchMeta(in, op.ID, op.Title)
		old := in.Patches[op.ID]
		switch {
		case p.operation == "Scan":
			rec.State = "MISSING"
			if old != nil && isInstalled(old.State) {
				rec.State = old.State
			}
		case old != nil && isInstalled(old.State):
			rec.State = old.State // already installed: nothing to do
		case forceFail || hashUnit(w.seed, "patch-fail", in.ID, op.ID) < w.rates.PatchFailure:
			rec.State = "FAILED"
		case hashUnit(w.seed, "patch-reboot", in.ID, op.ID) < w.rates.RebootRequired:
			rec.State = "INSTALLED_PENDING_REBOOT"
			needReboot = true
		default:
			rec.State = "INSTALLED"
		}
		counts[rec.State]++
		v.Results = append(v.Results, rec)
	}
	v.Final, v.FinalDetails, v.ResponseCode = "Success", "Success", 0
	if counts["FAILED"] > 0 {
		v.Final, v.FinalDetails, v.ResponseCode = "Failed", "Failed", 1
		v.Stderr = fmt.Sprintf("%d patch(es) failed to install", counts["FAILED"])
	}
	for _, r := range in.Patches { // patches pending a reboot from earlier installs count too
		needReboot = needReboot || (p.operation == "Install" && r.State == "INSTALLED_PENDING_REBOOT")
	}
	if needReboot && p.reboot == "RebootIfNeeded" {
		v.Reboot = true
		v.EndAt = runEnd.Add(w.timing.Reboot) // the document resumes after the reboot
	}
	// The plugin's output is rendered from the results when it is read (output), not kept:
	// it is most of an invocation's size and is read once, if at all.
	v.OS, v.Rendered = in.OS, true
	return v
}

// output is the plugin's standard output of a finished invocation: for a patch operation that
// ran, the report rendered from its results.
func (v *invocation) output() string {
	if !v.Rendered {
		return v.Output
	}
	var out strings.Builder
	fmt.Fprintf(&out, "Patch operation: %s\nInstance: %s (%s)\nRebootOption: %s\n", v.Operation, v.InstanceID, v.OS, v.RebootOption)
	if v.OverrideList != "" {
		fmt.Fprintf(&out, "InstallOverrideList: %s\n", v.OverrideList)
	}
	counts := map[string]int{}
	for _, r := range v.Results {
		counts[r.State]++
		fmt.Fprintf(&out, "%s %s\n", r.ID, r.State)
	}
	fmt.Fprintf(&out, "Summary: %d installed, %d installed pending reboot, %d missing, %d failed\n",
		counts["INSTALLED"], counts["INSTALLED_PENDING_REBOOT"], counts["MISSING"], counts["FAILED"])
	if v.Reboot {
		out.WriteString("Rebooting the instance to finish installing patches\n")
	}
	return out.String()
}

func dedupe(ids []string) []string {
	seen := map[string]bool{}
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// commandStatus aggregates a command's invocations at t.
func commandStatus(cmd *command, t time.Time) (status, details string, completed, errs, deliveryTimedOut int) {
	pending, running, undeliverable := 0, 0, 0
	var failed, timedOut, cancelled int
	for _, v := range cmd.invs {
		st, d := v.statusAt(t)
		switch st {
		case "Pending":
			pending++
			continue
		case "InProgress":
			running++
			continue
		case "Failed":
			if d == "Undeliverable" {
				undeliverable++
			} else {
				failed++
				errs++
			}
		case "TimedOut":
			timedOut++
			if d == "DeliveryTimedOut" {
				deliveryTimedOut++
			} else {
				errs++
			}
		case "Cancelled":
			cancelled++
		}
		completed++
	}
	switch {
	case pending == len(cmd.invs):
		return "Pending", "Pending", completed, errs, deliveryTimedOut
	case pending+running > 0:
		return "InProgress", "InProgress", completed, errs, deliveryTimedOut
	case cancelled > 0:
		return "Cancelled", "Cancelled", completed, errs, deliveryTimedOut
	case timedOut > 0:
		return "TimedOut", "TimedOut", completed, errs, deliveryTimedOut
	case failed > 0:
		return "Failed", "Failed", completed, errs, deliveryTimedOut
	case undeliverable == len(cmd.invs):
		return "Failed", "Undeliverable", completed, errs, deliveryTimedOut
	default:
		return "Success", "Success", completed, errs, deliveryTimedOut
	}
}

func commandJSON(cmd *command, t time.Time) ssmCommand {
	st, d, completed, errs, dto := commandStatus(cmd, t)
	params := cmd.Parameters
	if params == nil {
		params = map[string][]string{}
	}
	return ssmCommand{CommandID: cmd.ID, DocumentName: cmd.DocumentName, DocumentVersion: "$DEFAULT", Comment: cmd.Comment,
		ExpiresAfter: epochPtr(cmd.Requested.Add(time.Duration(cmd.TimeoutSeconds) * time.Second)), Parameters: params,
		InstanceIDs: cmd.InstanceIDs, Targets: []any{}, RequestedDateTime: epochPtr(cmd.Requested), Status: st, StatusDetails: d,
		OutputS3Region: cmd.Region, MaxConcurrency: cmd.MaxConcurrency, MaxErrors: cmd.MaxErrors, TargetCount: len(cmd.invs),
		CompletedCount: completed, ErrorCount: errs, DeliveryTimedOutCount: dto, TimeoutSeconds: cmd.TimeoutSeconds}
}

// --- ListCommands, ListCommandInvocations, GetCommandInvocation, CancelCommand ---

type ssmCommandFilter struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type ssmListInput struct {
	CommandID  string             `json:"CommandId"`
	InstanceID string             `json:"InstanceId"`
	MaxResults *int               `json:"MaxResults"`
	NextToken  string             `json:"NextToken"`
	Filters    []ssmCommandFilter `json:"Filters"`
	Details    bool               `json:"Details"`
}

// commandFilter is a parsed ListCommands / ListCommandInvocations filter.
type commandFilter func(requested time.Time, status, document string) bool

// listRequest reads a ListCommands or ListCommandInvocations request: its page size, the
// position its token names and its filters.
func listRequest(c *call, tokenPrefix string) (in ssmListInput, limit int, after uint64, fs []commandFilter, err error) {
	if err = decode(c, &in); err != nil {
		return in, 0, 0, nil, err
	}
	if limit, err = ssmLimit(in.MaxResults, 1, 50, 50); err != nil {
		return in, 0, 0, nil, err
	}
	if after, err = ssmToken(tokenPrefix, in.NextToken); err != nil {
		return in, 0, 0, nil, err
	}
	fs, err = parseCommandFilters(in.Filters)
	return in, limit, after, fs, err
}

func parseCommandFilters(fs []ssmCommandFilter) ([]commandFilter, error) {
	var out []commandFilter
	for _, f := range fs {
		switch f.Key {
		case "InvokedAfter", "InvokedBefore":
			t, err := time.Parse(time.RFC3339, f.Value)
			if err != nil {
				return nil, errf("InvalidFilterValue", "Filter %s value %q: must be an ISO 8601 time like 2024-01-02T15:04:05Z", f.Key, f.Value)
			}
			after := f.Key == "InvokedAfter"
			out = append(out, func(r time.Time, _, _ string) bool {
				if after {
					return !r.Before(t)
				}
				return !r.After(t)
			})
		case "Status":
			valid := []string{"Pending", "InProgress", "Success", "Cancelled", "Failed", "TimedOut", "Cancelling"}
			if !slices.Contains(valid, f.Value) {
				return nil, errf("InvalidFilterValue", "Filter Status value %q: must be one of %s", f.Value, strings.Join(valid, ", "))
			}
			v := f.Value
			out = append(out, func(_ time.Time, s, _ string) bool { return s == v })
		case "DocumentName":
			v := f.Value
			out = append(out, func(_ time.Time, _, d string) bool { return d == v })
		case "ExecutionStage":
			if f.Value != "Executing" && f.Value != "Complete" {
				return nil, errf("InvalidFilterValue", "Filter ExecutionStage value %q: must be Executing or Complete", f.Value)
			}
			executing := f.Value == "Executing"
			out = append(out, func(_ time.Time, s, _ string) bool {
				return (s == "Pending" || s == "InProgress" || s == "Cancelling") == executing
			})
		default:
			return nil, errf("InvalidFilterKey", "Filter key %q: must be InvokedAfter, InvokedBefore, Status, ExecutionStage or DocumentName", f.Key)
		}
	}
	return out, nil
}

func matchAll(fs []commandFilter, requested time.Time, status, document string) bool {
	for _, f := range fs {
		if !f(requested, status, document) {
			return false
		}
	}
	return true
}

func (c *call) lookupCommand(w *world, id string) (*command, error) {
	if !validCommandID(id) {
		return nil, errf("InvalidCommandId", "Command ID %q is not valid", id)
	}
	cmd := w.commands[id]
	if cmd == nil || cmd.Account != c.id.Account || cmd.Region != c.region {
		return nil, errf("InvalidCommandId", "Command ID %s does not exist", id)
	}
	return cmd, nil
}

func ssmListCommands(c *call) (any, error) {
	in, limit, after, fs, err := listRequest(c, "lc")
	if err != nil {
		return nil, err
	}
	resp := struct {
		Commands  []ssmCommand `json:"Commands"`
		NextToken string       `json:"NextToken,omitempty"`
	}{Commands: []ssmCommand{}}
	err = c.view(func(w *world, now time.Time) error {
		resp.Commands, resp.NextToken = resp.Commands[:0], "" // view may run this twice
		match := func(cmd *command) bool {
			st, _, _, _, _ := commandStatus(cmd, now)
			return matchAll(fs, cmd.Requested, st, cmd.DocumentName)
		}
		var found []*command
		more := false
		switch {
		case in.CommandID != "":
			cmd, err := c.lookupCommand(w, in.CommandID)
			if err != nil {
				return err
			}
			if match(cmd) && (in.InstanceID == "" || slices.Contains(cmd.InstanceIDs, in.InstanceID)) {
				found = []*command{cmd}
			}
		case in.InstanceID != "":
			c.instances = append(c.instances, in.InstanceID)
			invs, m := page([]*ordSet[*invocation]{w.invByInst[in.InstanceID]}, after, limit, func(v *invocation) bool {
				cmd := w.commands[v.CommandID]
				return v.Account == c.id.Account && v.Region == c.region && cmd != nil && match(cmd)
			})
			for _, v := range invs {
				found = append(found, w.commands[v.CommandID])
			}
			more = m
			if more && len(invs) > 0 {
				resp.NextToken = pageToken("lc", invs[len(invs)-1].Ord)
			}
			more = false
		default:
			found, more = page([]*ordSet[*command]{w.cmdByRegion[regionKey{c.id.Account, c.region}]}, after, limit, match)
		}
		for _, cmd := range found {
			resp.Commands = append(resp.Commands, commandJSON(cmd, now))
		}
		if more && len(found) > 0 {
			resp.NextToken = pageToken("lc", found[len(found)-1].Ord)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

type ssmPlugin struct {
	Name                   string `json:"Name"`
	Status                 string `json:"Status"`
	StatusDetails          string `json:"StatusDetails"`
	ResponseCode           int    `json:"ResponseCode"`
	ResponseStartDateTime  *epoch `json:"ResponseStartDateTime,omitempty"`
	ResponseFinishDateTime *epoch `json:"ResponseFinishDateTime,omitempty"`
	Output                 string `json:"Output"`
	StandardOutputURL      string `json:"StandardOutputUrl"`
	StandardErrorURL       string `json:"StandardErrorUrl"`
	OutputS3Region         string `json:"OutputS3Region"`
	OutputS3BucketName     string `json:"OutputS3BucketName"`
	OutputS3KeyPrefix      string `json:"OutputS3KeyPrefix"`
}

type ssmInvocation struct {
	CommandID         string      `json:"CommandId"`
	InstanceID        string      `json:"InstanceId"`
	InstanceName      string      `json:"InstanceName"`
	Comment           string      `json:"Comment"`
	DocumentName      string      `json:"DocumentName"`
	DocumentVersion   string      `json:"DocumentVersion"`
	RequestedDateTime *epoch      `json:"RequestedDateTime,omitempty"`
	Status            string      `json:"Status"`
	StatusDetails     string      `json:"StatusDetails"`
	TraceOutput       string      `json:"TraceOutput"`
	StandardOutputURL string      `json:"StandardOutputUrl"`
	StandardErrorURL  string      `json:"StandardErrorUrl"`
	CommandPlugins    []ssmPlugin `json:"CommandPlugins"`
	ServiceRole       string      `json:"ServiceRole"`
}

// invocationView is what an invocation shows at t: status, response code, output, times.
type invocationView struct {
	status, details string
	code            int
	stdout, stderr  string
	started, ended  time.Time
}

func viewInvocation(v *invocation, t time.Time) invocationView {
	st, d := v.statusAt(t)
	iv := invocationView{status: st, details: d, code: -1}
	if !t.Before(v.PendingUntil) && d != "Undeliverable" && d != "DeliveryTimedOut" {
		iv.started = v.PendingUntil
	}
	switch st {
	case "Cancelled":
		iv.ended = v.CancelledAt
		iv.stderr = "The command was cancelled."
	case "Pending", "InProgress":
	default:
		iv.code, iv.stdout, iv.stderr, iv.ended = v.ResponseCode, v.output(), v.Stderr, v.EndAt
	}
	return iv
}

func invocationJSON(v *invocation, cmd *command, details bool, t time.Time) ssmInvocation {
	iv := viewInvocation(v, t)
	out := ssmInvocation{CommandID: v.CommandID, InstanceID: v.InstanceID, Comment: cmd.Comment, DocumentName: cmd.DocumentName,
		DocumentVersion: "$DEFAULT", RequestedDateTime: epochPtr(v.Requested), Status: iv.status, StatusDetails: iv.details,
		CommandPlugins: []ssmPlugin{}}
	if details {
		pst := iv.status
		if pst == "Cancelling" {
			pst = "InProgress"
		}
		output := iv.stdout
		if iv.stderr != "" {
			output += "\n----------ERROR-------\n" + iv.stderr
		}
		if len(output) > 2500 {
			output = output[:2500] // SSM keeps the first 2500 characters
		}
		out.CommandPlugins = []ssmPlugin{{Name: v.Plugin, Status: pst, StatusDetails: iv.details, ResponseCode: iv.code,
			ResponseStartDateTime: epochPtr(iv.started), ResponseFinishDateTime: epochPtr(iv.ended), Output: output,
			OutputS3Region: v.Region}}
	}
	return out
}

func ssmListCommandInvocations(c *call) (any, error) {
	in, limit, after, fs, err := listRequest(c, "lci")
	if err != nil {
		return nil, err
	}
	resp := &ssmInvocationsPage{CommandInvocations: []ssmInvocation{}}
	err = c.view(func(w *world, now time.Time) error {
		resp.CommandInvocations, resp.NextToken = resp.CommandInvocations[:0], "" // view may run this twice
		var sources []*ordSet[*invocation]
		switch {
		case in.CommandID != "":
			cmd, err := c.lookupCommand(w, in.CommandID)
			if err != nil {
				return err
			}
			sources = []*ordSet[*invocation]{{items: cmd.invs}}
		case in.InstanceID != "":
			sources = []*ordSet[*invocation]{w.invByInst[in.InstanceID]}
		default:
			sources = []*ordSet[*invocation]{w.invByRegion[regionKey{c.id.Account, c.region}]}
		}
		if in.InstanceID != "" {
			c.instances = append(c.instances, in.InstanceID)
		}
		found, more := page(sources, after, limit, func(v *invocation) bool {
			if v.Account != c.id.Account || v.Region != c.region || (in.InstanceID != "" && v.InstanceID != in.InstanceID) {
				return false
			}
			st, _ := v.statusAt(now)
			return matchAll(fs, v.Requested, st, patchDocument)
		})
		resp.CommandInvocations = slices.Grow(resp.CommandInvocations, len(found))
		for _, v := range found {
			resp.CommandInvocations = append(resp.CommandInvocations, invocationJSON(v, w.commands[v.CommandID], in.Details, now))
		}
		if more && len(found) > 0 {
			resp.NextToken = pageToken("lci", found[len(found)-1].Ord)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func isoDuration(d time.Duration) string {
	return "PT" + strconv.FormatFloat(d.Seconds(), 'f', 3, 64) + "S"
}

func ssmGetCommandInvocation(c *call) (any, error) {
	var in struct {
		CommandID  string `json:"CommandId"`
		InstanceID string `json:"InstanceId"`
		PluginName string `json:"PluginName"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	if in.CommandID == "" || in.InstanceID == "" {
		return nil, validationErr("CommandId and InstanceId are required")
	}
	c.instances = append(c.instances, in.InstanceID)
	type output struct {
		CommandID              string `json:"CommandId"`
		InstanceID             string `json:"InstanceId"`
		Comment                string `json:"Comment"`
		DocumentName           string `json:"DocumentName"`
		DocumentVersion        string `json:"DocumentVersion"`
		PluginName             string `json:"PluginName"`
		ResponseCode           int    `json:"ResponseCode"`
		ExecutionStartDateTime string `json:"ExecutionStartDateTime"`
		ExecutionElapsedTime   string `json:"ExecutionElapsedTime"`
		ExecutionEndDateTime   string `json:"ExecutionEndDateTime"`
		Status                 string `json:"Status"`
		StatusDetails          string `json:"StatusDetails"`
		StandardOutputContent  string `json:"StandardOutputContent"`
		StandardOutputURL      string `json:"StandardOutputUrl"`
		StandardErrorContent   string `json:"StandardErrorContent"`
		StandardErrorURL       string `json:"StandardErrorUrl"`
	}
	var resp output
	err := c.view(func(w *world, now time.Time) error {
		v := w.invs[invKey{in.CommandID, in.InstanceID}]
		if v == nil || v.Account != c.id.Account || v.Region != c.region {
			return errf("InvocationDoesNotExist", "The command %s was not invoked on instance %s", in.CommandID, in.InstanceID)
		}
		if in.PluginName != "" && in.PluginName != v.Plugin {
			return errf("InvalidPluginName", "Plugin %q is not part of the invocation (its plugin is %s)", in.PluginName, v.Plugin)
		}
		cmd := w.commands[v.CommandID]
		iv := viewInvocation(v, now)
		resp = output{CommandID: v.CommandID, InstanceID: v.InstanceID, Comment: cmd.Comment, DocumentName: cmd.DocumentName,
			DocumentVersion: "$DEFAULT", PluginName: v.Plugin, ResponseCode: iv.code, Status: iv.status, StatusDetails: iv.details,
			StandardOutputContent: truncate(iv.stdout, 24000), StandardErrorContent: truncate(iv.stderr, 8000)}
		if !iv.started.IsZero() {
			resp.ExecutionStartDateTime = xmlTime(iv.started)
			end := now
			if !iv.ended.IsZero() {
				end = iv.ended
				resp.ExecutionEndDateTime = xmlTime(iv.ended)
			}
			resp.ExecutionElapsedTime = isoDuration(end.Sub(iv.started))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func ssmCancelCommand(c *call) (any, error) {
	var in struct {
		CommandID   string   `json:"CommandId"`
		InstanceIDs []string `json:"InstanceIds"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	if len(in.InstanceIDs) > 50 {
		return nil, validationErr("Value at 'instanceIds' failed to satisfy constraint: Member must have length less than or equal to 50")
	}
	c.instances = append(c.instances, in.InstanceIDs...)
	err := c.s.update(func(w *world, now time.Time) error {
		cmd, err := c.lookupCommand(w, in.CommandID)
		if err != nil {
			return err
		}
		for _, v := range cmd.invs {
			if len(in.InstanceIDs) > 0 && !slices.Contains(in.InstanceIDs, v.InstanceID) {
				continue
			}
			if x := w.instances[v.InstanceID]; x != nil {
				w.settle(x, now)
			}
			if st, _ := v.statusAt(now); (st == "Pending" || st == "InProgress") && now.Before(v.EffectAt) {
				v.CancelledAt, v.Applied = now, true // the effect will not happen
				w.markInvocation(v)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return struct{}{}, nil
}

// --- DescribeInstanceInformation ---

type ssmStringFilter struct {
	Key    string   `json:"Key"`
	Values []string `json:"Values"`
}

type ssmInfoFilter struct {
	Key      string   `json:"key"`
	ValueSet []string `json:"valueSet"`
}

type ssmInstanceInfo struct {
	InstanceID       string `json:"InstanceId"`
	PingStatus       string `json:"PingStatus"`
	LastPingDateTime *epoch `json:"LastPingDateTime,omitempty"`
	AgentVersion     string `json:"AgentVersion"`
	IsLatestVersion  bool   `json:"IsLatestVersion"`
	PlatformType     string `json:"PlatformType"`
	PlatformName     string `json:"PlatformName"`
	PlatformVersion  string `json:"PlatformVersion"`
	ResourceType     string `json:"ResourceType"`
	IPAddress        string `json:"IPAddress"`
	ComputerName     string `json:"ComputerName"`
	SourceID         string `json:"SourceId"`
	SourceType       string `json:"SourceType"`
}

func ssmDescribeInstanceInformation(c *call) (any, error) {
	var in struct {
		InstanceInformationFilterList []ssmInfoFilter   `json:"InstanceInformationFilterList"`
		Filters                       []ssmStringFilter `json:"Filters"`
		MaxResults                    *int              `json:"MaxResults"`
		NextToken                     string            `json:"NextToken"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	if len(in.InstanceInformationFilterList) > 0 && len(in.Filters) > 0 {
		return nil, errf("InvalidFilter", "Specify InstanceInformationFilterList or Filters, not both")
	}
	fs := append([]ssmStringFilter(nil), in.Filters...)
	for _, f := range in.InstanceInformationFilterList {
		fs = append(fs, ssmStringFilter{Key: f.Key, Values: f.ValueSet})
	}
	for _, f := range fs {
		switch {
		case f.Key == "InstanceIds", f.Key == "PingStatus", f.Key == "PlatformTypes", f.Key == "ResourceType", f.Key == "tag-key", strings.HasPrefix(f.Key, "tag:"):
		default:
			return nil, errf("InvalidInstanceInformationFilterValue", "Filter key %q: cloudsim filters on InstanceIds, PingStatus, PlatformTypes, ResourceType, tag:<key> and tag-key", f.Key)
		}
		if len(f.Values) == 0 {
			return nil, errf("InvalidInstanceInformationFilterValue", "Filter %s: needs at least one value", f.Key)
		}
	}
	limit, err := ssmLimit(in.MaxResults, 5, 50, 50)
	if err != nil {
		return nil, err
	}
	after, err := ssmToken("dii", in.NextToken)
	if err != nil {
		return nil, err
	}
	resp := &ssmInstanceInfoPage{InstanceInformationList: []ssmInstanceInfo{}}
	err = c.view(func(w *world, now time.Time) error {
		resp.InstanceInformationList, resp.NextToken = resp.InstanceInformationList[:0], "" // view may run this twice
		sources := []*ordSet[*instance]{w.instByRegion[regionKey{c.id.Account, c.region}]}
		var ec2Filters []filter
		for _, f := range fs {
			switch {
			case f.Key == "InstanceIds":
				ec2Filters = append(ec2Filters, filter{Name: "instance-id", Values: f.Values})
				c.instances = append(c.instances, f.Values...)
			case f.Key == "tag-key" || strings.HasPrefix(f.Key, "tag:"):
				ec2Filters = append(ec2Filters, filter{Name: f.Key, Values: f.Values})
			}
		}
		if len(ec2Filters) > 0 {
			sources = w.instanceSources(c.id.Account, c.region, ec2Filters)
		}
		found, more := page(sources, after, limit, func(x *instance) bool {
			if !x.Agent {
				return false // agent-less instances are not managed nodes: absent, as on AWS
			}
			w.settle(x, now)
			if !instanceMatches(x, ec2Filters) {
				return false
			}
			for _, f := range fs {
				switch f.Key {
				case "PingStatus":
					if !slices.Contains(f.Values, x.pingStatus(now)) {
						return false
					}
				case "PlatformTypes":
					if !slices.Contains(f.Values, osCatalog[x.OS].Platform) {
						return false
					}
				case "ResourceType":
					if !slices.Contains(f.Values, "EC2Instance") {
						return false
					}
				}
			}
			return true
		})
		resp.InstanceInformationList = slices.Grow(resp.InstanceInformationList, len(found))
		for _, x := range found {
			resp.InstanceInformationList = append(resp.InstanceInformationList, instanceInfoJSON(x, now))
		}
		if more && len(found) > 0 {
			resp.NextToken = pageToken("dii", found[len(found)-1].Ord)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func instanceInfoJSON(x *instance, now time.Time) ssmInstanceInfo {
	info := osCatalog[x.OS]
	ping := x.pingStatus(now)
	last := now
	if ping != "Online" {
		last = x.StateSince
		if x.rebooting(now) && x.RebootUntil.After(last) {
			last = now
		}
	}
	return ssmInstanceInfo{InstanceID: x.ID, PingStatus: ping, LastPingDateTime: epochPtr(last), AgentVersion: "3.3.987.0",
		PlatformType: info.Platform, PlatformName: info.PlatformName, PlatformVersion: info.PlatformVersion,
		ResourceType: "EC2Instance", IPAddress: x.PrivateIP, ComputerName: "ip-" + strings.ReplaceAll(x.PrivateIP, ".", "-") + ".ec2.internal",
		SourceID: x.ID, SourceType: "AWS::EC2::Instance"}
}

// --- DescribeInstancePatches, DescribeInstancePatchStates ---

type ssmPatch struct {
	Title          string `json:"Title"`
	KBID           string `json:"KBId"`
	Classification string `json:"Classification"`
	Severity       string `json:"Severity"`
	State          string `json:"State"`
	InstalledTime  epoch  `json:"InstalledTime"`
}

// managedInstance finds an instance of the caller that has an SSM agent.
func (c *call) managedInstance(w *world, id string, now time.Time) (*instance, error) {
	c.instances = append(c.instances, id)
	x := w.instances[id]
	if x == nil || x.Account != c.id.Account || x.Region != c.region || !x.Agent {
		return nil, errf("InvalidInstanceId", "Instance Id %s is not a managed node of account %s in %s", id, c.id.Account, c.region)
	}
	w.settle(x, now)
	return x, nil
}

func ssmDescribeInstancePatches(c *call) (any, error) {
	var in struct {
		InstanceID string            `json:"InstanceId"`
		Filters    []ssmStringFilter `json:"Filters"`
		MaxResults *int              `json:"MaxResults"`
		NextToken  string            `json:"NextToken"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	if in.InstanceID == "" {
		return nil, validationErr("Value null at 'instanceId' failed to satisfy constraint: Member must not be null")
	}
	for _, f := range in.Filters {
		if !slices.Contains([]string{"Classification", "KBId", "Severity", "State"}, f.Key) {
			return nil, errf("InvalidFilter", "Filter key %q: must be Classification, KBId, Severity or State", f.Key)
		}
	}
	limit, err := ssmLimit(in.MaxResults, 10, 100, 100)
	if err != nil {
		return nil, err
	}
	after, err := ssmToken("dip", in.NextToken)
	if err != nil {
		return nil, err
	}
	resp := struct {
		Patches   []ssmPatch `json:"Patches"`
		NextToken string     `json:"NextToken,omitempty"`
	}{Patches: []ssmPatch{}}
	err = c.view(func(w *world, now time.Time) error {
		resp.Patches, resp.NextToken = resp.Patches[:0], "" // view may run this twice
		x, err := c.managedInstance(w, in.InstanceID, now)
		if err != nil {
			return err
		}
		ids := sortedKeys(x.Patches)
		i := int(after)
		if i > len(ids) {
			i = len(ids)
		}
		for ; i < len(ids) && len(resp.Patches) < limit; i++ {
			p := x.Patches[ids[i]]
			if !patchMatches(p, in.Filters) {
				continue
			}
			kb := p.KBID
			if kb == "" {
				kb = p.ID
			}
			resp.Patches = append(resp.Patches, ssmPatch{Title: p.Title, KBID: kb, Classification: p.Classification,
				Severity: p.Severity, State: p.State, InstalledTime: epochOf(p.InstalledTime)})
		}
		if i < len(ids) {
			resp.NextToken = pageToken("dip", uint64(i))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func patchMatches(p *patchRecord, fs []ssmStringFilter) bool {
	for _, f := range fs {
		var v string
		switch f.Key {
		case "Classification":
			v = p.Classification
		case "KBId":
			v = p.KBID
			if v == "" {
				v = p.ID
			}
		case "Severity":
			v = p.Severity
		case "State":
			v = p.State
		}
		if !slices.Contains(f.Values, v) {
			return false
		}
	}
	return true
}

type ssmPatchState struct {
	InstanceID                  string `json:"InstanceId"`
	PatchGroup                  string `json:"PatchGroup"`
	BaselineID                  string `json:"BaselineId"`
	SnapshotID                  string `json:"SnapshotId,omitempty"`
	InstallOverrideList         string `json:"InstallOverrideList,omitempty"`
	InstalledCount              int    `json:"InstalledCount"`
	InstalledOtherCount         int    `json:"InstalledOtherCount"`
	InstalledPendingRebootCount int    `json:"InstalledPendingRebootCount"`
	InstalledRejectedCount      int    `json:"InstalledRejectedCount"`
	MissingCount                int    `json:"MissingCount"`
	FailedCount                 int    `json:"FailedCount"`
	UnreportedNotApplicable     int    `json:"UnreportedNotApplicableCount"`
	NotApplicableCount          int    `json:"NotApplicableCount"`
	AvailableSecurityUpdate     int    `json:"AvailableSecurityUpdateCount"`
	OperationStartTime          epoch  `json:"OperationStartTime"`
	OperationEndTime            epoch  `json:"OperationEndTime"`
	Operation                   string `json:"Operation"`
	RebootOption                string `json:"RebootOption"`
	CriticalNonCompliantCount   int    `json:"CriticalNonCompliantCount"`
	SecurityNonCompliantCount   int    `json:"SecurityNonCompliantCount"`
	OtherNonCompliantCount      int    `json:"OtherNonCompliantCount"`
}

func ssmDescribeInstancePatchStates(c *call) (any, error) {
	var in struct {
		InstanceIDs []string `json:"InstanceIds"`
		MaxResults  *int     `json:"MaxResults"`
		NextToken   string   `json:"NextToken"`
	}
	if err := decode(c, &in); err != nil {
		return nil, err
	}
	if len(in.InstanceIDs) == 0 || len(in.InstanceIDs) > 50 {
		return nil, validationErr("Value at 'instanceIds' failed to satisfy constraint: Member must have length between 1 and 50 (got %d)", len(in.InstanceIDs))
	}
	limit, err := ssmLimit(in.MaxResults, 10, 100, 50)
	if err != nil {
		return nil, err
	}
	after, err := ssmToken("dips", in.NextToken)
	if err != nil {
		return nil, err
	}
	c.instances = append(c.instances, in.InstanceIDs...)
	resp := &ssmPatchStatesPage{InstancePatchStates: []ssmPatchState{}}
	err = c.view(func(w *world, now time.Time) error {
		resp.InstancePatchStates, resp.NextToken = resp.InstancePatchStates[:0], "" // view may run this twice
		i := int(after)
		for ; i < len(in.InstanceIDs) && len(resp.InstancePatchStates) < limit; i++ {
			x := w.instances[in.InstanceIDs[i]]
			if x == nil || x.Account != c.id.Account || x.Region != c.region || !x.Agent {
				continue
			}
			w.settle(x, now)
			if x.LastOp == nil {
				continue // never scanned or patched: no state reported yet
			}
			resp.InstancePatchStates = append(resp.InstancePatchStates, w.patchState(x))
		}
		if i < len(in.InstanceIDs) {
			resp.NextToken = pageToken("dips", uint64(i))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func (w *world) patchState(x *instance) ssmPatchState {
	s := ssmPatchState{InstanceID: x.ID, BaselineID: "pb-" + hashHex(w.seed, 17, "baseline", x.OS),
		SnapshotID: x.LastOp.SnapshotID, InstallOverrideList: x.LastOp.InstallOverrideList,
		OperationStartTime: epochOf(x.LastOp.Start), OperationEndTime: epochOf(x.LastOp.End), Operation: x.LastOp.Operation,
		RebootOption: x.LastOp.RebootOption}
	for _, p := range x.Patches { // counts: the order does not matter
		switch p.State {
		case "INSTALLED":
			s.InstalledCount++
		case "INSTALLED_OTHER":
			s.InstalledOtherCount++
		case "INSTALLED_PENDING_REBOOT":
			s.InstalledPendingRebootCount++
		case "INSTALLED_REJECTED":
			s.InstalledRejectedCount++
		case "MISSING":
			s.MissingCount++
		case "FAILED":
			s.FailedCount++
		case "NOT_APPLICABLE":
			s.NotApplicableCount++
		}
		if p.State == "MISSING" || p.State == "FAILED" {
			switch {
			case p.Severity == "Critical":
				s.CriticalNonCompliantCount++
			case p.Classification == "Security" || p.Classification == "SecurityUpdates":
				s.SecurityNonCompliantCount++
			default:
				s.OtherNonCompliantCount++
			}
		}
	}
	return s
}
