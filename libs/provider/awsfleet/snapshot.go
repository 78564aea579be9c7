package awsfleet

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/patchwave/patchwave/libs/provider"
)

// Tags the adapter puts on snapshots (and replace-root-volume tasks). Request tags may not use
// the "patchwave:" prefix.
const (
	TagTenant      = "patchwave:tenant"
	TagRun         = "patchwave:run"
	TagInstance    = "patchwave:instance"
	TagSnapshotSet = "patchwave:snapshot-set"
	TagRoot        = "patchwave:root"
	// TagAttempt tells apart the sets two racing creators took for one key (see the package
	// documentation).
	TagAttempt = "patchwave:attempt"
	// TagRestoreKey is on replace-root-volume tasks.
	TagRestoreKey = "patchwave:restore-key"

	reservedTagPrefix = "patchwave:"
)

// CreateSnapshots takes one crash-consistent snapshot set per request with CreateSnapshots (all
// attached volumes, CopyTagsFromSource off), or returns the set already taken for the
// request's (Tenant, RunID, InstanceID). Before creating, one DescribeSnapshots per batch looks
// for the sets by their set tag; after creating, a second look closes the race of two creators
// (see the package documentation). Requests for the same key in one batch share one set.
// A request that is invalid, or whose instance does not exist or is terminated, fails in its
// result. A call error after sets were started (the second look or the root tag failed) is
// safe to retry: the retry finds those sets.
func (f *Fleet) CreateSnapshots(ctx context.Context, t provider.Target, reqs []provider.SnapshotRequest) ([]provider.SnapshotResult, error) {
	c, err := f.clientsFor(ctx, t)
	if err != nil {
		return nil, err
	}
	results := make([]provider.SnapshotResult, len(reqs))
	byKey := make(map[string][]int) // set id -> request indexes
	var order []string
	for i, r := range reqs {
		if err := validateSnapshotRequest(t, r); err != nil {
			results[i].Err = fmt.Errorf("reqs[%d]: %w", i, err)
			continue
		}
		id := provider.SnapshotSetID(r.Tenant, r.RunID, r.InstanceID)
		if _, seen := byKey[id]; !seen {
			order = append(order, id)
		}
		byKey[id] = append(byKey[id], i)
	}
	if len(order) == 0 {
		return results, nil
	}
	setResult := func(id string, res provider.SnapshotResult) {
		for _, i := range byKey[id] {
			results[i] = res
		}
	}

	found, err := f.describeSets(ctx, c, t, order)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, id := range order {
		if len(found[id]) == 0 {
			missing = append(missing, id)
		}
	}
	reqOf := func(id string) provider.SnapshotRequest { return reqs[byKey[id][0]] }

	// The instances of the sets to create (and of found sets whose root tag is missing).
	var need []string
	for _, id := range order {
		if len(found[id]) == 0 || rootOf(found[id]) == "" {
			need = append(need, reqOf(id).InstanceID)
		}
	}
	instances, err := f.describeInstancesByID(ctx, c, t, need)
	if err != nil {
		return nil, err
	}

	// Create the missing sets, one CreateSnapshots call per instance.
	var (
		mu      sync.Mutex
		created []string
	)
	attempt := newAttemptID()
	err = f.parallel(ctx, len(missing), func(ctx context.Context, i int) error {
		id := missing[i]
		r := reqOf(id)
		inst, ok := instances[r.InstanceID]
		switch {
		case !ok:
			setResult(id, provider.SnapshotResult{Err: fmt.Errorf("snapshot %s: instance %s: %w", id, r.InstanceID, provider.ErrNotFound)})
			return nil
		case inst.State != nil && (inst.State.Name == ec2types.InstanceStateNameTerminated || inst.State.Name == ec2types.InstanceStateNameShuttingDown):
			setResult(id, provider.SnapshotResult{Err: fmt.Errorf("snapshot %s: instance %s is %s: %w", id, r.InstanceID, inst.State.Name, provider.ErrInstanceNotRunning)})
			return nil
		}
		if err := createSnapshotSet(ctx, c.ec2, id, attempt, r); err != nil {
			werr := wrapErr("ec2 CreateSnapshots", t.Account, err)
			if ctx.Err() != nil {
				return werr
			}
			setResult(id, provider.SnapshotResult{Err: fmt.Errorf("snapshot %s of %s: %w", id, r.InstanceID, werr)})
			return nil
		}
		mu.Lock()
		created = append(created, id)
		mu.Unlock()
		return nil
	})
	if err != nil {
		return nil, err
	}

	// Look again at what was created: a racing creator may have taken a set for the same key.
	if len(created) > 0 {
		again, err := f.describeSets(ctx, c, t, created)
		if err != nil {
			return nil, err
		}
		for _, id := range created {
			found[id] = again[id]
		}
	}

	// Resolve every set: keep one attempt, delete duplicates, tag the root volume's snapshot.
	var roots []string
	for _, id := range order {
		snaps := found[id]
		if len(snaps) == 0 {
			if slices.Contains(created, id) {
				// Created but not visible yet (eventual consistency): report it pending.
				setResult(id, provider.SnapshotResult{Snapshot: provider.Snapshot{
					ID: id, Tenant: t.Tenant, RunID: reqOf(id).RunID, InstanceID: reqOf(id).InstanceID,
					State: provider.SnapshotPending, Tags: reqOf(id).Tags, CreatedAt: f.cfg.Now(),
				}})
			}
			continue
		}
		keep, drop := pickAttempt(snaps)
		if len(drop) > 0 {
			f.metrics.races.Inc()
			f.cfg.Logger.WarnContext(ctx, "duplicate snapshot set removed", "set", id, "target", t.String(), "kept", attemptOf(keep[0]), "snapshots_deleted", len(drop))
			if err := f.deleteSnapshots(ctx, c, t, drop); err != nil {
				return nil, err
			}
		}
		snap := toSnapshot(t, id, keep)
		if snap.RootSnapshotID == "" {
			if inst, ok := instances[reqOf(id).InstanceID]; ok {
				if root := rootVolumeSnapshot(inst, keep); root != "" {
					roots = append(roots, root)
					snap.RootSnapshotID = root
					snap.VolumeSnapshotIDs = orderRootFirst(snap.VolumeSnapshotIDs, root)
				}
			}
		}
		setResult(id, provider.SnapshotResult{Snapshot: snap})
	}
	if len(roots) > 0 {
		if err := f.tagResources(ctx, c, t, roots, map[string]string{TagRoot: "true"}); err != nil {
			return nil, err
		}
	}
	return results, nil
}

// createSnapshotSet sends the CreateSnapshots call that starts set id for r.
func createSnapshotSet(ctx context.Context, client *ec2.Client, id, attempt string, r provider.SnapshotRequest) error {
	// The input and the values its pointers point to are one allocation (the call is made once
	// per instance, and each aws.String is an allocation of its own).
	a := &struct {
		in          ec2.CreateSnapshotsInput
		spec        ec2types.InstanceSpecification
		specs       [1]ec2types.TagSpecification
		instanceID  string
		description string
		excludeBoot bool
	}{
		instanceID:  r.InstanceID,
		description: "patchwave pre-patch snapshot run=" + r.RunID + " instance=" + r.InstanceID,
	}
	a.spec = ec2types.InstanceSpecification{InstanceId: &a.instanceID, ExcludeBootVolume: &a.excludeBoot}
	a.specs[0] = ec2types.TagSpecification{ResourceType: ec2types.ResourceTypeSnapshot, Tags: snapshotTags(id, attempt, r)}
	a.in = ec2.CreateSnapshotsInput{InstanceSpecification: &a.spec, Description: &a.description, TagSpecifications: a.specs[:]}
	// The answer is not used (the look after creating reads the sets): the adapter's EC2
	// clients drop it unread (adapterEC2Decoders).
	_, err := client.CreateSnapshots(ctx, &a.in)
	return err
}

func validateSnapshotRequest(t provider.Target, r provider.SnapshotRequest) error {
	if err := r.Validate(); err != nil {
		return err
	}
	if r.Tenant != t.Tenant {
		return fmt.Errorf("%w: Tenant %q is not the target's tenant %q", provider.ErrInvalidArgument, r.Tenant, t.Tenant)
	}
	if len(r.Tags) > 40 {
		return fmt.Errorf("%w: Tags must have at most 40 entries, got %d", provider.ErrInvalidArgument, len(r.Tags))
	}
	for k, v := range r.Tags {
		switch {
		case k == "" || len(k) > 128:
			return fmt.Errorf("%w: Tags key %q must have 1 to 128 characters", provider.ErrInvalidArgument, k)
		case strings.HasPrefix(k, reservedTagPrefix) || strings.HasPrefix(strings.ToLower(k), "aws:"):
			return fmt.Errorf("%w: Tags key %q must not start with %s or \"aws:\"", provider.ErrInvalidArgument, k, reservedTagPrefix)
		case len(v) > 256:
			return fmt.Errorf("%w: Tags[%q] must have at most 256 characters", provider.ErrInvalidArgument, k)
		}
	}
	return nil
}

// snapshotTags are the tags of a set's snapshots: the adapter's five, then the request's by
// key. The keys and values the tags point to share one array (the SDK's members are pointers):
// two allocations for the tags rather than two per tag.
func snapshotTags(setID, attempt string, r provider.SnapshotRequest) []ec2types.Tag {
	vals := make([]string, 0, 2*(5+len(r.Tags)))
	vals = append(vals, TagTenant, r.Tenant, TagRun, r.RunID, TagInstance, r.InstanceID,
		TagSnapshotSet, setID, TagAttempt, attempt)
	if len(r.Tags) > 0 {
		keys := make([]string, 0, len(r.Tags))
		for k := range r.Tags {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			vals = append(vals, k, r.Tags[k])
		}
	}
	// vals is complete: the pointers into it stay valid.
	tags := make([]ec2types.Tag, len(vals)/2)
	for i := range tags {
		tags[i] = ec2types.Tag{Key: &vals[2*i], Value: &vals[2*i+1]}
	}
	return tags
}

// newAttemptID returns a random id for one CreateSnapshots batch.
func newAttemptID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// describeSets reads the volume snapshots of sets by their set tag, limited to the tenant's
// (one DescribeSnapshots per 200 sets, paginated by 1,000).
func (f *Fleet) describeSets(ctx context.Context, c *clients, t provider.Target, setIDs []string) (map[string][]ec2types.Snapshot, error) {
	out := make(map[string][]ec2types.Snapshot, len(setIDs))
	var mu sync.Mutex
	batches := chunks(setIDs, filterValuesBatch)
	err := f.parallel(ctx, len(batches), func(ctx context.Context, i int) error {
		p := ec2.NewDescribeSnapshotsPaginator(c.ec2, &ec2.DescribeSnapshotsInput{
			OwnerIds: []string{"self"},
			Filters: []ec2types.Filter{
				{Name: aws.String("tag:" + TagSnapshotSet), Values: batches[i]},
				{Name: aws.String("tag:" + TagTenant), Values: []string{t.Tenant}},
			},
			MaxResults: aws.Int32(describePageSize),
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return wrapErr("ec2 DescribeSnapshots", t.Account, err)
			}
			mu.Lock()
			for _, s := range page.Snapshots {
				id := tagValue(s.Tags, TagSnapshotSet)
				out[id] = append(out[id], s)
			}
			mu.Unlock()
		}
		return nil
	})
	return out, err
}

// describeInstancesByID reads instances by id with an instance-id filter (which, unlike
// InstanceIds, does not fail the whole call for an id that does not exist).
func (f *Fleet) describeInstancesByID(ctx context.Context, c *clients, t provider.Target, ids []string) (map[string]ec2types.Instance, error) {
	out := make(map[string]ec2types.Instance, len(ids))
	var mu sync.Mutex
	batches := chunks(ids, filterValuesBatch)
	err := f.parallel(ctx, len(batches), func(ctx context.Context, i int) error {
		p := ec2.NewDescribeInstancesPaginator(c.ec2, &ec2.DescribeInstancesInput{
			Filters:    []ec2types.Filter{{Name: aws.String("instance-id"), Values: batches[i]}},
			MaxResults: aws.Int32(describePageSize),
		})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return wrapErr("ec2 DescribeInstances", t.Account, err)
			}
			mu.Lock()
			for _, r := range page.Reservations {
				for _, in := range r.Instances {
					out[aws.ToString(in.InstanceId)] = in
				}
			}
			mu.Unlock()
		}
		return nil
	})
	return out, err
}

func attemptOf(s ec2types.Snapshot) string { return tagValue(s.Tags, TagAttempt) }

// pickAttempt splits a set's volume snapshots into the attempt that is kept and the rest. The
// kept attempt is the one whose earliest snapshot started first, ties broken by the smaller
// attempt id: every creator looking at the same snapshots picks the same one, and it is the
// first one created, the one a first creator may already have returned.
func pickAttempt(snaps []ec2types.Snapshot) (keep, drop []ec2types.Snapshot) {
	type attempt struct {
		id    string
		start time.Time
	}
	first := map[string]time.Time{}
	for _, s := range snaps {
		a := attemptOf(s)
		st := aws.ToTime(s.StartTime)
		if cur, ok := first[a]; !ok || st.Before(cur) {
			first[a] = st
		}
	}
	if len(first) == 1 {
		return snaps, nil
	}
	all := make([]attempt, 0, len(first))
	for id, st := range first {
		all = append(all, attempt{id: id, start: st})
	}
	sort.Slice(all, func(i, j int) bool {
		if !all[i].start.Equal(all[j].start) {
			return all[i].start.Before(all[j].start)
		}
		return all[i].id < all[j].id
	})
	for _, s := range snaps {
		if attemptOf(s) == all[0].id {
			keep = append(keep, s)
		} else {
			drop = append(drop, s)
		}
	}
	return keep, drop
}

// rootOf returns the snapshot id tagged as the root volume's, or "".
func rootOf(snaps []ec2types.Snapshot) string {
	keep, _ := pickAttempt(snaps)
	for _, s := range keep {
		if tagValue(s.Tags, TagRoot) == "true" {
			return aws.ToString(s.SnapshotId)
		}
	}
	return ""
}

// rootVolumeSnapshot returns the snapshot of the instance's root volume among snaps.
func rootVolumeSnapshot(inst ec2types.Instance, snaps []ec2types.Snapshot) string {
	vols := volumeIDs(inst)
	if len(vols) == 0 || aws.ToString(inst.RootDeviceName) == "" {
		return ""
	}
	for _, s := range snaps {
		if aws.ToString(s.VolumeId) == vols[0] {
			return aws.ToString(s.SnapshotId)
		}
	}
	return ""
}

// toSnapshot aggregates one attempt's volume snapshots into a set: error if any is in error,
// pending if any is pending, else completed; progress is the least advanced volume's.
func toSnapshot(t provider.Target, setID string, snaps []ec2types.Snapshot) provider.Snapshot {
	s := provider.Snapshot{ID: setID, Tenant: t.Tenant, State: provider.SnapshotCompleted, Progress: 100}
	var errs []string
	type vol struct{ snap, volume string }
	var vols []vol
	for i, v := range snaps {
		if i == 0 {
			s.RunID, s.InstanceID = tagValue(v.Tags, TagRun), tagValue(v.Tags, TagInstance)
			s.Tags = userTags(v.Tags)
		}
		id := aws.ToString(v.SnapshotId)
		if tagValue(v.Tags, TagRoot) == "true" {
			s.RootSnapshotID = id
		}
		vols = append(vols, vol{snap: id, volume: aws.ToString(v.VolumeId)})
		switch v.State {
		case ec2types.SnapshotStateError:
			s.State = provider.SnapshotError
			errs = append(errs, fmt.Sprintf("%s: %s", id, aws.ToString(v.StateMessage)))
		case ec2types.SnapshotStateCompleted:
		default:
			if s.State != provider.SnapshotError {
				s.State = provider.SnapshotPending
			}
		}
		if p := parseProgress(aws.ToString(v.Progress), v.State); p < s.Progress {
			s.Progress = p
		}
		if st := aws.ToTime(v.StartTime); !st.IsZero() && (s.CreatedAt.IsZero() || st.Before(s.CreatedAt)) {
			s.CreatedAt = st
		}
	}
	sort.Slice(vols, func(i, j int) bool { return vols[i].volume < vols[j].volume })
	for _, v := range vols {
		s.VolumeSnapshotIDs = append(s.VolumeSnapshotIDs, v.snap)
	}
	if s.RootSnapshotID != "" {
		s.VolumeSnapshotIDs = orderRootFirst(s.VolumeSnapshotIDs, s.RootSnapshotID)
	}
	sort.Strings(errs)
	s.Error = strings.Join(errs, "; ")
	return s
}

func orderRootFirst(ids []string, root string) []string {
	out := []string{root}
	for _, id := range ids {
		if id != root {
			out = append(out, id)
		}
	}
	return out
}

// parseProgress reads EC2's "NN%" progress.
func parseProgress(p string, state ec2types.SnapshotState) int {
	n, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(p), "%"))
	if err != nil {
		if state == ec2types.SnapshotStateCompleted {
			return 100
		}
		return 0
	}
	return min(max(n, 0), 100)
}

// userTags are the tags without the adapter's own (nil when there are none).
func userTags(tags []ec2types.Tag) map[string]string {
	var out map[string]string
	for _, t := range tags {
		k := aws.ToString(t.Key)
		if strings.HasPrefix(k, reservedTagPrefix) {
			continue
		}
		if out == nil {
			out = make(map[string]string)
		}
		out[k] = aws.ToString(t.Value)
	}
	return out
}

// tagValue returns the value of the tag key, or "" (a scan: a snapshot has a handful of tags,
// and building a map per snapshot for one look-up was a measurable share of a poll's CPU).
func tagValue(tags []ec2types.Tag, key string) string {
	for _, t := range tags {
		if aws.ToString(t.Key) == key {
			return aws.ToString(t.Value)
		}
	}
	return ""
}

// GetSnapshots reads snapshot sets by id with one DescribeSnapshots per 200 sets. A set left
// with duplicates by racing creators is read as the attempt CreateSnapshots keeps.
func (f *Fleet) GetSnapshots(ctx context.Context, t provider.Target, setIDs []string) (map[string]provider.Snapshot, error) {
	c, err := f.clientsForIDs(ctx, t, "setIDs", setIDs)
	if err != nil {
		return nil, err
	}
	found, err := f.describeSets(ctx, c, t, setIDs)
	if err != nil {
		return nil, err
	}
	out := make(map[string]provider.Snapshot, len(found))
	for _, id := range setIDs {
		if snaps := found[id]; len(snaps) > 0 {
			keep, _ := pickAttempt(snaps)
			out[id] = toSnapshot(t, id, keep)
		}
	}
	return out, nil
}

// DeleteSnapshot deletes every volume snapshot of the set (of every attempt). A set that does
// not exist is deleted already.
func (f *Fleet) DeleteSnapshot(ctx context.Context, t provider.Target, setID string) error {
	if setID == "" {
		return fmt.Errorf("%w: setID is required", provider.ErrInvalidArgument)
	}
	c, err := f.clientsFor(ctx, t)
	if err != nil {
		return err
	}
	found, err := f.describeSets(ctx, c, t, []string{setID})
	if err != nil {
		return err
	}
	return f.deleteSnapshots(ctx, c, t, found[setID])
}

func (f *Fleet) deleteSnapshots(ctx context.Context, c *clients, t provider.Target, snaps []ec2types.Snapshot) error {
	return f.parallel(ctx, len(snaps), func(ctx context.Context, i int) error {
		_, err := c.ec2.DeleteSnapshot(ctx, &ec2.DeleteSnapshotInput{SnapshotId: snaps[i].SnapshotId})
		if err != nil && isNotFound(err) {
			return nil
		}
		return wrapErr("ec2 DeleteSnapshot", t.Account, err)
	})
}

// tagResources puts tags on EC2 resources, 1,000 per CreateTags call.
func (f *Fleet) tagResources(ctx context.Context, c *clients, t provider.Target, ids []string, tags map[string]string) error {
	var ec2Tags []ec2types.Tag
	for k, v := range tags {
		ec2Tags = append(ec2Tags, ec2types.Tag{Key: aws.String(k), Value: aws.String(v)})
	}
	batches := chunks(ids, tagBatch)
	return f.parallel(ctx, len(batches), func(ctx context.Context, i int) error {
		_, err := c.ec2.CreateTags(ctx, &ec2.CreateTagsInput{Resources: batches[i], Tags: ec2Tags})
		return wrapErr("ec2 CreateTags", t.Account, err)
	})
}
