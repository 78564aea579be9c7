package provider

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// Fleet is the interface every cloud adapter implements: the AWS adapter (libs/provider/awsfleet)
// against AWS or cloudsim. It is built for fleets of 100,000 instances:
//
//   - Calls about existing things are batched: one call takes many instances, snapshots or
//     installations of one Target (a tenant's account and region) and the adapter splits them
//     into as few cloud API calls as the API allows (50 instance ids per SSM SendCommand, 1,000
//     per EC2 page, ...). A per-item failure is reported in that item's result, not as the
//     call's error; the call's error means nothing was done (credentials refused, throttled
//     after every retry, ctx done).
//   - Nothing waits for a cloud operation to finish: CreateSnapshots, Install, Scan and
//     RestoreFromSnapshot start the work and return; callers track completion with the batched
//     Get methods (one DescribeSnapshots, ListCommandInvocations or
//     DescribeReplaceRootVolumeTasks call for many operations).
//
// Every method is scoped to a tenant: an id that belongs to another tenant is not found. Invalid
// requests return an error wrapping ErrInvalidArgument that names the field and rule. All
// methods are safe for concurrent use.
type Fleet interface {
	// Targets returns the accounts and regions the tenant's instances live in, from the
	// tenant's configuration; every other call names one of them.
	Targets(ctx context.Context, tenant string) ([]Target, error)
	// DiscoverInstances lists the instances of every target of the tenant that match q, one
	// page (at most 1,000 instances of one target, sorted by ID within the page: clouds page in
	// their own order) at a time. It stops at the
	// first error page returns.
	DiscoverInstances(ctx context.Context, q DiscoverQuery, page func([]Instance) error) error
	// TagInstances puts tags on instances (creating or overwriting them).
	TagInstances(ctx context.Context, t Target, instanceIDs []string, tags map[string]string) error
	// UntagInstances removes tag keys from instances.
	UntagInstances(ctx context.Context, t Target, instanceIDs []string, keys []string) error

	// CreateSnapshots starts one crash-consistent snapshot set (every attached volume) per
	// request, or returns the set already taken for the request's (Tenant, RunID, InstanceID):
	// never a second set for a run and instance. Results are in the order of reqs.
	CreateSnapshots(ctx context.Context, t Target, reqs []SnapshotRequest) ([]SnapshotResult, error)
	// GetSnapshots reads snapshot sets by id (SnapshotSetID). A set that does not exist (or no
	// longer does) is absent from the map.
	GetSnapshots(ctx context.Context, t Target, setIDs []string) (map[string]Snapshot, error)
	// DeleteSnapshot deletes a snapshot set and all its volume snapshots. Deleting a set that
	// does not exist succeeds.
	DeleteSnapshot(ctx context.Context, t Target, setID string) error

	// Install starts one installation per request (AWS-RunPatchBaseline, Operation=Install).
	// Requests that share run, baseline, patch list, reboot policy and timeout are sent
	// together (at most 50 instances per SSM command; the run is the command's comment).
	// Results are in the order of reqs. Install does not look for an installation already
	// started for the same run and instance: the caller does, with FindInstallations, when it
	// may have started one before (a redelivered job).
	Install(ctx context.Context, t Target, reqs []InstallRequest) ([]InstallResult, error)
	// Scan starts one assessment per request (AWS-RunPatchBaseline, Operation=Scan): nothing
	// is installed; per-patch states are read with PatchStates once the scan is terminal.
	Scan(ctx context.Context, t Target, reqs []ScanRequest) ([]InstallResult, error)
	// GetInstallations reads installations (or scans) by id. An unknown id is absent from the
	// map. Results are not filled in: read them with PatchStates.
	GetInstallations(ctx context.Context, t Target, ids []string) (map[string]Installation, error)
	// FindInstallations returns the installations started for runID on the given instances,
	// keyed by instance id; instances without one are absent.
	FindInstallations(ctx context.Context, t Target, runID string, instanceIDs []string) (map[string]Installation, error)
	// CancelInstallation cancels an installation that is not terminal yet; cancelling a terminal
	// or unknown one succeeds and does nothing.
	CancelInstallation(ctx context.Context, t Target, id string) error
	// PatchStates returns the state of each of patchIDs on the instance as the agent last
	// reported it (DescribeInstancePatches); a patch the agent never reported is absent.
	// With no patchIDs it returns every patch the agent reported.
	PatchStates(ctx context.Context, t Target, instanceID string, patchIDs []string) ([]PatchResult, error)
	// PatchSummaries returns, per instance, the counts of patches per state its agent reported
	// after its last patch operation (DescribeInstancePatchStates, 50 instances per call). An
	// instance the agent never reported on (or without an agent) is absent from the map.
	// Callers read PatchStates only for the instances whose summary does not settle it
	// (PatchSummary.AllInstalled).
	PatchSummaries(ctx context.Context, t Target, instanceIDs []string) (map[string]PatchSummary, error)

	// RestoreFromSnapshot starts replacing the instance's root volume from the root-volume
	// snapshot of a completed set, or returns the restore already started for (Tenant,
	// RestoreKey).
	RestoreFromSnapshot(ctx context.Context, t Target, req RestoreRequest) (Restore, error)
	// GetRestores reads restores by id; an unknown id is absent from the map.
	GetRestores(ctx context.Context, t Target, ids []string) (map[string]Restore, error)

	// Reboot reboots running instances. It is ErrInstanceNotRunning (for the first one that is
	// not) if any is not running, and reboots none then.
	Reboot(ctx context.Context, t Target, instanceIDs []string) error
	// CheckHealth reports, per instance, whether it is running, passes its status checks and
	// its agent is online. An unknown instance is absent from the map. The agents of the
	// instances named by WithAgentOnline options are taken as online without asking again.
	CheckHealth(ctx context.Context, t Target, instanceIDs []string, opts ...HealthOption) (map[string]Health, error)
}

// HealthOption tunes a CheckHealth call.
type HealthOption func(*HealthOptions)

// HealthOptions are the tuned CheckHealth settings; Fleet implementations read them with
// ApplyHealthOptions.
type HealthOptions struct {
	// AgentOnline holds the instances whose agent the caller knows to be online, say because
	// it has just reported a command's success and nothing restarted the instance since.
	AgentOnline map[string]bool
}

// WithAgentOnline names instances whose agent the caller knows to be online: CheckHealth does not
// ask for their agents (on AWS, DescribeInstanceInformation) and reports them AgentOnline.
func WithAgentOnline(instanceIDs ...string) HealthOption {
	return func(o *HealthOptions) {
		if o.AgentOnline == nil {
			o.AgentOnline = make(map[string]bool, len(instanceIDs))
		}
		for _, id := range instanceIDs {
			o.AgentOnline[id] = true
		}
	}
}

// ApplyHealthOptions collects opts.
func ApplyHealthOptions(opts []HealthOption) HealthOptions {
	var o HealthOptions
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// Target is where a call goes: one tenant's cloud account and region.
type Target struct {
	// Tenant is required.
	Tenant string
	// Account is the cloud account id (on AWS the 12-digit account id). Required.
	Account string
	// Region, e.g. "eu-central-1". Required.
	Region string
}

// Validate reports every problem with the target.
func (t Target) Validate() error {
	return errors.Join(ValidateTenant(t.Tenant), required("Account", t.Account), required("Region", t.Region))
}

// String is "tenant/account/region".
func (t Target) String() string { return t.Tenant + "/" + t.Account + "/" + t.Region }

// AgentState is the state of the patch agent (on AWS the SSM agent) of an instance.
type AgentState string

// Agent states. AgentNone means the instance has no registered agent: it cannot be patched or
// assessed, and compliance reports it UNKNOWN.
const (
	AgentOnline         AgentState = "online"
	AgentConnectionLost AgentState = "connection-lost"
	AgentInactive       AgentState = "inactive"
	AgentNone           AgentState = "none"
)

// SnapshotResult is the outcome of one request of CreateSnapshots: Snapshot, or Err (wrapping
// ErrInstanceNotRunning, ErrNotFound, ErrInvalidArgument, ErrAccessDenied, or a retryable error).
type SnapshotResult struct {
	Snapshot Snapshot
	Err      error
}

// InstallResult is the outcome of one request of Install or Scan: Installation (in progress),
// or Err.
type InstallResult struct {
	Installation Installation
	Err          error
}

// ScanRequest asks to assess the patches of an instance against a baseline without installing.
type ScanRequest struct {
	// Tenant is required.
	Tenant string
	// ScanID is required: with Tenant and InstanceID it names the scan (say, the assessment
	// run id), as RunID names an installation.
	ScanID string
	// InstanceID is required; the instance must be running with an online agent.
	InstanceID string
	// BaselineID is required.
	BaselineID string
	// PatchIDs are the baseline's patches to assess.
	PatchIDs []string
}

// SnapshotSetID returns the id of the snapshot set of (tenant, runID, instanceID). It is
// derived from the business key, so a retry finds the set a first attempt created: the adapter
// tags every volume snapshot of the set with it and looks for it before creating.
func SnapshotSetID(tenant, runID, instanceID string) string {
	h := sha256.Sum256([]byte(tenant + "\x00" + runID + "\x00" + instanceID))
	return "snapset-" + hex.EncodeToString(h[:10])
}

// InstallationID returns the id of the installation of one instance by one command.
func InstallationID(commandID, instanceID string) string { return commandID + "/" + instanceID }

// ErrAccessDenied means the cloud refused the call for lack of permission (a role that cannot be
// assumed, a policy that does not allow the action). Retrying does not help; the message names
// the action and the account.
var ErrAccessDenied = errors.New("access denied")

// ValidateIDs reports an empty or duplicate id in ids, naming field.
func ValidateIDs(field string, ids []string) error {
	seen := make(map[string]bool, len(ids))
	var errs []error
	for i, id := range ids {
		switch {
		case id == "":
			errs = append(errs, invalid(fmt.Sprintf("%s[%d]", field, i), "must not be empty"))
		case seen[id]:
			errs = append(errs, invalid(fmt.Sprintf("%s[%d]", field, i), fmt.Sprintf("duplicate %q", id)))
		}
		seen[id] = true
	}
	return errors.Join(errs...)
}

// Validate reports every problem with the request.
func (r ScanRequest) Validate() error {
	return errors.Join(ValidateTenant(r.Tenant), required("ScanID", r.ScanID), required("InstanceID", r.InstanceID),
		required("BaselineID", r.BaselineID), ValidateIDs("PatchIDs", r.PatchIDs))
}
