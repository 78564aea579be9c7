package cloudsim_test

import (
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/cloudsim"
)

func tagFilter(key string, values ...string) ec2types.Filter {
	return ec2types.Filter{Name: aws.String("tag:" + key), Values: values}
}

func describeAll(t *testing.T, c *ec2.Client, in *ec2.DescribeInstancesInput) (ids []string, pages int) {
	t.Helper()
	p := ec2.NewDescribeInstancesPaginator(c, in)
	for p.HasMorePages() {
		out, err := p.NextPage(t.Context())
		require.NoError(t, err)
		pages++
		for _, r := range out.Reservations {
			for _, in := range r.Instances {
				ids = append(ids, *in.InstanceId)
			}
		}
	}
	return ids, pages
}

func TestDescribeInstancesPagesThroughMoreThanAThousandInstances(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(2500)}})
	c := newClients(tenantConfig(t, srv, acmeID))

	ids, pages := describeAll(t, c.ec2, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(1000)})
	require.Len(t, ids, 2500)
	require.Equal(t, 3, pages)
	seen := map[string]bool{}
	for _, id := range ids {
		require.Regexp(t, `^i-[0-9a-f]{17}$`, id)
		require.False(t, seen[id], "instance %s listed twice", id)
		seen[id] = true
	}
	require.Equal(t, srv.InstanceIDs(acmeID, region), ids, "pages list instances in creation order")

	wave2, pages := describeAll(t, c.ec2, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(300),
		Filters: []ec2types.Filter{tagFilter("PatchWave", "2")}})
	require.Len(t, wave2, 833) // 2500 round robin over 3 waves: 834, 833, 833
	require.Equal(t, 3, pages)
}

func TestDescribeInstancesFilters(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{{ID: acmeID, Tenant: "acme", Instances: 60, Waves: 3,
		StoppedFraction: 0.3, OSMix: map[string]float64{"windows-server-2022": 1, "ubuntu-22.04": 1}}}})
	c := newClients(tenantConfig(t, srv, acmeID))
	all, _ := describeAll(t, c.ec2, &ec2.DescribeInstancesInput{})
	require.Len(t, all, 60)

	tests := []struct {
		name    string
		filters []ec2types.Filter
		check   func(t *testing.T, in ec2types.Instance)
		all     bool
	}{
		{"a tag filter keeps one wave", []ec2types.Filter{tagFilter("PatchWave", "1")}, func(t *testing.T, in ec2types.Instance) {
			require.Contains(t, in.Tags, ec2types.Tag{Key: aws.String("PatchWave"), Value: aws.String("1")})
		}, false},
		{"several values of a tag are a union", []ec2types.Filter{tagFilter("PatchWave", "1", "3")}, func(t *testing.T, in ec2types.Instance) {
			v := tagValue(in.Tags, "PatchWave")
			require.Contains(t, []string{"1", "3"}, v)
		}, false},
		{"filters are an intersection", []ec2types.Filter{tagFilter("PatchWave", "2"), {Name: aws.String("instance-state-name"), Values: []string{"running"}}},
			func(t *testing.T, in ec2types.Instance) {
				require.Equal(t, "2", tagValue(in.Tags, "PatchWave"))
				require.Equal(t, ec2types.InstanceStateNameRunning, in.State.Name)
			}, false},
		{"tag-key matches any value", []ec2types.Filter{{Name: aws.String("tag-key"), Values: []string{"OSFamily"}}}, func(t *testing.T, in ec2types.Instance) {
			require.NotEmpty(t, tagValue(in.Tags, "OSFamily"))
		}, true},
		{"wildcards match tag values", []ec2types.Filter{tagFilter("OSFamily", "windows-*")}, func(t *testing.T, in ec2types.Instance) {
			require.Equal(t, "windows-server-2022", tagValue(in.Tags, "OSFamily"))
			require.Equal(t, ec2types.PlatformValues("windows"), in.Platform)
		}, false},
		{"stopped instances are found by state", []ec2types.Filter{{Name: aws.String("instance-state-name"), Values: []string{"stopped"}}},
			func(t *testing.T, in ec2types.Instance) {
				require.Equal(t, ec2types.InstanceStateNameStopped, in.State.Name)
				require.Equal(t, int32(80), *in.State.Code)
			}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := c.ec2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{Filters: tt.filters})
			require.NoError(t, err)
			require.NotEmpty(t, out.Reservations)
			if tt.all {
				require.Len(t, out.Reservations, 60)
			} else {
				require.Less(t, len(out.Reservations), 60)
			}
			for _, r := range out.Reservations {
				require.Equal(t, acmeID, *r.OwnerId)
				for _, in := range r.Instances {
					tt.check(t, in)
				}
			}
		})
	}

	t.Run("an instance shows its OS, volumes and placement", func(t *testing.T) {
		out, err := c.ec2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: all[:1]})
		require.NoError(t, err)
		in := out.Reservations[0].Instances[0]
		require.NotEmpty(t, in.BlockDeviceMappings)
		require.LessOrEqual(t, len(in.BlockDeviceMappings), 3)
		require.Equal(t, *in.RootDeviceName, *in.BlockDeviceMappings[0].DeviceName)
		require.Regexp(t, `^vol-[0-9a-f]{17}$`, *in.BlockDeviceMappings[0].Ebs.VolumeId)
		require.Regexp(t, `^us-east-1[abc]$`, *in.Placement.AvailabilityZone)
		require.NotNil(t, in.LaunchTime)
	})

	t.Run("unknown and malformed ids are refused", func(t *testing.T) {
		_, err := c.ec2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: []string{"i-0123456789abcdef0"}})
		requireAPIError(t, err, "InvalidInstanceID.NotFound", 400)
		_, err = c.ec2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{InstanceIds: []string{"vm-1"}})
		requireAPIError(t, err, "InvalidInstanceID.Malformed", 400)
	})
	t.Run("MaxResults outside 5..1000 is refused", func(t *testing.T) {
		_, err := c.ec2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{MaxResults: aws.Int32(1001)})
		requireAPIError(t, err, "InvalidParameterValue", 400)
	})
	t.Run("an unknown filter is refused", func(t *testing.T) {
		_, err := c.ec2.DescribeInstances(t.Context(), &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{{Name: aws.String("colour"), Values: []string{"x"}}}})
		requireAPIError(t, err, "InvalidParameterValue", 400)
	})
}

func tagValue(tags []ec2types.Tag, key string) string {
	for _, t := range tags {
		if *t.Key == key {
			return *t.Value
		}
	}
	return ""
}

func TestSnapshotsProgressWithTheClock(t *testing.T) {
	clock := newFakeClock()
	srv := startServer(t, cloudsim.Config{Clock: clock.Now, Timing: cloudsim.Timing{Snapshot: 10 * time.Minute},
		Accounts: []cloudsim.AccountConfig{acmeConfig(3)}})
	c := newClients(tenantConfig(t, srv, acmeID))
	id := srv.InstanceIDs(acmeID, region)[0]
	info, _ := srv.Instance(id)

	out, err := c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{
		InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(id)},
		CopyTagsFromSource:    ec2types.CopyTagsFromSourceVolume,
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot,
			Tags: []ec2types.Tag{{Key: aws.String("patchwave:run"), Value: aws.String("run-1")}}}},
	})
	require.NoError(t, err)
	require.Len(t, out.Snapshots, len(info.Volumes), "one snapshot per attached volume")
	for i, s := range out.Snapshots {
		require.Equal(t, info.Volumes[i], *s.VolumeId)
		require.Equal(t, ec2types.SnapshotStatePending, s.State)
		require.Equal(t, "0%", *s.Progress)
		require.Equal(t, "run-1", tagValue(s.Tags, "patchwave:run"))
		require.NotEmpty(t, tagValue(s.Tags, "Name"), "volume tags copied")
	}
	snapID := *out.Snapshots[0].SnapshotId

	describe := func() ec2types.Snapshot {
		d, err := c.ec2.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snapID}, OwnerIds: []string{"self"}})
		require.NoError(t, err)
		require.Len(t, d.Snapshots, 1)
		return d.Snapshots[0]
	}
	clock.Advance(4 * time.Minute)
	s := describe()
	require.Equal(t, ec2types.SnapshotStatePending, s.State)
	require.Equal(t, "40%", *s.Progress)
	clock.Advance(6 * time.Minute)
	s = describe()
	require.Equal(t, ec2types.SnapshotStateCompleted, s.State)
	require.Equal(t, "100%", *s.Progress)

	byTag, err := c.ec2.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{Filters: []ec2types.Filter{
		tagFilter("patchwave:run", "run-1"), {Name: aws.String("status"), Values: []string{"completed"}}}})
	require.NoError(t, err)
	require.Len(t, byTag.Snapshots, len(info.Volumes))

	_, err = c.ec2.DeleteSnapshot(t.Context(), &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snapID)})
	require.NoError(t, err)
	_, err = c.ec2.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{SnapshotIds: []string{snapID}})
	requireAPIError(t, err, "InvalidSnapshot.NotFound", 400)
	_, err = c.ec2.DeleteSnapshot(t.Context(), &ec2.DeleteSnapshotInput{SnapshotId: aws.String(snapID)})
	requireAPIError(t, err, "InvalidSnapshot.NotFound", 400)
}

func TestSnapshotsOfStoppedTerminatedAndFailingInstances(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Faults: cloudsim.FaultConfig{SnapshotErrorRate: 1},
		Accounts: []cloudsim.AccountConfig{acmeConfig(3)}})
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultStopInstance, InstanceID: ids[0]}))
	require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultTerminateInstance, InstanceID: ids[1]}))

	out, err := c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(ids[0])}})
	require.NoError(t, err, "a stopped instance can be snapshotted")
	require.Equal(t, ec2types.SnapshotStateError, out.Snapshots[0].State, "error rate 1: every snapshot ends in error")

	_, err = c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(ids[1])}})
	requireAPIError(t, err, "IncorrectInstanceState", 400)
}

func TestSnapshotPagination(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(12)}})
	c := newClients(tenantConfig(t, srv, acmeID))
	want := 0
	for _, id := range srv.InstanceIDs(acmeID, region) {
		out, err := c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(id)}})
		require.NoError(t, err)
		want += len(out.Snapshots)
	}
	p := ec2.NewDescribeSnapshotsPaginator(c.ec2, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}, MaxResults: aws.Int32(5)})
	got, pages := 0, 0
	for p.HasMorePages() {
		out, err := p.NextPage(t.Context())
		require.NoError(t, err)
		got += len(out.Snapshots)
		pages++
	}
	require.Equal(t, want, got)
	require.GreaterOrEqual(t, pages, want/5)

	other, err := c.ec2.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{OwnerIds: []string{"999999999999"}})
	require.NoError(t, err)
	require.Empty(t, other.Snapshots)
}

func TestTagsOnInstancesAndSnapshots(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(6)}})
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)

	_, err := c.ec2.CreateTags(t.Context(), &ec2.CreateTagsInput{Resources: ids[:2],
		Tags: []ec2types.Tag{{Key: aws.String("PatchWave"), Value: aws.String("9")}, {Key: aws.String("Owner"), Value: aws.String("ops")}}})
	require.NoError(t, err)
	found, _ := describeAll(t, c.ec2, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{tagFilter("PatchWave", "9")}})
	require.ElementsMatch(t, ids[:2], found, "the tag index follows a changed value")
	wave1, _ := describeAll(t, c.ec2, &ec2.DescribeInstancesInput{Filters: []ec2types.Filter{tagFilter("PatchWave", "1")}})
	require.NotContains(t, wave1, ids[0], "the old value is no longer indexed")

	_, err = c.ec2.DeleteTags(t.Context(), &ec2.DeleteTagsInput{Resources: ids[:1], Tags: []ec2types.Tag{{Key: aws.String("Owner"), Value: aws.String("not-ops")}}})
	require.NoError(t, err)
	info, _ := srv.Instance(ids[0])
	require.Equal(t, "ops", info.Tags["Owner"], "a value that does not match deletes nothing")
	_, err = c.ec2.DeleteTags(t.Context(), &ec2.DeleteTagsInput{Resources: ids[:1], Tags: []ec2types.Tag{{Key: aws.String("Owner")}}})
	require.NoError(t, err)
	info, _ = srv.Instance(ids[0])
	require.NotContains(t, info.Tags, "Owner")

	snaps, err := c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(ids[2])}})
	require.NoError(t, err)
	snapID := *snaps.Snapshots[0].SnapshotId
	_, err = c.ec2.CreateTags(t.Context(), &ec2.CreateTagsInput{Resources: []string{snapID}, Tags: []ec2types.Tag{{Key: aws.String("keep"), Value: aws.String("yes")}}})
	require.NoError(t, err)
	d, err := c.ec2.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{Filters: []ec2types.Filter{tagFilter("keep", "yes")}})
	require.NoError(t, err)
	require.Len(t, d.Snapshots, 1)

	_, err = c.ec2.CreateTags(t.Context(), &ec2.CreateTagsInput{Resources: []string{"i-0123456789abcdef0"}, Tags: []ec2types.Tag{{Key: aws.String("a"), Value: aws.String("b")}}})
	requireAPIError(t, err, "InvalidInstanceID.NotFound", 400)
	_, err = c.ec2.CreateTags(t.Context(), &ec2.CreateTagsInput{Resources: ids[:1], Tags: []ec2types.Tag{{Key: aws.String("aws:x"), Value: aws.String("b")}}})
	requireAPIError(t, err, "InvalidParameterValue", 400)
}

func TestInstanceStatusAndReboot(t *testing.T) {
	clock := newFakeClock()
	srv := startServer(t, cloudsim.Config{Clock: clock.Now, Timing: cloudsim.Timing{Reboot: 2 * time.Minute, StateChange: time.Minute},
		Accounts: []cloudsim.AccountConfig{acmeConfig(4)}})
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultStopInstance, InstanceID: ids[3]}))
	require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultImpair, InstanceID: ids[2]}))

	status := func(all bool) map[string]ec2types.InstanceStatus {
		out, err := c.ec2.DescribeInstanceStatus(t.Context(), &ec2.DescribeInstanceStatusInput{IncludeAllInstances: aws.Bool(all)})
		require.NoError(t, err)
		m := map[string]ec2types.InstanceStatus{}
		for _, s := range out.InstanceStatuses {
			m[*s.InstanceId] = s
		}
		return m
	}
	st := status(true)
	require.Len(t, st, 4)
	require.Equal(t, ec2types.InstanceStateNameStopping, st[ids[3]].InstanceState.Name, "stopping lasts Timing.StateChange")
	require.Len(t, status(false), 3, "only running instances without IncludeAllInstances")
	require.Equal(t, ec2types.SummaryStatusImpaired, st[ids[2]].InstanceStatus.Status)
	require.Equal(t, ec2types.SummaryStatusOk, st[ids[0]].InstanceStatus.Status)
	require.Equal(t, ec2types.SummaryStatusOk, st[ids[0]].SystemStatus.Status)

	clock.Advance(time.Minute)
	st = status(true)
	require.Equal(t, ec2types.InstanceStateNameStopped, st[ids[3]].InstanceState.Name)
	require.Equal(t, ec2types.SummaryStatusNotApplicable, st[ids[3]].InstanceStatus.Status)

	_, err := c.ec2.RebootInstances(t.Context(), &ec2.RebootInstancesInput{InstanceIds: ids[:1]})
	require.NoError(t, err)
	st = status(false)
	require.Equal(t, ec2types.SummaryStatusInitializing, st[ids[0]].InstanceStatus.Status)
	info, _ := srv.Instance(ids[0])
	require.Equal(t, "ConnectionLost", info.PingStatus)
	clock.Advance(2 * time.Minute)
	st = status(false)
	require.Equal(t, ec2types.SummaryStatusOk, st[ids[0]].InstanceStatus.Status)

	_, err = c.ec2.RebootInstances(t.Context(), &ec2.RebootInstancesInput{InstanceIds: ids[3:4]})
	requireAPIError(t, err, "IncorrectInstanceState", 400)
}

// TestSnapshotsOfASetAnswerTheirOwnTags: the snapshots of one CreateSnapshots call share their
// tags until one of them is retagged; DescribeSnapshots, which lists a set's shared tags once,
// answers each snapshot with its own tags, in both the CreateSnapshots and DescribeSnapshots
// answers.
func TestSnapshotsOfASetAnswerTheirOwnTags(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(12)}})
	c := newClients(tenantConfig(t, srv, acmeID))
	var id string
	for _, x := range srv.InstanceIDs(acmeID, region) {
		if info, _ := srv.Instance(x); len(info.Volumes) > 1 {
			id = x
			break
		}
	}
	require.NotEmpty(t, id, "an instance with a data volume")
	spec := []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot,
		Tags: []ec2types.Tag{{Key: aws.String("set"), Value: aws.String("s1")}, {Key: aws.String("b"), Value: aws.String("2")}, {Key: aws.String("a"), Value: aws.String("1")}}}}
	made, err := c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{
		InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(id)}, TagSpecifications: spec})
	require.NoError(t, err)
	require.Greater(t, len(made.Snapshots), 1)
	want := map[string]string{"set": "s1", "a": "1", "b": "2"}
	for _, s := range made.Snapshots {
		require.Equal(t, want, tagsOf(s.Tags))
	}
	retagged := *made.Snapshots[1].SnapshotId
	_, err = c.ec2.CreateTags(t.Context(), &ec2.CreateTagsInput{Resources: []string{retagged},
		Tags: []ec2types.Tag{{Key: aws.String("b"), Value: aws.String("changed")}}})
	require.NoError(t, err)

	d, err := c.ec2.DescribeSnapshots(t.Context(), &ec2.DescribeSnapshotsInput{Filters: []ec2types.Filter{tagFilter("set", "s1")}})
	require.NoError(t, err)
	require.Len(t, d.Snapshots, len(made.Snapshots))
	for _, s := range d.Snapshots {
		tags := tagsOf(s.Tags)
		if *s.SnapshotId == retagged {
			require.Equal(t, map[string]string{"set": "s1", "a": "1", "b": "changed"}, tags)
		} else {
			require.Equal(t, want, tags, *s.SnapshotId)
		}
		require.Equal(t, []string{"a", "b", "set"}, []string{*s.Tags[0].Key, *s.Tags[1].Key, *s.Tags[2].Key}, "sorted by key")
	}
}

func tagsOf(tags []ec2types.Tag) map[string]string {
	out := map[string]string{}
	for _, t := range tags {
		out[*t.Key] = *t.Value
	}
	return out
}
