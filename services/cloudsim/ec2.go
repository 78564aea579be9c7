package cloudsim

import (
	"encoding/xml"
	"maps"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"time"
)

const ec2Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

func ec2Service() *service {
	return &service{
		name: "ec2",
		handlers: map[string]handler{
			"DescribeInstances":              ec2DescribeInstances,
			"DescribeInstanceStatus":         ec2DescribeInstanceStatus,
			"CreateSnapshots":                ec2CreateSnapshots,
			"DescribeSnapshots":              ec2DescribeSnapshots,
			"DeleteSnapshot":                 ec2DeleteSnapshot,
			"CreateTags":                     ec2CreateTags,
			"DeleteTags":                     ec2DeleteTags,
			"CreateReplaceRootVolumeTask":    ec2CreateReplaceRootVolumeTask,
			"DescribeReplaceRootVolumeTasks": ec2DescribeReplaceRootVolumeTasks,
			"RebootInstances":                ec2RebootInstances,
		},
		operation: parseQueryForm,
		write: func(rw http.ResponseWriter, c *call, v any) {
			if r, ok := v.(*renderedXML); ok {
				writeBody(rw, http.StatusOK, xmlContentType, r.doc.Bytes())
				putXMLBuf(r.doc)
				return
			}
			if r, ok := v.(xmlWriter); ok {
				v.(interface{ setMeta(string) }).setMeta(c.requestID)
				b := getXMLBuf()
				r.writeXMLTo(b)
				writeBody(rw, http.StatusOK, xmlContentType, b.Bytes())
				putXMLBuf(b)
				return
			}
			writeQueryResult(rw, c, v)
		},
		writeErr: func(rw http.ResponseWriter, c *call, e *apiError) {
			writeXML(rw, e.Status, ec2ErrorResponse{Errors: []ec2Error{{Code: e.Code, Message: e.Message}}, RequestID: c.requestID})
		},
		unknownKey:   apiError{"AuthFailure", "AWS was not able to validate the provided access credentials", 401},
		badSignature: apiError{"AuthFailure", "AWS was not able to validate the provided access credentials", 401},
		expired:      apiError{"AuthFailure", "The security token included in the request is expired", 401},
		throttle:     apiError{"RequestLimitExceeded", "Request limit exceeded.", 503},
		internal:     apiError{"InternalError", "An internal error has occurred", 500},
	}
}

type ec2ErrorResponse struct {
	XMLName   xml.Name   `xml:"Response"`
	Errors    []ec2Error `xml:"Errors>Error"`
	RequestID string     `xml:"RequestID"`
}

type ec2Error struct {
	Code    string `xml:"Code"`
	Message string `xml:"Message"`
}

// ec2Meta is embedded in every EC2 response: the namespace and the request id.
type ec2Meta struct {
	Xmlns     string `xml:"xmlns,attr"`
	RequestID string `xml:"requestId"`
}

func (m *ec2Meta) setMeta(id string) { m.Xmlns, m.RequestID = ec2Namespace, id }

type ec2Tag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func ec2Tags(m map[string]string) []ec2Tag {
	out := make([]ec2Tag, 0, len(m))
	for _, k := range sortedTagKeys(m) {
		out = append(out, ec2Tag{k, m[k]})
	}
	return out
}

type ec2ReturnResponse struct {
	XMLName xml.Name
	ec2Meta
	Return bool `xml:"return"`
}

func ec2Return(op string) *ec2ReturnResponse {
	return &ec2ReturnResponse{XMLName: xml.Name{Local: op + "Response"}, Return: true}
}

// --- instances ---

var stateCodes = map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}

type ec2State struct {
	Code int    `xml:"code"`
	Name string `xml:"name"`
}

type ec2Instance struct {
	InstanceID         string          `xml:"instanceId"`
	ImageID            string          `xml:"imageId"`
	State              ec2State        `xml:"instanceState"`
	PrivateDNSName     string          `xml:"privateDnsName"`
	DNSName            string          `xml:"dnsName"`
	Reason             string          `xml:"reason"`
	AmiLaunchIndex     int             `xml:"amiLaunchIndex"`
	InstanceType       string          `xml:"instanceType"`
	LaunchTime         string          `xml:"launchTime"`
	AvailabilityZone   string          `xml:"placement>availabilityZone"`
	Tenancy            string          `xml:"placement>tenancy"`
	Platform           string          `xml:"platform,omitempty"`
	Monitoring         string          `xml:"monitoring>state"`
	PrivateIPAddress   string          `xml:"privateIpAddress"`
	Architecture       string          `xml:"architecture"`
	RootDeviceType     string          `xml:"rootDeviceType"`
	RootDeviceName     string          `xml:"rootDeviceName"`
	BlockDevices       []ec2BlockDev   `xml:"blockDeviceMapping>item"`
	VirtualizationType string          `xml:"virtualizationType"`
	Tags               []ec2Tag        `xml:"tagSet>item"`
	Hypervisor         string          `xml:"hypervisor"`
	EbsOptimized       bool            `xml:"ebsOptimized"`
	PlatformDetails    string          `xml:"platformDetails"`
	StateReason        *ec2StateReason `xml:"stateReason,omitempty"`
}

type ec2StateReason struct {
	Code    string `xml:"code"`
	Message string `xml:"message"`
}

type ec2BlockDev struct {
	DeviceName          string `xml:"deviceName"`
	VolumeID            string `xml:"ebs>volumeId"`
	Status              string `xml:"ebs>status"`
	AttachTime          string `xml:"ebs>attachTime"`
	DeleteOnTermination bool   `xml:"ebs>deleteOnTermination"`
}

type ec2Reservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []ec2Instance `xml:"instancesSet>item"`
}

type describeInstancesResponse struct {
	XMLName xml.Name `xml:"DescribeInstancesResponse"`
	ec2Meta
	Reservations []ec2Reservation `xml:"reservationSet>item"`
	NextToken    string           `xml:"nextToken,omitempty"`
}

func instanceXML(in *instance) ec2Instance {
	info := osCatalog[in.OS]
	x := ec2Instance{
		InstanceID: in.ID, ImageID: in.ImageID, State: ec2State{stateCodes[in.State], in.State},
		PrivateDNSName: "ip-" + strings.ReplaceAll(in.PrivateIP, ".", "-") + ".ec2.internal",
		InstanceType:   in.InstanceType, LaunchTime: xmlTime(in.LaunchTime), AvailabilityZone: in.AZ, Tenancy: "default",
		Monitoring: "disabled", PrivateIPAddress: in.PrivateIP, Architecture: "x86_64", RootDeviceType: "ebs",
		VirtualizationType: "hvm", Tags: ec2Tags(in.Tags), Hypervisor: "xen", PlatformDetails: info.PlatformDetails,
	}
	if info.Platform == "Windows" {
		x.Platform = "windows"
	}
	if len(in.Volumes) > 0 {
		x.RootDeviceName = in.Volumes[0].Device
	}
	if in.State == "stopped" || in.State == "stopping" {
		x.Reason = "User initiated (" + in.StateSince.UTC().Format("2006-01-02 15:04:05 MST") + ")"
		x.StateReason = &ec2StateReason{"Client.UserInitiatedShutdown", "Client.UserInitiatedShutdown: User initiated shutdown"}
	}
	if in.State != "terminated" {
		for _, v := range in.Volumes {
			x.BlockDevices = append(x.BlockDevices, ec2BlockDev{v.Device, v.ID, "attached", xmlTime(v.AttachTime), true})
		}
	}
	return x
}

// lookupInstances finds instances by id in the caller's account and region; ids that are
// malformed or not found are errors, as on EC2.
func (c *call) lookupInstances(w *world, ids []string, now time.Time) ([]*instance, error) {
	out := make([]*instance, 0, len(ids))
	var missing []string
	for _, id := range ids {
		in, err := c.findInstance(w, id, now)
		if err != nil {
			return nil, err
		}
		if in == nil {
			missing = append(missing, id)
			continue
		}
		out = append(out, in)
	}
	c.instances = append(c.instances, ids...)
	if len(missing) == 1 {
		return nil, errf("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", missing[0])
	}
	if len(missing) > 1 {
		return nil, errf("InvalidInstanceID.NotFound", "The instance IDs '%s' do not exist", strings.Join(missing, ", "))
	}
	return out, nil
}

// lookupInstance is lookupInstances of one id, without a slice for the answer (CreateSnapshots).
func (c *call) lookupInstance(w *world, id string, now time.Time) (*instance, error) {
	in, err := c.findInstance(w, id, now)
	if err != nil {
		return nil, err
	}
	c.instances = append(c.instances, id)
	if in == nil {
		return nil, errf("InvalidInstanceID.NotFound", "The instance ID '%s' does not exist", id)
	}
	return in, nil
}

// findInstance checks the id and finds the caller's instance, settled at now; nil when the
// caller has no such instance in the call's region.
func (c *call) findInstance(w *world, id string, now time.Time) (*instance, error) {
	if !validEC2ID(id, "i") {
		return nil, errf("InvalidInstanceID.Malformed", "Invalid id: %q", id)
	}
	in := w.instances[id]
	if in == nil || in.Account != c.id.Account || in.Region != c.region {
		return nil, nil
	}
	w.settle(in, now)
	return in, nil
}

func instanceFilterValue(in *instance, name string) (string, bool) {
	switch name {
	case "instance-id":
		return in.ID, true
	case "instance-state-name":
		return in.State, true
	case "instance-state-code":
		return itoa(stateCodes[in.State]), true
	case "availability-zone":
		return in.AZ, true
	case "instance-type":
		return in.InstanceType, true
	case "image-id":
		return in.ImageID, true
	case "private-ip-address":
		return in.PrivateIP, true
	case "platform":
		if osCatalog[in.OS].Platform == "Windows" {
			return "windows", true
		}
		return "", true
	case "platform-details":
		return osCatalog[in.OS].PlatformDetails, true
	}
	return "", false
}

func checkInstanceFilters(fs []filter) error {
	for _, f := range fs {
		if strings.HasPrefix(f.Name, "tag:") || f.Name == "tag-key" || f.Name == "tag-value" {
			continue
		}
		if _, ok := instanceFilterValue(&instance{}, f.Name); !ok {
			return errf("InvalidParameterValue", "The filter '%s' is invalid", f.Name)
		}
	}
	return nil
}

func instanceMatches(in *instance, fs []filter) bool {
	for _, f := range fs {
		switch {
		case strings.HasPrefix(f.Name, "tag:"):
			v, ok := in.Tags[f.Name[4:]]
			if !ok || !f.match(v) {
				return false
			}
		case f.Name == "tag-key":
			if !slices.ContainsFunc(sortedTagKeys(in.Tags), f.match) {
				return false
			}
		case f.Name == "tag-value":
			found := false
			for _, v := range in.Tags {
				found = found || f.match(v)
			}
			if !found {
				return false
			}
		default:
			v, _ := instanceFilterValue(in, f.Name)
			if !f.match(v) {
				return false
			}
		}
	}
	return true
}

// instanceSources picks the smallest index that answers one of the filters; the page then walks
// only it, so a tag-filtered page costs what its candidates cost, not the fleet.
func (w *world) instanceSources(acct, region string, fs []filter) []*ordSet[*instance] {
	return indexSources(w.instByRegion[regionKey{acct, region}], w.instByTag, acct, region, "instance-id", fs,
		func(id string) (*instance, bool) {
			in := w.instances[id]
			return in, in != nil && in.Account == acct && in.Region == region
		})
}

// indexSources chooses, for a listing of one account and region, the smallest set of indexes
// that answers one exact filter: the region's whole set, the tag index of a tag:<key> or
// tag-key filter (one set per value: their union), or the entities an id filter names.
func indexSources[T ordered](all *ordSet[T], byTag map[tagKey]*ordSet[T], acct, region, idFilter string, fs []filter,
	byID func(string) (T, bool)) []*ordSet[T] {
	best := []*ordSet[T]{all}
	size := all.len()
	for _, f := range fs {
		if !f.exact() {
			continue
		}
		var src []*ordSet[T]
		n := 0
		switch {
		case strings.HasPrefix(f.Name, "tag:"):
			for _, v := range f.Values {
				s := byTag[tagKey{acct, region, f.Name[4:], v, false}]
				src, n = append(src, s), n+s.len()
			}
		case f.Name == "tag-key":
			for _, v := range f.Values {
				s := byTag[tagKey{acct, region, v, "", true}]
				src, n = append(src, s), n+s.len()
			}
		case f.Name == idFilter:
			s := &ordSet[T]{}
			for _, id := range f.Values {
				if x, ok := byID(id); ok {
					s.add(x)
				}
			}
			src, n = []*ordSet[T]{s}, s.len()
		default:
			continue
		}
		if n < size {
			best, size = src, n
		}
	}
	return best
}

// pageLimit reads MaxResults within [lo, hi]; def is used when absent (0: no limit).
func pageLimit(c *call, lo, hi, def int) (int, bool, error) {
	n, ok, err := formInt(c.form, "MaxResults")
	if err != nil {
		return 0, false, err
	}
	if !ok {
		return def, false, nil
	}
	if n < lo || n > hi {
		return 0, false, errf("InvalidParameterValue", "Value ( %d ) for parameter maxResults is invalid. Parameter must be between %d and %d.", n, lo, hi)
	}
	return n, true, nil
}

// pageRequest reads MaxResults (lo..hi, refused together with ids) and the NextToken of a
// listing whose tokens carry prefix.
func pageRequest(c *call, prefix string, lo, hi int, withIDs bool) (limit int, after uint64, err error) {
	limit, hasLimit, err := pageLimit(c, lo, hi, 0)
	if err != nil {
		return 0, 0, err
	}
	if hasLimit && withIDs {
		return 0, 0, errf("InvalidParameterCombination", "The parameter MaxResults cannot be used together with a list of ids")
	}
	after, ok := parseToken(prefix, c.form.Get("NextToken"))
	if !ok {
		return 0, 0, errf("InvalidParameterValue", "The NextToken %q is not valid", c.form.Get("NextToken"))
	}
	return limit, after, nil
}

// findInstances is the instances a listing names by id (all of them must exist), or one page
// of the instances matching its filters.
func (c *call) findInstances(w *world, ids []string, fs []filter, after uint64, limit int, now time.Time,
	match func(*instance) bool) (found []*instance, more bool, err error) {
	if len(ids) > 0 {
		all, err := c.lookupInstances(w, ids, now)
		if err != nil {
			return nil, false, err
		}
		for _, in := range all {
			if match(in) {
				found = append(found, in)
			}
		}
		return found, false, nil
	}
	found, more = page(w.instanceSources(c.id.Account, c.region, fs), after, limit, func(in *instance) bool {
		w.settle(in, now)
		return match(in)
	})
	return found, more, nil
}

func ec2DescribeInstances(c *call) (any, error) {
	ids := list(c.form, "InstanceId")
	fs := filters(c.form)
	if err := checkInstanceFilters(fs); err != nil {
		return nil, err
	}
	limit, after, err := pageRequest(c, "di", 5, 1000, len(ids) > 0)
	if err != nil {
		return nil, err
	}
	// The page is rendered while it is read (shared lock): the instances go straight into the
	// response's bytes, with no copy of their fields in between.
	var doc *xmlBuf
	err = c.view(func(w *world, now time.Time) error {
		found, more, err := c.findInstances(w, ids, fs, after, limit, now, func(in *instance) bool { return instanceMatches(in, fs) })
		if err != nil {
			return err
		}
		if doc == nil {
			doc = getXMLBuf()
		}
		doc.Reset() // view may run this twice
		doc.begin("DescribeInstancesResponse", c.requestID, 256+1500*len(found))
		doc.open("reservationSet")
		for _, in := range found {
			doc.writeReservationOf(w.seed, in)
		}
		doc.close("reservationSet")
		if more && len(found) > 0 {
			doc.text("nextToken", pageToken("di", found[len(found)-1].Ord))
		}
		doc.close("DescribeInstancesResponse")
		return nil
	})
	if err != nil {
		if doc != nil {
			putXMLBuf(doc)
		}
		return nil, err
	}
	return &renderedXML{doc: doc}, nil
}

type ec2StatusDetail struct {
	Name   string `xml:"name"`
	Status string `xml:"status"`
}

type ec2StatusSummary struct {
	Status  string            `xml:"status"`
	Details []ec2StatusDetail `xml:"details>item"`
}

type ec2InstanceStatus struct {
	InstanceID       string           `xml:"instanceId"`
	AvailabilityZone string           `xml:"availabilityZone"`
	State            ec2State         `xml:"instanceState"`
	SystemStatus     ec2StatusSummary `xml:"systemStatus"`
	InstanceStatus   ec2StatusSummary `xml:"instanceStatus"`
}

type describeInstanceStatusResponse struct {
	XMLName xml.Name `xml:"DescribeInstanceStatusResponse"`
	ec2Meta
	Statuses  []ec2InstanceStatus `xml:"instanceStatusSet>item"`
	NextToken string              `xml:"nextToken,omitempty"`
}

// statusChecks are the system and instance status checks at t.
func (w *world) statusChecks(in *instance, t time.Time) (system, inst string) {
	switch {
	case in.State != "running":
		return "not-applicable", "not-applicable"
	case in.rebooting(t) || t.Before(in.BootedAt.Add(w.timing.Boot)):
		return "initializing", "initializing"
	case in.Impaired:
		return "ok", "impaired"
	default:
		return "ok", "ok"
	}
}

func statusSummary(s string) ec2StatusSummary {
	detail := map[string]string{"ok": "passed", "initializing": "initializing", "impaired": "failed"}[s]
	sum := ec2StatusSummary{Status: s}
	if detail != "" {
		sum.Details = []ec2StatusDetail{{"reachability", detail}}
	}
	return sum
}

func ec2DescribeInstanceStatus(c *call) (any, error) {
	ids := list(c.form, "InstanceId")
	fs := filters(c.form)
	var statusFilters, instFilters []filter
	for _, f := range fs {
		switch f.Name {
		case "instance-status.status", "system-status.status", "instance-status.reachability", "system-status.reachability":
			statusFilters = append(statusFilters, f)
		default:
			instFilters = append(instFilters, f)
		}
	}
	if err := checkInstanceFilters(instFilters); err != nil {
		return nil, err
	}
	includeAll := formBool(c.form, "IncludeAllInstances")
	limit, after, err := pageRequest(c, "ds", 5, 1000, len(ids) > 0)
	if err != nil {
		return nil, err
	}
	resp := &describeInstanceStatusResponse{Statuses: []ec2InstanceStatus{}}
	err = c.view(func(w *world, now time.Time) error {
		resp.Statuses, resp.NextToken = resp.Statuses[:0], "" // view may run this twice
		match := func(in *instance) bool {
			if !includeAll && in.State != "running" {
				return false
			}
			if !instanceMatches(in, instFilters) {
				return false
			}
			sys, inst := w.statusChecks(in, now)
			for _, f := range statusFilters {
				v := sys
				if strings.HasPrefix(f.Name, "instance-status") {
					v = inst
				}
				if strings.HasSuffix(f.Name, "reachability") {
					v = statusSummary(v).Details[0].Status
				}
				if !f.match(v) {
					return false
				}
			}
			return true
		}
		found, more, err := c.findInstances(w, ids, instFilters, after, limit, now, match)
		if err != nil {
			return err
		}
		resp.Statuses = slices.Grow(resp.Statuses, len(found))
		for _, in := range found {
			sys, inst := w.statusChecks(in, now)
			resp.Statuses = append(resp.Statuses, ec2InstanceStatus{InstanceID: in.ID, AvailabilityZone: in.AZ,
				State: ec2State{stateCodes[in.State], in.State}, SystemStatus: statusSummary(sys), InstanceStatus: statusSummary(inst)})
		}
		if more && len(found) > 0 {
			resp.NextToken = pageToken("ds", found[len(found)-1].Ord)
		}
		return nil
	})
	return resp, err
}

func ec2RebootInstances(c *call) (any, error) {
	ids := list(c.form, "InstanceId")
	if len(ids) == 0 {
		return nil, errf("MissingParameter", "The request must contain the parameter InstanceId")
	}
	err := c.s.update(func(w *world, now time.Time) error {
		all, err := c.lookupInstances(w, ids, now)
		if err != nil {
			return err
		}
		for _, in := range all {
			if in.State != "running" {
				return errf("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be rebooted (it is %s).", in.ID, in.State)
			}
		}
		for _, in := range all {
			until := now.Add(w.timing.Reboot)
			if until.After(in.RebootUntil) {
				in.RebootUntil = until
			}
			w.markInstance(in)
			w.settle(in, now)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ec2Return("RebootInstances"), nil
}

// --- snapshots ---

type ec2SnapshotInfo struct {
	SnapshotID  string   `xml:"snapshotId"`
	VolumeID    string   `xml:"volumeId"`
	State       string   `xml:"state"`
	StartTime   string   `xml:"startTime"`
	Progress    string   `xml:"progress"`
	OwnerID     string   `xml:"ownerId"`
	VolumeSize  int      `xml:"volumeSize"`
	Description string   `xml:"description"`
	Encrypted   bool     `xml:"encrypted"`
	Tags        []ec2Tag `xml:"tagSet>item"`
}

type createSnapshotsResponse struct {
	XMLName xml.Name `xml:"CreateSnapshotsResponse"`
	ec2Meta
	Snapshots []ec2SnapshotInfo `xml:"snapshotSet>item"`
}

type ec2Snapshot struct {
	SnapshotID    string   `xml:"snapshotId"`
	VolumeID      string   `xml:"volumeId"`
	Status        string   `xml:"status"`
	StatusMessage string   `xml:"statusMessage,omitempty"`
	StartTime     string   `xml:"startTime"`
	Progress      string   `xml:"progress"`
	OwnerID       string   `xml:"ownerId"`
	VolumeSize    int      `xml:"volumeSize"`
	Description   string   `xml:"description"`
	Encrypted     bool     `xml:"encrypted"`
	StorageTier   string   `xml:"storageTier"`
	Tags          []ec2Tag `xml:"tagSet>item"`
}

type describeSnapshotsResponse struct {
	XMLName xml.Name `xml:"DescribeSnapshotsResponse"`
	ec2Meta
	Snapshots []ec2Snapshot `xml:"snapshotSet>item"`
	NextToken string        `xml:"nextToken,omitempty"`
}

func ec2CreateSnapshots(c *call) (any, error) {
	id := c.form.Get("InstanceSpecification.InstanceId")
	if id == "" {
		return nil, errf("MissingParameter", "The request must contain the parameter InstanceSpecification.InstanceId")
	}
	excludeBoot := formBool(c.form, "InstanceSpecification.ExcludeBootVolume")
	excludeData := list(c.form, "InstanceSpecification.ExcludeDataVolumeId")
	copyFrom := c.form.Get("CopyTagsFromSource")
	if copyFrom != "" && copyFrom != "volume" {
		return nil, errf("InvalidParameterValue", "CopyTagsFromSource %q: must be volume", copyFrom)
	}
	specTags, err := tagSpecs(c.form, "snapshot")
	if err != nil {
		return nil, err
	}
	description := strings.Clone(c.form.Get("Description")) // kept: not a substring of the body
	var made []madeSnapshot
	err = c.s.update(func(w *world, now time.Time) error {
		in, err := c.lookupInstance(w, id, now)
		if err != nil {
			return err
		}
		if made == nil {
			made = make([]madeSnapshot, 0, len(in.Volumes))
		}
		made = made[:0]
		if in.State == "terminated" || in.State == "shutting-down" {
			return errf("IncorrectInstanceState", "The instance '%s' is not in a state from which it can be snapshotted (it is %s).", in.ID, in.State)
		}
		failing := in.FailNextSnaps > 0
		defer func() {
			if failing {
				in.FailNextSnaps--
				w.markInstance(in)
			}
		}()
		// Without tags copied from the volumes, the snapshots of one call share one tag map:
		// tags are changed copy-on-write (ec2ChangeTags), so 100,000 sets of several volumes
		// keep one map per set.
		shared := specTags // this call's own map (tagSpecs), nil when empty
		var setAt [3]*snapshot
		set := setAt[:0] // the snapshots that share it
		for i, v := range in.Volumes {
			if (i == 0 && excludeBoot) || (i > 0 && slices.Contains(excludeData, v.ID)) {
				continue
			}
			tags, sharesTags := shared, true
			if copyFrom == "volume" && len(v.Tags) > 0 {
				tags, sharesTags = maps.Clone(v.Tags), false
				maps.Copy(tags, specTags)
			}
			s := &snapshot{ID: w.newID("snap"), Account: in.Account, Region: in.Region, VolumeID: v.ID, VolumeSize: v.SizeGiB,
				InstanceID: in.ID, Root: i == 0, Description: description, Tags: tags, Start: now, Final: "completed"}
			s.Ord = w.nextOrd()
			s.EndAt = now.Add(w.timing.Snapshot)
			if in.FailNextSnaps > 0 || hashUnit(w.seed, "snapshot-error", s.ID) < w.rates.SnapshotError {
				s.Final = "error"
				s.EndAt = now.Add(w.timing.Snapshot / 2)
			}
			if s.Root {
				s.Patches = clonePatches(in.Patches)
				if s.Patches == nil {
					s.Patches = map[string]*patchRecord{}
				}
			}
			w.snapshots[s.ID] = s
			if sharesTags {
				set = append(set, s) // indexed together below
			} else {
				w.indexSnapshot(s)
			}
			w.markSnapshot(s)
			state, progress := s.stateAt(now)
			made = append(made, madeSnapshot{s: s, tags: s.Tags, shared: sharesTags, state: state, progress: progress})
		}
		w.indexSnapshotSet(set)
		return nil
	})
	if err != nil {
		return nil, err
	}
	// The answer is built after the lock is released: a snapshot's fields other than its tags
	// never change, and its tag map, taken under the lock, is replaced (copy on write), never
	// changed in place.
	// The snapshots that share the call's tag map share its sorted list in the answer too.
	resp := &createSnapshotsResponse{Snapshots: make([]ec2SnapshotInfo, 0, len(made))}
	var sharedList []ec2Tag
	var startTime string // the snapshots of a call start at one time: written once
	for i, m := range made {
		s := m.s
		if i == 0 || !s.Start.Equal(made[i-1].s.Start) {
			startTime = xmlTime(s.Start)
		}
		c.s.stats.operation(s.InstanceID, s.Start, s.EndAt)
		list := sharedList
		if !m.shared {
			list = ec2Tags(m.tags)
		} else if list == nil {
			list = ec2Tags(m.tags)
			sharedList = list
		}
		resp.Snapshots = append(resp.Snapshots, ec2SnapshotInfo{SnapshotID: s.ID, VolumeID: s.VolumeID, State: m.state,
			StartTime: startTime, Progress: m.progress, OwnerID: s.Account, VolumeSize: s.VolumeSize,
			Description: s.Description, Tags: list})
	}
	return resp, nil
}

// madeSnapshot is what CreateSnapshots answers about a snapshot it made, taken under the lock.
type madeSnapshot struct {
	s               *snapshot
	tags            map[string]string
	shared          bool // tags is the call's map, shared by its snapshots
	state, progress string
}

// sameTags tells whether a and b are one map (the same map, not equal contents): tag maps
// are shared by the snapshots of a call and replaced, never changed, when tags change.
func sameTags(a, b map[string]string) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

func snapshotFilterValue(s *snapshot, name string, now time.Time) (string, bool) {
	state, progress := s.stateAt(now)
	switch name {
	case "snapshot-id":
		return s.ID, true
	case "volume-id":
		return s.VolumeID, true
	case "status":
		return state, true
	case "progress":
		return progress, true
	case "owner-id":
		return s.Account, true
	case "description":
		return s.Description, true
	case "volume-size":
		return itoa(s.VolumeSize), true
	}
	return "", false
}

func snapshotMatches(s *snapshot, fs []filter, now time.Time) bool {
	for _, f := range fs {
		switch {
		case strings.HasPrefix(f.Name, "tag:"):
			v, ok := s.Tags[f.Name[4:]]
			if !ok || !f.match(v) {
				return false
			}
		case f.Name == "tag-key":
			if !slices.ContainsFunc(sortedTagKeys(s.Tags), f.match) {
				return false
			}
		default:
			v, _ := snapshotFilterValue(s, f.Name, now)
			if !f.match(v) {
				return false
			}
		}
	}
	return true
}

// snapshotXML is the snapshot as DescribeSnapshots answers it, with tags (nil: the snapshot's
// own, sorted).
func snapshotXML(s *snapshot, now time.Time, tags []ec2Tag) ec2Snapshot {
	if tags == nil {
		tags = ec2Tags(s.Tags)
	}
	state, progress := s.stateAt(now)
	x := ec2Snapshot{SnapshotID: s.ID, VolumeID: s.VolumeID, Status: state, StartTime: xmlTime(s.Start), Progress: progress,
		OwnerID: s.Account, VolumeSize: s.VolumeSize, Description: s.Description, StorageTier: "standard", Tags: tags}
	if state == "error" {
		x.StatusMessage = "Snapshot failed (injected by cloudsim)"
	}
	return x
}

func ec2DescribeSnapshots(c *call) (any, error) {
	ids := list(c.form, "SnapshotId")
	owners := list(c.form, "Owner")
	fs := filters(c.form)
	for _, f := range fs {
		if strings.HasPrefix(f.Name, "tag:") || f.Name == "tag-key" {
			continue
		}
		if _, ok := snapshotFilterValue(&snapshot{}, f.Name, time.Time{}); !ok {
			return nil, errf("InvalidParameterValue", "The filter '%s' is invalid", f.Name)
		}
	}
	limit, after, err := pageRequest(c, "dsn", 5, 1000, len(ids) > 0)
	if err != nil {
		return nil, err
	}
	resp := &describeSnapshotsResponse{Snapshots: []ec2Snapshot{}}
	err = c.view(func(w *world, now time.Time) error {
		resp.Snapshots, resp.NextToken = resp.Snapshots[:0], "" // view may run this twice
		if len(owners) > 0 && !slices.Contains(owners, "self") && !slices.Contains(owners, c.id.Account) {
			return nil // only the caller's own snapshots exist here
		}
		var found []*snapshot
		more := false
		if len(ids) > 0 {
			for _, id := range ids {
				if !validEC2ID(id, "snap") {
					return errf("InvalidSnapshotID.Malformed", "Invalid id: %q (expecting \"snap-...\")", id)
				}
				s := w.snapshots[id]
				if s == nil || s.Account != c.id.Account || s.Region != c.region {
					return errf("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
				}
				if snapshotMatches(s, fs, now) {
					found = append(found, s)
				}
			}
		} else {
			found, more = page(w.snapshotSources(c.id.Account, c.region, fs), after, limit, func(s *snapshot) bool {
				return snapshotMatches(s, fs, now)
			})
		}
		resp.Snapshots = slices.Grow(resp.Snapshots, len(found)) // one array for the page, not doublings
		// The snapshots of one CreateSnapshots call share their tag map (a set is found
		// together): its sorted list is made once for them.
		var listed map[string]string
		var list []ec2Tag
		for _, s := range found {
			if list == nil || !sameTags(s.Tags, listed) {
				listed, list = s.Tags, ec2Tags(s.Tags)
			}
			resp.Snapshots = append(resp.Snapshots, snapshotXML(s, now, list))
		}
		if more && len(found) > 0 {
			resp.NextToken = pageToken("dsn", found[len(found)-1].Ord)
		}
		return nil
	})
	return resp, err
}

func (w *world) snapshotSources(acct, region string, fs []filter) []*ordSet[*snapshot] {
	return indexSources(w.snapByRegion[regionKey{acct, region}], w.snapByTag, acct, region, "snapshot-id", fs,
		func(id string) (*snapshot, bool) {
			x := w.snapshots[id]
			return x, x != nil && x.Account == acct && x.Region == region
		})
}

func (c *call) lookupSnapshot(w *world, id string) (*snapshot, error) {
	if id == "" {
		return nil, errf("MissingParameter", "The request must contain the parameter SnapshotId")
	}
	if !validEC2ID(id, "snap") {
		return nil, errf("InvalidSnapshotID.Malformed", "Invalid id: %q (expecting \"snap-...\")", id)
	}
	s := w.snapshots[id]
	if s == nil || s.Account != c.id.Account || s.Region != c.region {
		return nil, errf("InvalidSnapshot.NotFound", "The snapshot '%s' does not exist.", id)
	}
	return s, nil
}

func ec2DeleteSnapshot(c *call) (any, error) {
	err := c.s.update(func(w *world, _ time.Time) error {
		s, err := c.lookupSnapshot(w, c.form.Get("SnapshotId"))
		if err != nil {
			return err
		}
		w.unindexSnapshot(s)
		delete(w.snapshots, s.ID)
		w.markDeleted("snapshot", s.ID)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ec2Return("DeleteSnapshot"), nil
}

// --- tags ---

func ec2CreateTags(c *call) (any, error) { return ec2ChangeTags(c, true) }
func ec2DeleteTags(c *call) (any, error) { return ec2ChangeTags(c, false) }

func ec2ChangeTags(c *call, create bool) (any, error) {
	resources := list(c.form, "ResourceId")
	if len(resources) == 0 {
		return nil, errf("MissingParameter", "The request must contain the parameter ResourceId")
	}
	pairs := tags(c.form, "Tag")
	if create && len(pairs) == 0 {
		return nil, errf("MissingParameter", "The request must contain the parameter Tag")
	}
	for _, t := range pairs {
		if err := checkTagKey(t.Key); err != nil {
			return nil, err
		}
		if t.Value != nil && len(*t.Value) > 256 {
			return nil, errf("InvalidParameterValue", "Tag value for key %q: must be at most 256 characters", t.Key)
		}
	}
	op := "DeleteTags"
	if create {
		op = "CreateTags"
	}
	err := c.s.update(func(w *world, now time.Time) error {
		// Check every resource before changing any.
		var insts []*instance
		var snaps []*snapshot
		var tasks []*rootTask
		for _, id := range resources {
			switch {
			case strings.HasPrefix(id, "i-"):
				in, err := c.lookupInstances(w, []string{id}, now)
				if err != nil {
					return err
				}
				insts = append(insts, in[0])
			case strings.HasPrefix(id, "snap-"):
				s, err := c.lookupSnapshot(w, id)
				if err != nil {
					return err
				}
				snaps = append(snaps, s)
			case strings.HasPrefix(id, "replacevol-"):
				r := w.tasks[id]
				if r == nil || r.Account != c.id.Account || r.Region != c.region {
					return errf("InvalidParameterValue", "The replace root volume task '%s' does not exist", id)
				}
				tasks = append(tasks, r)
			default:
				return errf("InvalidID", "The ID '%s' is not valid (cloudsim tags instances, snapshots and replace-root-volume tasks)", id)
			}
		}
		for _, in := range insts {
			if create && len(in.Tags)+len(pairs) > 50 {
				return errf("TagLimitExceeded", "The maximum number of tags (50) for resource '%s' has been reached.", in.ID)
			}
		}
		for _, t := range pairs {
			v := ""
			if t.Value != nil {
				v = *t.Value
			}
			for _, in := range insts {
				if create {
					in.Tags = setTag(w.instByTag, in, in.Tags, in.Account, in.Region, t.Key, v)
				} else {
					deleteTag(w.instByTag, in, in.Tags, in.Account, in.Region, t.Key, t.Value)
				}
				w.markInstance(in)
			}
			for _, s := range snaps {
				s.Tags = maps.Clone(s.Tags) // the snapshots of a CreateSnapshots call share their map
				if create {
					s.Tags = setTag(w.snapByTag, s, s.Tags, s.Account, s.Region, t.Key, v)
				} else {
					deleteTag(w.snapByTag, s, s.Tags, s.Account, s.Region, t.Key, t.Value)
				}
				w.markSnapshot(s)
			}
			for _, r := range tasks {
				if create {
					if r.Tags == nil {
						r.Tags = map[string]string{}
					}
					r.Tags[t.Key] = v
				} else if old, ok := r.Tags[t.Key]; ok && (t.Value == nil || *t.Value == old) {
					delete(r.Tags, t.Key)
				}
				w.markTask(r)
			}
		}
		if !create && len(pairs) == 0 { // DeleteTags without tags deletes every tag
			for _, in := range insts {
				for _, k := range sortedTagKeys(in.Tags) {
					deleteTag(w.instByTag, in, in.Tags, in.Account, in.Region, k, nil)
				}
				w.markInstance(in)
			}
			for _, s := range snaps {
				s.Tags = maps.Clone(s.Tags)
				for _, k := range sortedTagKeys(s.Tags) {
					deleteTag(w.snapByTag, s, s.Tags, s.Account, s.Region, k, nil)
				}
				w.markSnapshot(s)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return ec2Return(op), nil
}

// --- replace root volume ---

type ec2RootTask struct {
	ID             string   `xml:"replaceRootVolumeTaskId"`
	InstanceID     string   `xml:"instanceId"`
	TaskState      string   `xml:"taskState"`
	StartTime      string   `xml:"startTime"`
	CompleteTime   string   `xml:"completeTime,omitempty"`
	SnapshotID     string   `xml:"snapshotId,omitempty"`
	DeleteReplaced bool     `xml:"deleteReplacedRootVolume"`
	Tags           []ec2Tag `xml:"tagSet>item"`
}

type createRootTaskResponse struct {
	XMLName xml.Name `xml:"CreateReplaceRootVolumeTaskResponse"`
	ec2Meta
	Task ec2RootTask `xml:"replaceRootVolumeTask"`
}

type describeRootTasksResponse struct {
	XMLName xml.Name `xml:"DescribeReplaceRootVolumeTasksResponse"`
	ec2Meta
	Tasks     []ec2RootTask `xml:"replaceRootVolumeTaskSet>item"`
	NextToken string        `xml:"nextToken,omitempty"`
}

func rootTaskXML(r *rootTask, now time.Time) ec2RootTask {
	x := ec2RootTask{ID: r.ID, InstanceID: r.InstanceID, TaskState: r.stateAt(now), StartTime: xmlTime(r.Start),
		SnapshotID: r.SnapshotID, DeleteReplaced: r.DeleteReplaced, Tags: ec2Tags(r.Tags)}
	if !now.Before(r.EndAt) {
		x.CompleteTime = xmlTime(r.EndAt)
	}
	return x
}

func ec2CreateReplaceRootVolumeTask(c *call) (any, error) {
	id := c.form.Get("InstanceId")
	if id == "" {
		return nil, errf("MissingParameter", "The request must contain the parameter InstanceId")
	}
	if c.form.Get("ImageId") != "" || c.form.Get("VolumeId") != "" {
		return nil, errf("InvalidParameterValue", "cloudsim replaces root volumes from a snapshot (SnapshotId) or the launch state only; ImageId and VolumeId are not emulated")
	}
	snapID := c.form.Get("SnapshotId")
	deleteReplaced := formBool(c.form, "DeleteReplacedRootVolume")
	token := c.form.Get("ClientToken")
	if len(token) > 64 {
		return nil, errf("InvalidParameterValue", "ClientToken: must be at most 64 characters")
	}
	tagsIn, err := tagSpecs(c.form, "replace-root-volume-task")
	if err != nil {
		return nil, err
	}
	params := id + "|" + snapID + "|" + c.form.Get("DeleteReplacedRootVolume")
	resp := &createRootTaskResponse{}
	err = c.s.update(func(w *world, now time.Time) error {
		if token != "" {
			if r := w.taskByToken[tokenKey{c.id.Account, c.region, token}]; r != nil {
				if r.Params != params {
					return errf("IdempotentParameterMismatch", "The client token %q was already used with different parameters", token)
				}
				c.instances = append(c.instances, r.InstanceID)
				resp.Task = rootTaskXML(r, now)
				return nil
			}
		}
		all, err := c.lookupInstances(w, []string{id}, now)
		if err != nil {
			return err
		}
		in := all[0]
		if in.State != "running" {
			return errf("IncorrectInstanceState", "The instance '%s' is not in the 'running' state (it is %s).", in.ID, in.State)
		}
		r := &rootTask{ID: w.newID("replacevol"), Account: in.Account, Region: in.Region, InstanceID: in.ID, SnapshotID: snapID,
			ClientToken: token, Params: params, Start: now, DeleteReplaced: deleteReplaced, Tags: cloneTags(tagsIn), Final: "succeeded"}
		r.Ord = w.nextOrd()
		d := w.timing.ReplaceRootVolume
		r.PendingUntil, r.EndAt = now.Add(d/4), now.Add(d)
		if snapID != "" {
			s, err := c.lookupSnapshot(w, snapID)
			if err != nil {
				return err
			}
			state, _ := s.stateAt(now)
			switch {
			case state != "completed":
				r.Final, r.Reason = "failed", "snapshot "+s.ID+" is "+state+", not completed"
			case s.InstanceID != in.ID || !s.Root:
				r.Final, r.Reason = "failed", "snapshot "+s.ID+" is not of the root volume of "+in.ID
			default:
				r.Patches = clonePatches(s.Patches)
			}
		}
		if r.Final == "succeeded" {
			if r.Patches == nil {
				r.Patches = map[string]*patchRecord{} // the launch state: no patches applied
			}
			r.NewVolumeID = w.newID("vol")
			if r.EndAt.After(in.RebootUntil) {
				in.RebootUntil = r.EndAt // the instance restarts while its root volume is replaced
			}
			w.markInstance(in)
		}
		w.tasks[r.ID] = r
		w.indexTask(r)
		w.markTask(r)
		w.settle(in, now)
		resp.Task = rootTaskXML(r, now)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

func ec2DescribeReplaceRootVolumeTasks(c *call) (any, error) {
	ids := list(c.form, "ReplaceRootVolumeTaskId")
	fs := filters(c.form)
	var instanceIDs []string
	for _, f := range fs {
		if f.Name != "instance-id" {
			return nil, errf("InvalidParameterValue", "The filter '%s' is invalid (instance-id is supported)", f.Name)
		}
		instanceIDs = append(instanceIDs, f.Values...)
	}
	limit, after, err := pageRequest(c, "rt", 1, 50, len(ids) > 0)
	if err != nil {
		return nil, err
	}
	resp := &describeRootTasksResponse{Tasks: []ec2RootTask{}}
	err = c.view(func(w *world, now time.Time) error {
		resp.Tasks, resp.NextToken = resp.Tasks[:0], "" // view may run this twice
		mine := func(r *rootTask) bool { return r.Account == c.id.Account && r.Region == c.region }
		var found []*rootTask
		more := false
		if len(ids) > 0 {
			for _, id := range ids {
				r := w.tasks[id]
				if r == nil || !mine(r) {
					return errf("InvalidParameterValue", "The replace root volume task '%s' does not exist", id)
				}
				if len(instanceIDs) == 0 || slices.Contains(instanceIDs, r.InstanceID) {
					found = append(found, r)
				}
			}
		} else {
			sources := []*ordSet[*rootTask]{w.taskByRegion[regionKey{c.id.Account, c.region}]}
			if len(instanceIDs) > 0 {
				sources = sources[:0]
				for _, iid := range instanceIDs {
					sources = append(sources, w.taskByInst[iid])
				}
			}
			found, more = page(sources, after, limit, mine)
		}
		for _, r := range found {
			if in := w.instances[r.InstanceID]; in != nil {
				w.settle(in, now)
			}
			resp.Tasks = append(resp.Tasks, rootTaskXML(r, now))
		}
		if more && len(found) > 0 {
			resp.NextToken = pageToken("rt", found[len(found)-1].Ord)
		}
		return nil
	})
	return resp, err
}
