package cloudsim_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/cloudsim"
)

// putOverrideList uploads an install override list in AWS's YAML format and returns its URL.
func putOverrideList(t *testing.T, c clients, bucket, key string, patches ...string) string {
	t.Helper()
	_, err := c.s3.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(bucket)})
	if err != nil && !strings.Contains(err.Error(), "BucketAlreadyOwnedByYou") {
		require.NoError(t, err)
	}
	var b strings.Builder
	b.WriteString("patches:\n")
	for _, p := range patches {
		fmt.Fprintf(&b, "    -\n        id: '%s'\n        title: 'Update %s'\n", p, p)
	}
	_, err = c.s3.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key),
		Body: strings.NewReader(b.String())})
	require.NoError(t, err)
	return "s3://" + bucket + "/" + key
}

func sendPatch(t *testing.T, c clients, ids []string, operation, reboot, list string, timeout *int32) string {
	t.Helper()
	params := map[string][]string{"Operation": {operation}, "RebootOption": {reboot}}
	if list != "" {
		params["InstallOverrideList"] = []string{list}
	}
	out, err := c.ssm.SendCommand(t.Context(), &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunPatchBaseline"),
		InstanceIds: ids, Parameters: params, Comment: aws.String("patchwave run-1"), TimeoutSeconds: timeout,
		MaxConcurrency: aws.String("10"), MaxErrors: aws.String("1")})
	require.NoError(t, err)
	return *out.Command.CommandId
}

func invocation(t *testing.T, c clients, cmd, id string) *ssm.GetCommandInvocationOutput {
	t.Helper()
	out, err := c.ssm.GetCommandInvocation(t.Context(), &ssm.GetCommandInvocationInput{CommandId: aws.String(cmd), InstanceId: aws.String(id)})
	require.NoError(t, err)
	return out
}

func patchStates(t *testing.T, c clients, id string) map[string]ssmtypes.PatchComplianceDataState {
	t.Helper()
	states := map[string]ssmtypes.PatchComplianceDataState{}
	p := ssm.NewDescribeInstancePatchesPaginator(c.ssm, &ssm.DescribeInstancePatchesInput{InstanceId: aws.String(id), MaxResults: aws.Int32(10)})
	for p.HasMorePages() {
		out, err := p.NextPage(t.Context())
		require.NoError(t, err)
		for _, x := range out.Patches {
			states[*x.KBId] = x.State
		}
	}
	return states
}

func TestCommandLifecycleWithTheClock(t *testing.T) {
	clock := newFakeClock()
	srv := startServer(t, cloudsim.Config{Clock: clock.Now, Timing: cloudsim.Timing{CommandPending: time.Minute, Command: 5 * time.Minute},
		Accounts: []cloudsim.AccountConfig{acmeConfig(1)}})
	c := newClients(tenantConfig(t, srv, acmeID))
	good := srv.InstanceIDs(acmeID, region)[0]
	noAgent, err := srv.AddInstances(cloudsim.InstanceSpec{Account: acmeID, NoAgent: true})
	require.NoError(t, err)
	stopped, err := srv.AddInstances(cloudsim.InstanceSpec{Account: acmeID, Stopped: true})
	require.NoError(t, err)
	list := putOverrideList(t, c, "acme-patchwave", "runs/run-1.yaml", "KB5031364", "KB5032189", "openssl.x86_64")

	ids := []string{good, noAgent[0], stopped[0]}
	cmd := sendPatch(t, c, ids, "Install", "NoReboot", list, nil)
	require.Regexp(t, `^[0-9a-f-]{36}$`, cmd)

	statusOf := func() map[string]ssmtypes.CommandInvocation {
		out, err := c.ssm.ListCommandInvocations(t.Context(), &ssm.ListCommandInvocationsInput{CommandId: aws.String(cmd), Details: true})
		require.NoError(t, err)
		m := map[string]ssmtypes.CommandInvocation{}
		for _, v := range out.CommandInvocations {
			m[*v.InstanceId] = v
		}
		return m
	}
	st := statusOf()
	require.Len(t, st, 3, "one invocation per instance")
	require.Equal(t, ssmtypes.CommandInvocationStatusPending, st[good].Status)
	for _, id := range ids[1:] {
		require.Equal(t, ssmtypes.CommandInvocationStatusFailed, st[id].Status)
		require.Equal(t, "Undeliverable", *st[id].StatusDetails)
		require.NotEmpty(t, *st[id].CommandPlugins[0].Output, "the plugin output says why")
	}
	require.Contains(t, *st[noAgent[0]].CommandPlugins[0].Output, "not a managed node")
	require.Contains(t, *st[stopped[0]].CommandPlugins[0].Output, "stopped")

	clock.Advance(time.Minute)
	require.Equal(t, ssmtypes.CommandInvocationStatusInProgress, statusOf()[good].Status)
	inv := invocation(t, c, cmd, good)
	require.Equal(t, int32(-1), inv.ResponseCode)
	require.NotEmpty(t, *inv.ExecutionStartDateTime)

	clock.Advance(5 * time.Minute)
	st = statusOf()
	require.Equal(t, ssmtypes.CommandInvocationStatusSuccess, st[good].Status)
	require.Equal(t, "PatchLinux", *st[good].CommandPlugins[0].Name)
	inv = invocation(t, c, cmd, good)
	require.Equal(t, ssmtypes.CommandInvocationStatusSuccess, inv.Status)
	require.Equal(t, int32(0), inv.ResponseCode)
	require.Equal(t, "PT300.000S", *inv.ExecutionElapsedTime)
	require.Contains(t, *inv.StandardOutputContent, "KB5031364 INSTALLED")

	cmds, err := c.ssm.ListCommands(t.Context(), &ssm.ListCommandsInput{CommandId: aws.String(cmd)})
	require.NoError(t, err)
	require.Len(t, cmds.Commands, 1)
	require.Equal(t, ssmtypes.CommandStatusSuccess, cmds.Commands[0].Status, "undeliverable invocations do not fail the command")
	require.Equal(t, int32(3), cmds.Commands[0].TargetCount)
	require.Equal(t, int32(3), cmds.Commands[0].CompletedCount)
	require.Equal(t, []string{"NoReboot"}, cmds.Commands[0].Parameters["RebootOption"])

	require.Equal(t, map[string]ssmtypes.PatchComplianceDataState{"KB5031364": "INSTALLED", "KB5032189": "INSTALLED",
		"openssl.x86_64": "INSTALLED"}, patchStates(t, c, good), "exactly the patches of the override list")
	ps, err := c.ssm.DescribeInstancePatchStates(t.Context(), &ssm.DescribeInstancePatchStatesInput{InstanceIds: ids})
	require.NoError(t, err)
	require.Len(t, ps.InstancePatchStates, 1, "instances never patched report no state")
	require.Equal(t, int32(3), ps.InstancePatchStates[0].InstalledCount)
	require.Equal(t, ssmtypes.PatchOperationTypeInstall, ps.InstancePatchStates[0].Operation)
	require.Equal(t, list, *ps.InstancePatchStates[0].InstallOverrideList)

	byInstance, err := c.ssm.ListCommandInvocations(t.Context(), &ssm.ListCommandInvocationsInput{InstanceId: aws.String(good)})
	require.NoError(t, err)
	require.Len(t, byInstance.CommandInvocations, 1)
	_, err = c.ssm.GetCommandInvocation(t.Context(), &ssm.GetCommandInvocationInput{CommandId: aws.String(cmd), InstanceId: aws.String("i-0123456789abcdef0")})
	requireAPIError(t, err, "InvocationDoesNotExist", 400)
	_, err = c.ssm.ListCommandInvocations(t.Context(), &ssm.ListCommandInvocationsInput{CommandId: aws.String("00000000-0000-4000-a000-000000000000")})
	requireAPIError(t, err, "InvalidCommandId", 400)
}

func TestSendCommandValidation(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(51)}})
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	send := func(in *ssm.SendCommandInput) error {
		_, err := c.ssm.SendCommand(t.Context(), in)
		return err
	}
	install := map[string][]string{"Operation": {"Install"}}
	tests := []struct {
		name string
		in   *ssm.SendCommandInput
		code string
	}{
		{"more than 50 instances are refused", &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunPatchBaseline"), InstanceIds: ids, Parameters: install}, "ValidationException"},
		{"another document is refused", &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunShellScript"), InstanceIds: ids[:1], Parameters: install}, "InvalidDocument"},
		{"an unknown operation is refused", &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunPatchBaseline"), InstanceIds: ids[:1],
			Parameters: map[string][]string{"Operation": {"Upgrade"}}}, "InvalidParameters"},
		{"an unknown parameter is refused", &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunPatchBaseline"), InstanceIds: ids[:1],
			Parameters: map[string][]string{"Operation": {"Scan"}, "Colour": {"red"}}}, "InvalidParameters"},
		{"an instance of no account is refused", &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunPatchBaseline"),
			InstanceIds: []string{"i-0123456789abcdef0"}, Parameters: install}, "InvalidInstanceId"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			requireAPIError(t, send(tt.in), tt.code, 400)
		})
	}
	require.NoError(t, send(&ssm.SendCommandInput{DocumentName: aws.String("AWS-RunPatchBaseline"), InstanceIds: ids[:50], Parameters: install}),
		"50 instances are accepted")
}

func TestPatchOutcomesAreDeterministicAndRebootsFinishInstalls(t *testing.T) {
	clock := newFakeClock()
	srv := startServer(t, cloudsim.Config{Clock: clock.Now, Seed: 7, RebootRequiredRate: 0.5,
		Faults: cloudsim.FaultConfig{PatchFailureRate: 0.3}, Timing: cloudsim.Timing{Reboot: 2 * time.Minute},
		Accounts: []cloudsim.AccountConfig{acmeConfig(2)}})
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	patches := make([]string, 20)
	for i := range patches {
		patches[i] = fmt.Sprintf("pkg-%02d", i)
	}
	list := putOverrideList(t, c, "acme-lists", "all.yaml", patches...)

	// NoReboot: reboot-requiring patches stay pending a reboot.
	cmd := sendPatch(t, c, ids[:1], "Install", "NoReboot", list, nil)
	first := patchStates(t, c, ids[0])
	counts := map[ssmtypes.PatchComplianceDataState]int{}
	for _, s := range first {
		counts[s]++
	}
	require.Positive(t, counts["FAILED"])
	require.Positive(t, counts["INSTALLED_PENDING_REBOOT"])
	require.Positive(t, counts["INSTALLED"])
	require.Equal(t, ssmtypes.CommandInvocationStatusFailed, invocation(t, c, cmd, ids[0]).Status, "a failed patch fails the invocation")

	// A retry fails exactly the same patches.
	sendPatch(t, c, ids[:1], "Install", "NoReboot", list, nil)
	again := patchStates(t, c, ids[0])
	for p, s := range first {
		if s == "FAILED" {
			require.Equal(t, ssmtypes.PatchComplianceDataState("FAILED"), again[p], "patch %s", p)
		}
	}

	// RebootIfNeeded on an instance whose patches all succeed: the invocation ends after the reboot.
	var ok []string
	for _, p := range patches {
		if first[p] != "FAILED" {
			ok = append(ok, p)
		}
	}
	okList := putOverrideList(t, c, "acme-lists", "ok.yaml", ok...)
	cmd = sendPatch(t, c, ids[:1], "Install", "RebootIfNeeded", okList, nil)
	require.Equal(t, ssmtypes.CommandInvocationStatusInProgress, invocation(t, c, cmd, ids[0]).Status, "still rebooting")
	info, _ := srv.Instance(ids[0])
	require.True(t, info.Rebooting)
	require.Equal(t, "ConnectionLost", info.PingStatus)
	require.Equal(t, "initializing", info.InstanceCheck)
	clock.Advance(2 * time.Minute)
	require.Equal(t, ssmtypes.CommandInvocationStatusSuccess, invocation(t, c, cmd, ids[0]).Status)
	for _, p := range ok {
		require.Equal(t, ssmtypes.PatchComplianceDataState("INSTALLED"), patchStates(t, c, ids[0])[p], "patch %s installed after the reboot", p)
	}
	info, _ = srv.Instance(ids[0])
	require.Equal(t, "Online", info.PingStatus)
}

func TestScanReportsInstalledAndMissingPatches(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{{ID: acmeID, Tenant: "acme", Instances: 1,
		InstalledPatches: []string{"KB1"}, OSMix: map[string]float64{"windows-server-2022": 1}}}})
	c := newClients(tenantConfig(t, srv, acmeID))
	id := srv.InstanceIDs(acmeID, region)[0]
	list := putOverrideList(t, c, "acme-lists", "scan.yaml", "KB1", "KB2")
	cmd := sendPatch(t, c, []string{id}, "Scan", "NoReboot", list, nil)
	require.Equal(t, ssmtypes.CommandInvocationStatusSuccess, invocation(t, c, cmd, id).Status)
	require.Equal(t, "PatchWindows", *invocation(t, c, cmd, id).PluginName)
	require.Equal(t, map[string]ssmtypes.PatchComplianceDataState{"KB1": "INSTALLED", "KB2": "MISSING"}, patchStates(t, c, id))

	missing, err := c.ssm.DescribeInstancePatches(t.Context(), &ssm.DescribeInstancePatchesInput{InstanceId: aws.String(id),
		Filters: []ssmtypes.PatchOrchestratorFilter{{Key: aws.String("State"), Values: []string{"MISSING"}}}})
	require.NoError(t, err)
	require.Len(t, missing.Patches, 1)
	require.Equal(t, "Update KB2", *missing.Patches[0].Title)
	require.NotEmpty(t, *missing.Patches[0].Classification)
	require.NotEmpty(t, *missing.Patches[0].Severity)

	ps, err := c.ssm.DescribeInstancePatchStates(t.Context(), &ssm.DescribeInstancePatchStatesInput{InstanceIds: []string{id}})
	require.NoError(t, err)
	require.Equal(t, int32(1), ps.InstancePatchStates[0].InstalledCount)
	require.Equal(t, int32(1), ps.InstancePatchStates[0].MissingCount)
	require.Equal(t, ssmtypes.PatchOperationTypeScan, ps.InstancePatchStates[0].Operation)

	_, err = c.ssm.DescribeInstancePatchStates(t.Context(), &ssm.DescribeInstancePatchStatesInput{InstanceIds: make([]string, 51)})
	requireAPIError(t, err, "ValidationException", 400)
}

func TestCancelTimeoutAndMissingOverrideList(t *testing.T) {
	clock := newFakeClock()
	srv := startServer(t, cloudsim.Config{Clock: clock.Now, Timing: cloudsim.Timing{Command: 10 * time.Minute},
		Accounts: []cloudsim.AccountConfig{acmeConfig(3)}})
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	list := putOverrideList(t, c, "acme-lists", "one.yaml", "KB9")

	cmd := sendPatch(t, c, ids[:2], "Install", "NoReboot", list, nil)
	_, err := c.ssm.CancelCommand(t.Context(), &ssm.CancelCommandInput{CommandId: aws.String(cmd), InstanceIds: ids[:1]})
	require.NoError(t, err)
	clock.Advance(10 * time.Minute)
	require.Equal(t, ssmtypes.CommandInvocationStatusCancelled, invocation(t, c, cmd, ids[0]).Status)
	require.Equal(t, ssmtypes.CommandInvocationStatusSuccess, invocation(t, c, cmd, ids[1]).Status, "only the named instance is cancelled")
	require.Empty(t, patchStates(t, c, ids[0]), "a cancelled install changes nothing")
	cmds, err := c.ssm.ListCommands(t.Context(), &ssm.ListCommandsInput{CommandId: aws.String(cmd)})
	require.NoError(t, err)
	require.Equal(t, ssmtypes.CommandStatusCancelled, cmds.Commands[0].Status)

	timedOut := sendPatch(t, c, ids[2:], "Install", "NoReboot", list, aws.Int32(60))
	clock.Advance(time.Minute)
	inv := invocation(t, c, timedOut, ids[2])
	require.Equal(t, ssmtypes.CommandInvocationStatusTimedOut, inv.Status)
	require.Equal(t, "ExecutionTimedOut", *inv.StatusDetails)
	require.Empty(t, patchStates(t, c, ids[2]))

	missing := sendPatch(t, c, ids[2:], "Install", "NoReboot", "s3://acme-lists/nope.yaml", nil)
	inv = invocation(t, c, missing, ids[2])
	require.Equal(t, ssmtypes.CommandInvocationStatusFailed, inv.Status)
	require.Contains(t, *inv.StandardErrorContent, "NoSuchKey")

	require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultFailNextInstall, InstanceID: ids[1]}))
	failing := sendPatch(t, c, ids[1:2], "Install", "NoReboot", putOverrideList(t, c, "acme-lists", "two.yaml", "KB10"), nil)
	clock.Advance(10 * time.Minute)
	require.Equal(t, ssmtypes.CommandInvocationStatusFailed, invocation(t, c, failing, ids[1]).Status)
	require.Equal(t, ssmtypes.PatchComplianceDataState("FAILED"), patchStates(t, c, ids[1])["KB10"])
}

func TestDescribeInstanceInformation(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{{ID: acmeID, Tenant: "acme", Instances: 40, Waves: 2,
		AgentlessFraction: 0.25, OSMix: map[string]float64{"ubuntu-22.04": 1, "windows-server-2022": 1}}}})
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultDropAgent, InstanceID: ids[0]}))
	managed := 0
	for _, id := range ids {
		if info, _ := srv.Instance(id); info.Agent {
			managed++
		}
	}
	require.Less(t, managed, 40)

	var all []ssmtypes.InstanceInformation
	p := ssm.NewDescribeInstanceInformationPaginator(c.ssm, &ssm.DescribeInstanceInformationInput{MaxResults: aws.Int32(5)})
	pages := 0
	for p.HasMorePages() {
		out, err := p.NextPage(t.Context())
		require.NoError(t, err)
		all = append(all, out.InstanceInformationList...)
		pages++
	}
	require.Len(t, all, managed, "agent-less instances are absent")
	require.GreaterOrEqual(t, pages, managed/5)
	for _, x := range all {
		require.Contains(t, []ssmtypes.PlatformType{"Linux", "Windows"}, x.PlatformType)
		if x.PlatformType == "Windows" {
			require.Equal(t, "Microsoft Windows Server 2022 Datacenter", *x.PlatformName)
		} else {
			require.Equal(t, "Ubuntu", *x.PlatformName)
			require.Equal(t, "22.04", *x.PlatformVersion)
		}
	}

	out, err := c.ssm.DescribeInstanceInformation(t.Context(), &ssm.DescribeInstanceInformationInput{
		Filters: []ssmtypes.InstanceInformationStringFilter{{Key: aws.String("PingStatus"), Values: []string{"ConnectionLost"}}}})
	require.NoError(t, err)
	if info, _ := srv.Instance(ids[0]); info.Agent {
		require.Len(t, out.InstanceInformationList, 1)
		require.Equal(t, ids[0], *out.InstanceInformationList[0].InstanceId)
	}
	byID, err := c.ssm.DescribeInstanceInformation(t.Context(), &ssm.DescribeInstanceInformationInput{
		InstanceInformationFilterList: []ssmtypes.InstanceInformationFilter{{Key: ssmtypes.InstanceInformationFilterKeyInstanceIds, ValueSet: ids[1:4]}}})
	require.NoError(t, err)
	require.LessOrEqual(t, len(byID.InstanceInformationList), 3)
	for _, x := range byID.InstanceInformationList {
		require.Contains(t, ids[1:4], *x.InstanceId)
	}
}

func TestReplaceRootVolumeRestoresPatchStates(t *testing.T) {
	clock := newFakeClock()
	srv := startServer(t, cloudsim.Config{Clock: clock.Now, Timing: cloudsim.Timing{Snapshot: time.Minute, ReplaceRootVolume: 4 * time.Minute},
		Accounts: []cloudsim.AccountConfig{acmeConfig(2)}})
	c := newClients(tenantConfig(t, srv, acmeID))
	ids := srv.InstanceIDs(acmeID, region)
	id := ids[0]
	sendPatch(t, c, []string{id}, "Install", "NoReboot", putOverrideList(t, c, "acme-lists", "a.yaml", "A"), nil)

	snaps, err := c.ec2.CreateSnapshots(t.Context(), &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(id)}})
	require.NoError(t, err)
	rootSnap := *snaps.Snapshots[0].SnapshotId

	newTask := func(token, instance, snap string) (*ec2.CreateReplaceRootVolumeTaskOutput, error) {
		return c.ec2.CreateReplaceRootVolumeTask(t.Context(), &ec2.CreateReplaceRootVolumeTaskInput{InstanceId: aws.String(instance),
			SnapshotId: aws.String(snap), ClientToken: aws.String(token), DeleteReplacedRootVolume: aws.Bool(true),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeReplaceRootVolumeTask,
				Tags: []ec2types.Tag{{Key: aws.String("patchwave:restore"), Value: aws.String("r-1")}}}}})
	}
	early, err := newTask("early", id, rootSnap)
	require.NoError(t, err)
	sendPatch(t, c, []string{id}, "Install", "NoReboot", putOverrideList(t, c, "acme-lists", "b.yaml", "B"), nil)
	clock.Advance(4 * time.Minute)
	taskState := func(taskID string) ec2types.ReplaceRootVolumeTaskState {
		out, err := c.ec2.DescribeReplaceRootVolumeTasks(t.Context(), &ec2.DescribeReplaceRootVolumeTasksInput{ReplaceRootVolumeTaskIds: []string{taskID}})
		require.NoError(t, err)
		require.Len(t, out.ReplaceRootVolumeTasks, 1)
		return out.ReplaceRootVolumeTasks[0].TaskState
	}
	require.Equal(t, ec2types.ReplaceRootVolumeTaskStateFailed, taskState(*early.ReplaceRootVolumeTask.ReplaceRootVolumeTaskId),
		"a snapshot still pending fails the task")
	require.Contains(t, patchStates(t, c, id), "B")

	task, err := newTask("restore-1", id, rootSnap)
	require.NoError(t, err)
	taskID := *task.ReplaceRootVolumeTask.ReplaceRootVolumeTaskId
	require.Regexp(t, `^replacevol-[0-9a-f]{17}$`, taskID)
	require.Equal(t, ec2types.ReplaceRootVolumeTaskStatePending, task.ReplaceRootVolumeTask.TaskState)
	again, err := newTask("restore-1", id, rootSnap)
	require.NoError(t, err)
	require.Equal(t, taskID, *again.ReplaceRootVolumeTask.ReplaceRootVolumeTaskId, "the same client token is the same task")
	_, err = newTask("restore-1", ids[1], rootSnap)
	requireAPIError(t, err, "IdempotentParameterMismatch", 400)

	clock.Advance(time.Minute)
	require.Equal(t, ec2types.ReplaceRootVolumeTaskStateInProgress, taskState(taskID))
	info, _ := srv.Instance(id)
	require.True(t, info.Rebooting, "the instance restarts while its root volume is replaced")
	clock.Advance(3 * time.Minute)
	require.Equal(t, ec2types.ReplaceRootVolumeTaskStateSucceeded, taskState(taskID))
	require.Equal(t, map[string]ssmtypes.PatchComplianceDataState{"A": "INSTALLED"}, patchStates(t, c, id),
		"patches return to what they were when the snapshot was taken")
	after, _ := srv.Instance(id)
	require.NotEqual(t, info.Volumes[0], after.Volumes[0], "a new root volume")

	byInstance, err := c.ec2.DescribeReplaceRootVolumeTasks(t.Context(), &ec2.DescribeReplaceRootVolumeTasksInput{
		Filters: []ec2types.Filter{{Name: aws.String("instance-id"), Values: []string{id}}}})
	require.NoError(t, err)
	require.Len(t, byInstance.ReplaceRootVolumeTasks, 2)

	other, err := newTask("other", ids[1], rootSnap)
	require.NoError(t, err)
	clock.Advance(4 * time.Minute)
	require.Equal(t, ec2types.ReplaceRootVolumeTaskStateFailed, taskState(*other.ReplaceRootVolumeTask.ReplaceRootVolumeTaskId),
		"a snapshot of another instance fails the task")

	require.NoError(t, srv.InjectFault(cloudsim.Fault{Kind: cloudsim.FaultStopInstance, InstanceID: ids[1]}))
	_, err = newTask("stopped", ids[1], rootSnap)
	requireAPIError(t, err, "IncorrectInstanceState", 400)
}

// waitFor polls a condition without sleeping a fixed time.
func waitFor(t *testing.T, ctx context.Context, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatal("condition not met before the context ended")
		case <-tick.C:
		}
	}
}
