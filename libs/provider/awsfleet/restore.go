package awsfleet

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/patchwave/patchwave/libs/provider"
)

// restoreBatch is how many task ids one DescribeReplaceRootVolumeTasks call names.
const restoreBatch = 100

// RestoreClientToken is the ClientToken of the replace-root-volume task of (tenant,
// restoreKey): EC2 itself makes a repeated CreateReplaceRootVolumeTask with the same token
// return the task the first call started.
func RestoreClientToken(tenant, restoreKey string) string {
	h := sha256.Sum256([]byte("patchwave-restore\x00" + tenant + "\x00" + restoreKey))
	return hex.EncodeToString(h[:])[:64]
}

// RestoreFromSnapshot starts replacing the instance's root volume from the root-volume snapshot
// of a completed set (CreateReplaceRootVolumeTask, ClientToken from (Tenant, RestoreKey)). The
// replaced volume is kept (DeleteReplacedRootVolume false), so a restore can itself be undone.
func (f *Fleet) RestoreFromSnapshot(ctx context.Context, t provider.Target, req provider.RestoreRequest) (provider.Restore, error) {
	if err := req.Validate(); err != nil {
		return provider.Restore{}, err
	}
	if req.Tenant != t.Tenant {
		return provider.Restore{}, fmt.Errorf("%w: Tenant %q is not the target's tenant %q", provider.ErrInvalidArgument, req.Tenant, t.Tenant)
	}
	c, err := f.clientsFor(ctx, t)
	if err != nil {
		return provider.Restore{}, err
	}
	sets, err := f.describeSets(ctx, c, t, []string{req.SnapshotID})
	if err != nil {
		return provider.Restore{}, err
	}
	snaps := sets[req.SnapshotID]
	if len(snaps) == 0 {
		return provider.Restore{}, fmt.Errorf("restore %s: snapshot set %s: %w", req.InstanceID, req.SnapshotID, provider.ErrNotFound)
	}
	keep, _ := pickAttempt(snaps)
	set := toSnapshot(t, req.SnapshotID, keep)
	switch {
	case set.InstanceID != req.InstanceID:
		return provider.Restore{}, fmt.Errorf("%w: SnapshotID %s is a snapshot of instance %s, not of %s", provider.ErrInvalidArgument, req.SnapshotID, set.InstanceID, req.InstanceID)
	case set.State != provider.SnapshotCompleted:
		return provider.Restore{}, fmt.Errorf("restore %s from %s (%s): %w", req.InstanceID, req.SnapshotID, set.State, provider.ErrSnapshotNotCompleted)
	case set.RootSnapshotID == "":
		return provider.Restore{}, fmt.Errorf("%w: snapshot set %s has no root-volume snapshot", provider.ErrInvalidArgument, req.SnapshotID)
	}
	out, err := c.ec2.CreateReplaceRootVolumeTask(ctx, &ec2.CreateReplaceRootVolumeTaskInput{
		InstanceId:               aws.String(req.InstanceID),
		SnapshotId:               aws.String(set.RootSnapshotID),
		ClientToken:              aws.String(RestoreClientToken(req.Tenant, req.RestoreKey)),
		DeleteReplacedRootVolume: aws.Bool(false),
		TagSpecifications: []ec2types.TagSpecification{{
			ResourceType: ec2types.ResourceTypeReplaceRootVolumeTask,
			Tags: []ec2types.Tag{
				{Key: aws.String(TagTenant), Value: aws.String(req.Tenant)},
				{Key: aws.String(TagSnapshotSet), Value: aws.String(req.SnapshotID)},
				{Key: aws.String(TagRestoreKey), Value: aws.String(truncate(req.RestoreKey, 256))},
			},
		}},
	})
	if err != nil {
		return provider.Restore{}, wrapErr("ec2 CreateReplaceRootVolumeTask", t.Account, err)
	}
	r := toRestore(t, *out.ReplaceRootVolumeTask)
	if r.SnapshotID == "" {
		r.SnapshotID = req.SnapshotID
	}
	return r, nil
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// toRestore maps a replace-root-volume task: pending, in-progress, failing and
// failing-detached are in progress; succeeded succeeded; failed and failed-detached failed.
func toRestore(t provider.Target, task ec2types.ReplaceRootVolumeTask) provider.Restore {
	tags := tagMap(task.Tags)
	r := provider.Restore{
		ID:         aws.ToString(task.ReplaceRootVolumeTaskId),
		Tenant:     t.Tenant,
		InstanceID: aws.ToString(task.InstanceId),
		SnapshotID: tags[TagSnapshotSet],
	}
	if st, err := time.Parse(time.RFC3339, aws.ToString(task.StartTime)); err == nil {
		r.StartedAt = st
	}
	switch task.TaskState {
	case ec2types.ReplaceRootVolumeTaskStateSucceeded:
		r.State = provider.RestoreSucceeded
	case ec2types.ReplaceRootVolumeTaskStateFailed, ec2types.ReplaceRootVolumeTaskStateFailedDetached:
		r.State = provider.RestoreFailed
		r.Error = "replace root volume task " + string(task.TaskState)
	default:
		r.State = provider.RestoreInProgress
	}
	return r
}

// GetRestores reads restores by id with DescribeReplaceRootVolumeTasks, 100 ids per call. An
// unknown id, or a task of another tenant, is absent.
func (f *Fleet) GetRestores(ctx context.Context, t provider.Target, ids []string) (map[string]provider.Restore, error) {
	c, err := f.clientsForIDs(ctx, t, "ids", ids)
	if err != nil {
		return nil, err
	}
	out := make(map[string]provider.Restore, len(ids))
	var mu sync.Mutex
	add := func(tasks []ec2types.ReplaceRootVolumeTask) {
		mu.Lock()
		defer mu.Unlock()
		for _, task := range tasks {
			if tagMap(task.Tags)[TagTenant] != t.Tenant {
				continue
			}
			r := toRestore(t, task)
			out[r.ID] = r
		}
	}
	describe := func(ctx context.Context, ids []string) ([]ec2types.ReplaceRootVolumeTask, error) {
		var tasks []ec2types.ReplaceRootVolumeTask
		p := ec2.NewDescribeReplaceRootVolumeTasksPaginator(c.ec2, &ec2.DescribeReplaceRootVolumeTasksInput{ReplaceRootVolumeTaskIds: ids})
		for p.HasMorePages() {
			page, err := p.NextPage(ctx)
			if err != nil {
				return nil, err
			}
			tasks = append(tasks, page.ReplaceRootVolumeTasks...)
		}
		return tasks, nil
	}
	batches := chunks(ids, restoreBatch)
	err = f.parallel(ctx, len(batches), func(ctx context.Context, i int) error {
		tasks, err := describe(ctx, batches[i])
		if err == nil {
			add(tasks)
			return nil
		}
		if !unknownID(err) {
			return wrapErr("ec2 DescribeReplaceRootVolumeTasks", t.Account, err)
		}
		// One unknown id fails the call: ask one by one, leaving out the unknown ones.
		for _, id := range batches[i] {
			tasks, err := describe(ctx, []string{id})
			switch {
			case err == nil:
				add(tasks)
			case !unknownID(err):
				return wrapErr("ec2 DescribeReplaceRootVolumeTasks", t.Account, err)
			}
		}
		return nil
	})
	return out, err
}

// unknownID reports the errors EC2 gives for a task id that does not exist: a not-found code,
// or InvalidParameterValue ("... does not exist"), or a malformed id.
func unknownID(err error) bool {
	code := errorCode(err)
	return isNotFound(err) || code == "InvalidParameterValue" || strings.HasSuffix(code, ".Malformed")
}
