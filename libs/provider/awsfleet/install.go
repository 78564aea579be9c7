package awsfleet

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"

	"github.com/patchwave/patchwave/libs/provider"
)

const (
	// PatchDocument is the SSM document every installation and scan runs.
	PatchDocument = "AWS-RunPatchBaseline"
	// sendCommandBatch is SendCommand's limit of instance ids per call.
	sendCommandBatch = 50
	// commentLimit is SSM's limit on a command's Comment.
	commentLimit = 100
	// minCommandTimeout is SendCommand's smallest TimeoutSeconds.
	minCommandTimeout = 30 * time.Second
	// installCommentPrefix and scanCommentPrefix start the comments that name the run or scan.
	installCommentPrefix = "patchwave run="
	scanCommentPrefix    = "patchwave scan="
)

// ErrNoAgent means the instance has no registered SSM agent (provider.AgentNone): it cannot
// be patched or scanned. Retrying does not help until an agent registers.
var ErrNoAgent = errors.New("no SSM agent registered")

// commandSpec is what one SendCommand sends, apart from the instance ids.
type commandSpec struct {
	operation string // Install or Scan
	comment   string
	runID     string
	baseline  string
	patches   []string
	reboot    string
	timeout   time.Duration
}

func (s commandSpec) key() string {
	return strings.Join([]string{s.operation, s.comment, s.baseline, patchDigest(s.patches), s.reboot, s.timeout.String()}, "\x00")
}

// commandItem is one request of a batch: its index in the caller's slice and its instance.
type commandItem struct {
	index    int
	instance string
}

// Install starts one installation per request with SendCommand of AWS-RunPatchBaseline
// (Operation=Install). Requests with the same run, baseline, patch list, reboot policy and
// timeout go in one command per 50 instances. The patches are the install list
// (InstallOverrideList), a YAML object put in the account's install-list bucket once per
// baseline and patch list. The command's Comment is "patchwave run=<RunID>", which is how
// FindInstallations finds it again.
//
// RebootPolicy maps to RebootOption: if-required is RebootIfNeeded, never is NoReboot, and
// always is NoReboot too: the caller (the installer) reboots the instance after a successful
// installation. Timeout (at least 30s) is the command's TimeoutSeconds.
//
// Every failure is in its request's result, since other commands of the batch may have been
// sent: a request whose instance has no agent fails with ErrNoAgent, one whose agent is not
// online with provider.ErrInstanceNotRunning. A retryable error (throttled, 5xx, timeout) may
// come after SSM took the command: call FindInstallations before sending it again.
func (f *Fleet) Install(ctx context.Context, t provider.Target, reqs []provider.InstallRequest) ([]provider.InstallResult, error) {
	return f.startCommands(ctx, t, len(reqs), func(i int) (commandSpec, string, error) {
		r := reqs[i]
		if err := validateInstall(t, r); err != nil {
			return commandSpec{}, "", err
		}
		s := commandSpec{
			operation: "Install",
			comment:   installCommentPrefix + r.RunID,
			runID:     r.RunID,
			baseline:  r.BaselineID,
			patches:   normalizePatches(r.PatchIDs),
			reboot:    rebootOption(r.RebootPolicy),
			timeout:   r.Timeout,
		}
		if len(s.patches) == 0 {
			s.operation = "Scan"
		}
		return s, r.InstanceID, nil
	})
}

// Scan starts one assessment per request: AWS-RunPatchBaseline with Operation=Scan and the
// patches as the install list (the patches assessed), comment "patchwave scan=<ScanID>".
// Failures are reported as Install reports them.
func (f *Fleet) Scan(ctx context.Context, t provider.Target, reqs []provider.ScanRequest) ([]provider.InstallResult, error) {
	return f.startCommands(ctx, t, len(reqs), func(i int) (commandSpec, string, error) {
		r := reqs[i]
		if err := validateScan(t, r); err != nil {
			return commandSpec{}, "", err
		}
		return commandSpec{
			operation: "Scan",
			comment:   scanCommentPrefix + r.ScanID,
			runID:     r.ScanID,
			baseline:  r.BaselineID,
			patches:   normalizePatches(r.PatchIDs),
			reboot:    "NoReboot",
		}, r.InstanceID, nil
	})
}

// startCommands groups n requests (spec gives each one's command and instance, or why it is
// invalid) by command and sends them.
func (f *Fleet) startCommands(ctx context.Context, t provider.Target, n int, spec func(i int) (commandSpec, string, error)) ([]provider.InstallResult, error) {
	c, err := f.clientsFor(ctx, t)
	if err != nil {
		return nil, err
	}
	results := make([]provider.InstallResult, n)
	var specs []commandSpec
	items := make(map[string][]commandItem)
	for i := range n {
		s, instance, err := spec(i)
		if err != nil {
			results[i].Err = fmt.Errorf("reqs[%d]: %w", i, err)
			continue
		}
		if _, ok := items[s.key()]; !ok {
			specs = append(specs, s)
		}
		items[s.key()] = append(items[s.key()], commandItem{index: i, instance: instance})
	}
	f.sendAll(ctx, c, t, specs, items, results)
	return results, nil
}

func validateInstall(t provider.Target, r provider.InstallRequest) error {
	errs := []error{r.Validate()}
	if r.Tenant != t.Tenant {
		errs = append(errs, fmt.Errorf("%w: Tenant %q is not the target's tenant %q", provider.ErrInvalidArgument, r.Tenant, t.Tenant))
	}
	if n := len(installCommentPrefix) + len(r.RunID); n > commentLimit {
		errs = append(errs, fmt.Errorf("%w: RunID must have at most %d characters (it goes in SSM's 100-character comment), got %d",
			provider.ErrInvalidArgument, commentLimit-len(installCommentPrefix), len(r.RunID)))
	}
	if r.Timeout < 0 {
		errs = append(errs, fmt.Errorf("%w: Timeout must be >= 0, got %s", provider.ErrInvalidArgument, r.Timeout))
	}
	return errors.Join(errs...)
}

func validateScan(t provider.Target, r provider.ScanRequest) error {
	errs := []error{r.Validate()}
	if r.Tenant != t.Tenant {
		errs = append(errs, fmt.Errorf("%w: Tenant %q is not the target's tenant %q", provider.ErrInvalidArgument, r.Tenant, t.Tenant))
	}
	if n := len(scanCommentPrefix) + len(r.ScanID); n > commentLimit {
		errs = append(errs, fmt.Errorf("%w: ScanID must have at most %d characters, got %d",
			provider.ErrInvalidArgument, commentLimit-len(scanCommentPrefix), len(r.ScanID)))
	}
	return errors.Join(errs...)
}

// normalizePatches sorts the patch list, so the same set makes the same install list.
func normalizePatches(ids []string) []string {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}

func rebootOption(p provider.RebootPolicy) string {
	if p.OrDefault() == provider.RebootIfRequired {
		return "RebootIfNeeded"
	}
	return "NoReboot" // never, and always (the installer reboots after success)
}

// sendAll sends every command spec to its instances, 50 per SendCommand, and fills results.
func (f *Fleet) sendAll(ctx context.Context, c *clients, t provider.Target, specs []commandSpec, items map[string][]commandItem, results []provider.InstallResult) {
	type job struct {
		spec  commandSpec
		items []commandItem
		list  string
	}
	// Install lists first (one per distinct baseline and patch list), then the commands.
	lists := make([]string, len(specs))
	listErrs := make([]error, len(specs))
	_ = f.parallel(ctx, len(specs), func(ctx context.Context, i int) error {
		if len(specs[i].patches) > 0 {
			lists[i], listErrs[i] = f.ensureInstallList(ctx, c, t, specs[i].baseline, specs[i].patches)
		}
		return nil
	})
	var jobs []job
	for i, s := range specs {
		its := dedupeItems(items[s.key()])
		if listErrs[i] != nil {
			for _, it := range its {
				results[it.index].Err = listErrs[i]
			}
			continue
		}
		for _, b := range chunks(its, sendCommandBatch) {
			jobs = append(jobs, job{spec: s, items: b, list: lists[i]})
		}
	}
	_ = f.parallel(ctx, len(jobs), func(ctx context.Context, i int) error {
		f.sendBatch(ctx, c, t, jobs[i].spec, jobs[i].list, jobs[i].items, results)
		return nil
	})
	// Requests for an instance already in the batch share its installation.
	for _, s := range specs {
		first := map[string]int{}
		for _, it := range items[s.key()] {
			if j, ok := first[it.instance]; ok {
				results[it.index] = results[j]
				continue
			}
			first[it.instance] = it.index
		}
	}
}

// dedupeItems drops repeated instances (SSM refuses them); they get the first one's result.
func dedupeItems(its []commandItem) []commandItem {
	seen := make(map[string]bool, len(its))
	out := make([]commandItem, 0, len(its))
	for _, it := range its {
		if !seen[it.instance] {
			seen[it.instance] = true
			out = append(out, it)
		}
	}
	return out
}

// sendBatch sends one command to at most 50 instances. When SSM refuses the whole batch because
// some instance cannot take commands (InvalidInstanceId: no agent, not running), it reads the
// batch's instances and agents, fails those that cannot take it, and sends once more to the
// rest; if that is refused too, it sends to each instance alone, so one bad instance never
// fails the others.
func (f *Fleet) sendBatch(ctx context.Context, c *clients, t provider.Target, s commandSpec, list string, its []commandItem, results []provider.InstallResult) {
	out, err := f.sendCommand(ctx, c, s, list, its)
	if err != nil && errorCode(err) == "InvalidInstanceId" {
		its, err = f.pruneUnreachable(ctx, c, t, s, its, results)
		if err == nil && len(its) > 0 {
			out, err = f.sendCommand(ctx, c, s, list, its)
			if err != nil && errorCode(err) == "InvalidInstanceId" && len(its) > 1 {
				for _, it := range its {
					f.sendBatch(ctx, c, t, s, list, []commandItem{it}, results)
				}
				return
			}
		}
		if len(its) == 0 {
			return
		}
	}
	if err != nil {
		werr := wrapErr("ssm SendCommand", t.Account, err)
		for _, it := range its {
			results[it.index].Err = werr
		}
		return
	}
	cmd := out.Command
	started := aws.ToTime(cmd.RequestedDateTime)
	if started.IsZero() {
		started = f.cfg.Now()
	}
	for _, it := range its {
		results[it.index].Installation = provider.Installation{
			ID:         provider.InstallationID(aws.ToString(cmd.CommandId), it.instance),
			CommandID:  aws.ToString(cmd.CommandId),
			Tenant:     t.Tenant,
			RunID:      s.runID,
			InstanceID: it.instance,
			State:      provider.InstallInProgress,
			StartedAt:  started,
		}
	}
}

// pruneUnreachable fails, in their results, the items whose instance does not exist, is not
// running, or has no online agent, and returns the others.
func (f *Fleet) pruneUnreachable(ctx context.Context, c *clients, t provider.Target, s commandSpec, its []commandItem, results []provider.InstallResult) ([]commandItem, error) {
	ids := make([]string, len(its))
	for i, it := range its {
		ids[i] = it.instance
	}
	insts, err := f.describeInstancesByID(ctx, c, t, ids)
	if err != nil {
		return its, err
	}
	infos, err := f.agentInfo(ctx, c, ids)
	if err != nil {
		return its, err
	}
	op := strings.ToLower(s.operation)
	var ok []commandItem
	for _, it := range its {
		in, exists := insts[it.instance]
		info, hasAgent := infos[it.instance]
		switch {
		case !exists:
			results[it.index].Err = fmt.Errorf("%s instance %s: %w", op, it.instance, provider.ErrNotFound)
		case in.State == nil || in.State.Name != ec2types.InstanceStateNameRunning:
			results[it.index].Err = fmt.Errorf("%s instance %s: instance is %s: %w", op, it.instance, stateName(in), provider.ErrInstanceNotRunning)
		case !hasAgent:
			results[it.index].Err = fmt.Errorf("%s instance %s: %w", op, it.instance, ErrNoAgent)
		case info.PingStatus != ssmtypes.PingStatusOnline:
			results[it.index].Err = fmt.Errorf("%s instance %s: SSM agent is %s: %w", op, it.instance, info.PingStatus, provider.ErrInstanceNotRunning)
		default:
			ok = append(ok, it)
		}
	}
	return ok, nil
}

func (f *Fleet) sendCommand(ctx context.Context, c *clients, s commandSpec, list string, its []commandItem) (*ssm.SendCommandOutput, error) {
	ids := make([]string, len(its))
	for i, it := range its {
		ids[i] = it.instance
	}
	params := map[string][]string{
		"Operation":    {s.operation},
		"RebootOption": {s.reboot},
	}
	if list != "" {
		params["InstallOverrideList"] = []string{list}
	}
	in := &ssm.SendCommandInput{
		DocumentName: aws.String(PatchDocument),
		InstanceIds:  ids,
		Parameters:   params,
		Comment:      aws.String(s.comment),
		// Every instance of the batch at once, and one failure does not stop the others.
		MaxConcurrency: aws.String("100%"),
		MaxErrors:      aws.String("100%"),
	}
	if s.timeout > 0 {
		in.TimeoutSeconds = aws.Int32(int32(max(s.timeout, minCommandTimeout) / time.Second))
	}
	return c.ssm.SendCommand(ctx, in)
}

// patchDigest names a patch list (sorted) by content.
func patchDigest(patches []string) string {
	h := sha256.New()
	for _, p := range patches {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))[:32]
}

var unsafeKey = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// InstallListKey is the S3 key of the install list of a baseline and patch list:
// "<prefix><baseline>/<digest>.yaml".
func InstallListKey(prefix, baselineID string, patches []string) string {
	return prefix + unsafeKey.ReplaceAllString(baselineID, "_") + "/" + patchDigest(normalizePatches(patches)) + ".yaml"
}

// InstallListYAML is the install override list of patches, in AWS's format:
//
//	patches:
//	  - id: "KB5034441"
//	  - id: "openssl.x86_64"
//
// Ids are written as double-quoted YAML (JSON) strings.
func InstallListYAML(baselineID string, patches []string) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "# Patchwave install list of baseline %s\npatches:\n", strings.ReplaceAll(baselineID, "\n", " "))
	for _, p := range normalizePatches(patches) {
		q, _ := json.Marshal(p)
		fmt.Fprintf(&b, "  - id: %s\n", q)
	}
	return b.Bytes()
}

// ensureInstallList puts the install list of (baseline, patches) into the account's bucket
// unless it is there (HeadObject before PutObject; the bucket is created if missing), and
// returns its s3:// URL. Lists known to be there are remembered for the process's life.
func (f *Fleet) ensureInstallList(ctx context.Context, c *clients, t provider.Target, baselineID string, patches []string) (string, error) {
	bucket := f.cfg.bucket(t.Account, t.Region)
	key := InstallListKey(f.cfg.InstallLists.Prefix, baselineID, patches)
	url := "s3://" + bucket + "/" + key
	if _, ok := f.installLists.Load(url); ok {
		return url, nil
	}
	_, err := c.s3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err == nil {
		f.installLists.Store(url, true)
		return url, nil
	}
	if !isNotFound(err) {
		return "", wrapErr("s3 HeadObject", t.Account, err)
	}
	put := func() error {
		_, err := c.s3.PutObject(ctx, &s3.PutObjectInput{
			Bucket:      aws.String(bucket),
			Key:         aws.String(key),
			Body:        bytes.NewReader(InstallListYAML(baselineID, patches)),
			ContentType: aws.String("application/yaml"),
		})
		return err
	}
	err = put()
	if err != nil && errorCode(err) == "NoSuchBucket" {
		if err := f.ensureBucket(ctx, c, t, bucket); err != nil {
			return "", err
		}
		err = put()
	}
	if err != nil {
		return "", wrapErr("s3 PutObject", t.Account, err)
	}
	f.installLists.Store(url, true)
	return url, nil
}

var bucketMu sync.Mutex

func (f *Fleet) ensureBucket(ctx context.Context, c *clients, t provider.Target, bucket string) error {
	if _, ok := f.buckets.Load(bucket); ok {
		return nil
	}
	bucketMu.Lock()
	defer bucketMu.Unlock()
	in := &s3.CreateBucketInput{Bucket: aws.String(bucket)}
	if t.Region != "us-east-1" {
		in.CreateBucketConfiguration = &s3types.CreateBucketConfiguration{LocationConstraint: s3types.BucketLocationConstraint(t.Region)}
	}
	_, err := c.s3.CreateBucket(ctx, in)
	if err != nil {
		var owned *s3types.BucketAlreadyOwnedByYou
		if !errors.As(err, &owned) && errorCode(err) != "BucketAlreadyOwnedByYou" {
			return wrapErr("s3 CreateBucket", t.Account, err)
		}
	}
	f.buckets.Store(bucket, true)
	return nil
}

// GetInstallations reads installations (and scans) by id ("<command id>/<instance id>"): one
// ListCommandInvocations per command, so a batch of 50 instances is one call. Unknown ids are
// absent.
func (f *Fleet) GetInstallations(ctx context.Context, t provider.Target, ids []string) (map[string]provider.Installation, error) {
	if err := provider.ValidateIDs("ids", ids); err != nil {
		return nil, err
	}
	byCommand := make(map[string]map[string]bool)
	var commands []string
	for i, id := range ids {
		cmd, inst, ok := strings.Cut(id, "/")
		if !ok || cmd == "" || inst == "" {
			return nil, fmt.Errorf("%w: ids[%d] must be <command id>/<instance id>, got %q", provider.ErrInvalidArgument, i, id)
		}
		if byCommand[cmd] == nil {
			byCommand[cmd] = make(map[string]bool)
			commands = append(commands, cmd)
		}
		byCommand[cmd][inst] = true
	}
	c, err := f.clientsFor(ctx, t)
	if err != nil {
		return nil, err
	}
	out := make(map[string]provider.Installation, len(ids))
	var mu sync.Mutex
	err = f.parallel(ctx, len(commands), func(ctx context.Context, i int) error {
		invs, err := f.listInvocations(ctx, c, t, &ssm.ListCommandInvocationsInput{CommandId: aws.String(commands[i]), Details: true})
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, inv := range invs {
			if byCommand[commands[i]][aws.ToString(inv.InstanceId)] {
				in := toInstallation(t, inv)
				out[in.ID] = in
			}
		}
		return nil
	})
	return out, err
}

// listInvocations pages through ListCommandInvocations; an unknown command or instance gives
// none.
func (f *Fleet) listInvocations(ctx context.Context, c *clients, t provider.Target, in *ssm.ListCommandInvocationsInput) ([]ssmtypes.CommandInvocation, error) {
	in.MaxResults = aws.Int32(50)
	p := ssm.NewListCommandInvocationsPaginator(c.ssm, in)
	var out []ssmtypes.CommandInvocation
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			if isNotFound(err) {
				return nil, nil
			}
			return nil, wrapErr("ssm ListCommandInvocations", t.Account, err)
		}
		for _, inv := range page.CommandInvocations {
			if aws.ToString(inv.DocumentName) == PatchDocument || inv.DocumentName == nil {
				out = append(out, inv)
			}
		}
	}
	return out, nil
}

// toInstallation maps an invocation: Pending, InProgress, Delayed and Cancelling are in
// progress; Success succeeded; TimedOut timed out; Cancelled cancelled; everything else
// (Failed, Undeliverable, Terminated) failed, with StatusDetails and the plugin's output as
// the error.
func toInstallation(t provider.Target, inv ssmtypes.CommandInvocation) provider.Installation {
	in := provider.Installation{
		ID:         provider.InstallationID(aws.ToString(inv.CommandId), aws.ToString(inv.InstanceId)),
		CommandID:  aws.ToString(inv.CommandId),
		Tenant:     t.Tenant,
		RunID:      runOfComment(aws.ToString(inv.Comment)),
		InstanceID: aws.ToString(inv.InstanceId),
		StartedAt:  aws.ToTime(inv.RequestedDateTime),
	}
	details := aws.ToString(inv.StatusDetails)
	switch inv.Status {
	case ssmtypes.CommandInvocationStatusPending, ssmtypes.CommandInvocationStatusInProgress,
		ssmtypes.CommandInvocationStatusDelayed, ssmtypes.CommandInvocationStatusCancelling:
		in.State = provider.InstallInProgress
	case ssmtypes.CommandInvocationStatusSuccess:
		in.State = provider.InstallSucceeded
	case ssmtypes.CommandInvocationStatusTimedOut:
		in.State = provider.InstallTimedOut
		in.Error = nonEmpty(details, "TimedOut")
	case ssmtypes.CommandInvocationStatusCancelled:
		in.State = provider.InstallCancelled
		in.Error = nonEmpty(details, "Cancelled")
	default:
		in.State = provider.InstallFailed
		in.Error = nonEmpty(details, string(inv.Status))
	}
	for _, p := range inv.CommandPlugins {
		if ft := aws.ToTime(p.ResponseFinishDateTime); ft.After(in.FinishedAt) {
			in.FinishedAt = ft
		}
		if in.State == provider.InstallFailed {
			if o := strings.TrimSpace(aws.ToString(p.Output)); o != "" {
				in.Error += ": " + lastLine(o)
			}
		}
	}
	if !in.State.Terminal() {
		in.FinishedAt = time.Time{}
	}
	return in
}

func nonEmpty(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return strings.TrimSpace(s[i+1:])
	}
	return s
}

// runOfComment reads the run (or scan) id back from a command's comment.
func runOfComment(comment string) string {
	if r, ok := strings.CutPrefix(comment, installCommentPrefix); ok {
		return r
	}
	if r, ok := strings.CutPrefix(comment, scanCommentPrefix); ok {
		return r
	}
	return ""
}

// FindInstallations finds the installations started for runID on instances: one
// ListCommandInvocations per instance, filtered to AWS-RunPatchBaseline, matched by the comment
// "patchwave run=<runID>". When an instance has several (Install called twice), the first
// requested is returned.
func (f *Fleet) FindInstallations(ctx context.Context, t provider.Target, runID string, instanceIDs []string) (map[string]provider.Installation, error) {
	if runID == "" {
		return nil, fmt.Errorf("%w: runID is required", provider.ErrInvalidArgument)
	}
	c, err := f.clientsForIDs(ctx, t, "instanceIDs", instanceIDs)
	if err != nil {
		return nil, err
	}
	comment := installCommentPrefix + runID
	out := make(map[string]provider.Installation)
	var mu sync.Mutex
	err = f.parallel(ctx, len(instanceIDs), func(ctx context.Context, i int) error {
		invs, err := f.listInvocations(ctx, c, t, &ssm.ListCommandInvocationsInput{
			InstanceId: aws.String(instanceIDs[i]),
			Filters:    []ssmtypes.CommandFilter{{Key: ssmtypes.CommandFilterKeyDocumentName, Value: aws.String(PatchDocument)}},
		})
		if err != nil {
			return err
		}
		var best *ssmtypes.CommandInvocation
		for j := range invs {
			inv := &invs[j]
			if aws.ToString(inv.Comment) != comment {
				continue
			}
			if best == nil || aws.ToTime(inv.RequestedDateTime).Before(aws.ToTime(best.RequestedDateTime)) {
				best = inv
			}
		}
		if best != nil {
			mu.Lock()
			out[instanceIDs[i]] = toInstallation(t, *best)
			mu.Unlock()
		}
		return nil
	})
	return out, err
}

// CancelInstallation cancels an installation with CancelCommand for its instance. Cancelling
// an unknown or finished one succeeds.
func (f *Fleet) CancelInstallation(ctx context.Context, t provider.Target, id string) error {
	cmd, inst, ok := strings.Cut(id, "/")
	if !ok || cmd == "" || inst == "" {
		return fmt.Errorf("%w: id must be <command id>/<instance id>, got %q", provider.ErrInvalidArgument, id)
	}
	c, err := f.clientsFor(ctx, t)
	if err != nil {
		return err
	}
	_, err = c.ssm.CancelCommand(ctx, &ssm.CancelCommandInput{CommandId: aws.String(cmd), InstanceIds: []string{inst}})
	if err != nil && isNotFound(err) {
		return nil
	}
	return wrapErr("ssm CancelCommand", t.Account, err)
}

// PatchStates reads the instance's patches with DescribeInstancePatches (paginated) and returns
// those asked for (all with no patchIDs). A patch id matches a patch's KBId (Windows) or Title
// (Linux package). AVAILABLE_SECURITY_UPDATE counts as missing.
func (f *Fleet) PatchStates(ctx context.Context, t provider.Target, instanceID string, patchIDs []string) ([]provider.PatchResult, error) {
	if instanceID == "" {
		return nil, fmt.Errorf("%w: instanceID is required", provider.ErrInvalidArgument)
	}
	c, err := f.clientsForIDs(ctx, t, "patchIDs", patchIDs)
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(patchIDs))
	for _, id := range patchIDs {
		want[id] = true
	}
	p := ssm.NewDescribeInstancePatchesPaginator(c.ssm, &ssm.DescribeInstancePatchesInput{
		InstanceId: aws.String(instanceID),
		MaxResults: aws.Int32(100),
	})
	var out []provider.PatchResult
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, wrapErr("ssm DescribeInstancePatches", t.Account, err)
		}
		for _, pd := range page.Patches {
			var id string
			switch kb, title := aws.ToString(pd.KBId), aws.ToString(pd.Title); {
			case len(want) == 0:
				id = nonEmpty(kb, title)
			case kb != "" && want[kb]:
				id = kb
			case want[title]:
				id = title
			default:
				continue
			}
			out = append(out, provider.PatchResult{PatchID: id, State: patchState(pd.State)})
		}
	}
	slices.SortFunc(out, func(a, b provider.PatchResult) int { return compare(a.PatchID, b.PatchID) })
	return out, nil
}

func patchState(s ssmtypes.PatchComplianceDataState) provider.PatchState {
	switch s {
	case ssmtypes.PatchComplianceDataStateInstalled:
		return provider.PatchInstalled
	case ssmtypes.PatchComplianceDataStateInstalledOther:
		return provider.PatchInstalledOther
	case ssmtypes.PatchComplianceDataStateInstalledPendingReboot:
		return provider.PatchInstalledPendingReboot
	case ssmtypes.PatchComplianceDataStateInstalledRejected:
		return provider.PatchInstalledRejected
	case ssmtypes.PatchComplianceDataStateFailed:
		return provider.PatchFailed
	case ssmtypes.PatchComplianceDataStateNotApplicable:
		return provider.PatchNotApplicable
	}
	return provider.PatchMissing
}

// describePatchStatesBatch is DescribeInstancePatchStates' limit of instance ids per call.
const describePatchStatesBatch = 50

// PatchSummaries reads the agents' patch summaries with DescribeInstancePatchStates, 50
// instances per call (paginated, in parallel). An instance the agent has not reported on, or
// that is not a managed node, is absent.
func (f *Fleet) PatchSummaries(ctx context.Context, t provider.Target, instanceIDs []string) (map[string]provider.PatchSummary, error) {
	c, err := f.clientsForIDs(ctx, t, "instanceIDs", instanceIDs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]provider.PatchSummary, len(instanceIDs))
	var mu sync.Mutex
	batches := chunks(instanceIDs, describePatchStatesBatch)
	err = f.parallel(ctx, len(batches), func(ctx context.Context, i int) error {
		p := ssm.NewDescribeInstancePatchStatesPaginator(c.ssm, &ssm.DescribeInstancePatchStatesInput{
			InstanceIds: batches[i],
			MaxResults:  aws.Int32(describePatchStatesBatch),
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				if isNotFound(err) {
					return nil // no managed node among them
				}
				return wrapErr("ssm DescribeInstancePatchStates", t.Account, err)
			}
			mu.Lock()
			for _, s := range page.InstancePatchStates {
				out[aws.ToString(s.InstanceId)] = toPatchSummary(s)
			}
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func toPatchSummary(s ssmtypes.InstancePatchState) provider.PatchSummary {
	op := provider.PatchOperationScan
	if s.Operation == ssmtypes.PatchOperationTypeInstall {
		op = provider.PatchOperationInstall
	}
	return provider.PatchSummary{
		InstanceID:             aws.ToString(s.InstanceId),
		Operation:              op,
		StartedAt:              aws.ToTime(s.OperationStartTime),
		EndedAt:                aws.ToTime(s.OperationEndTime),
		Installed:              int(s.InstalledCount),
		InstalledOther:         int(s.InstalledOtherCount),
		InstalledPendingReboot: int(aws.ToInt32(s.InstalledPendingRebootCount)),
		InstalledRejected:      int(aws.ToInt32(s.InstalledRejectedCount)),
		Missing:                int(s.MissingCount),
		Failed:                 int(s.FailedCount),
		NotApplicable:          int(s.NotApplicableCount),
	}
}
