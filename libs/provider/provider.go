// Package provider defines the fleet provider interface (Fleet, fleet.go): what Patchwave needs
// from a cloud to discover a tenant's virtual machines by tag, snapshot them, install a patch set,
// reboot them, check their health, restore them from a snapshot and delete old snapshots.
//
// # Idempotency
//
// Patchwave's event handlers are redelivered and replayed, so every method that creates something
// is idempotent per business key, and calling it again returns what the first call created:
//
//   - CreateSnapshots per (Tenant, RunID, InstanceID): never a second snapshot set of an instance
//     in a run (SnapshotSetID names the set).
//   - Install does not look for an installation started before: the caller does, with
//     FindInstallations, when it may have started one (a redelivered job).
//   - RestoreFromSnapshot per (Tenant, RestoreKey): the caller chooses the key (say, the restore
//     request id), so a replayed restore request restores once and a new request restores again.
//   - DeleteSnapshot of a snapshot that does not exist (or no longer does) succeeds.
//
// # Asynchronous operations
//
// Snapshots, installations and restores take minutes on a real cloud. The create calls start the
// work and return at once, usually in a non-terminal state (SnapshotPending, InstallInProgress,
// RestoreInProgress); callers track them with the batched Get methods until the state is
// terminal (the stages do so with bus trackers, libs/stage).
//
// # States and AWS
//
// The state values are ours, but each maps onto the AWS API the AWS adapter calls:
//
//   - InstanceState is the EC2 instance state name (DescribeInstances), value for value.
//   - A Snapshot is the set of EBS snapshots that one CreateSnapshots call takes of all volumes of
//     an instance (crash-consistent); SnapshotState is the EBS snapshot state (DescribeSnapshots),
//     aggregated over the set: error if any is error, pending if any is pending, else completed.
//   - A Restore is a replace-root-volume task (CreateReplaceRootVolumeTask): pending, in-progress,
//     failing and failing-detached map to RestoreInProgress, succeeded to RestoreSucceeded, failed
//     and failed-detached to RestoreFailed. Only the root volume is restored, from the set's
//     root-volume snapshot, and the instance must be running, as on AWS.
//   - An Installation is one SSM command invocation of AWS-RunPatchBaseline (SendCommand, polled
//     with ListCommandInvocations): Pending, InProgress and Delayed map to InstallInProgress,
//     Success to InstallSucceeded, Failed to InstallFailed, TimedOut to InstallTimedOut,
//     Cancelled to InstallCancelled. Per-patch results come from DescribeInstancePatches, whose
//     states (INSTALLED, MISSING, FAILED, ...) are PatchState values in lower kebab case; the
//     counts per state (PatchSummary) from DescribeInstancePatchStates, 50 instances a call.
//   - RebootPolicy maps to the document's RebootOption: RebootIfRequired is RebootIfNeeded,
//     RebootNever is NoReboot, and RebootAlways is NoReboot followed by an explicit reboot.
package provider

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// InstanceState is the lifecycle state of an instance; the values are EC2's.
type InstanceState string

// Instance states.
const (
	InstancePending      InstanceState = "pending"
	InstanceRunning      InstanceState = "running"
	InstanceStopping     InstanceState = "stopping"
	InstanceStopped      InstanceState = "stopped"
	InstanceShuttingDown InstanceState = "shutting-down"
	InstanceTerminated   InstanceState = "terminated"
)

// Valid reports whether s is one of the known instance states.
func (s InstanceState) Valid() bool {
	switch s {
	case InstancePending, InstanceRunning, InstanceStopping, InstanceStopped,
		InstanceShuttingDown, InstanceTerminated:
		return true
	}
	return false
}

// SnapshotState is the state of a snapshot set.
type SnapshotState string

// Snapshot states.
const (
	SnapshotPending   SnapshotState = "pending"
	SnapshotCompleted SnapshotState = "completed"
	SnapshotError     SnapshotState = "error"
)

// Terminal reports whether the snapshot will not change state any more.
func (s SnapshotState) Terminal() bool { return s == SnapshotCompleted || s == SnapshotError }

// RestoreState is the state of a restore.
type RestoreState string

// Restore states.
const (
	RestoreInProgress RestoreState = "in-progress"
	RestoreSucceeded  RestoreState = "succeeded"
	RestoreFailed     RestoreState = "failed"
)

// Terminal reports whether the restore will not change state any more.
func (s RestoreState) Terminal() bool { return s == RestoreSucceeded || s == RestoreFailed }

// InstallState is the state of an installation.
type InstallState string

// Installation states.
const (
	InstallInProgress InstallState = "in-progress"
	InstallSucceeded  InstallState = "succeeded"
	InstallFailed     InstallState = "failed"
	InstallTimedOut   InstallState = "timed-out"
	InstallCancelled  InstallState = "cancelled"
)

// Terminal reports whether the installation will not change state any more.
func (s InstallState) Terminal() bool { return s != InstallInProgress && s != "" }

// PatchState is the state of one patch on one instance, in AWS compliance vocabulary
// (INSTALLED_PENDING_REBOOT is PatchInstalledPendingReboot).
type PatchState string

// Patch states.
const (
	PatchInstalled              PatchState = "installed"
	PatchInstalledOther         PatchState = "installed-other"
	PatchInstalledPendingReboot PatchState = "installed-pending-reboot"
	PatchInstalledRejected      PatchState = "installed-rejected"
	PatchMissing                PatchState = "missing"
	PatchFailed                 PatchState = "failed"
	PatchNotApplicable          PatchState = "not-applicable"
)

// RebootPolicy says whether an installation may reboot the instance.
type RebootPolicy string

// Reboot policies.
const (
	// RebootIfRequired reboots when an installed patch needs it (the default).
	RebootIfRequired RebootPolicy = "if-required"
	// RebootAlways reboots after every successful installation.
	RebootAlways RebootPolicy = "always"
	// RebootNever never reboots; patches that need one are left installed-pending-reboot.
	RebootNever RebootPolicy = "never"
)

// Valid reports whether p is a known policy or empty (which means RebootIfRequired).
func (p RebootPolicy) Valid() bool {
	switch p {
	case "", RebootIfRequired, RebootAlways, RebootNever:
		return true
	}
	return false
}

// OrDefault returns p, or RebootIfRequired when p is empty.
func (p RebootPolicy) OrDefault() RebootPolicy {
	if p == "" {
		return RebootIfRequired
	}
	return p
}

// DiscoverQuery selects a tenant's instances.
type DiscoverQuery struct {
	// Tenant is required.
	Tenant string
	// TagKey is optional: when set, only instances carrying this tag match. Default: any instance.
	TagKey string
	// TagValue is optional and needs TagKey: when set, the tag must have this value.
	// Default: any value.
	TagValue string
	// IncludeStopped is optional: when true, instances in any state but terminated match.
	// Default false: running instances only. Terminated instances never match.
	IncludeStopped bool
}

// Validate reports every problem with the query.
func (q DiscoverQuery) Validate() error {
	errs := []error{ValidateTenant(q.Tenant)}
	if q.TagValue != "" && q.TagKey == "" {
		errs = append(errs, invalid("TagValue", "needs TagKey"))
	}
	return errors.Join(errs...)
}

// Instance is a virtual machine of a tenant.
type Instance struct {
	ID     string
	Tenant string
	// Account and Region say where the instance lives (its Target).
	Account string
	Region  string
	Name    string
	// OSFamily names the operating system release the baselines are made for, e.g.
	// "amazon-linux-2023", "ubuntu-22.04", "windows-server-2022".
	OSFamily string
	// Platform is "linux" or "windows".
	Platform string
	State    InstanceState
	// Agent is the state of the instance's patch agent; AgentNone when it has none.
	Agent AgentState
	Tags  map[string]string
	// VolumeIDs lists the attached volumes, root volume first.
	VolumeIDs []string
}

// Target returns where the instance lives.
func (i Instance) Target() Target {
	return Target{Tenant: i.Tenant, Account: i.Account, Region: i.Region}
}

// SnapshotRequest asks for a pre-patch snapshot of all volumes of an instance.
type SnapshotRequest struct {
	// Tenant is required.
	Tenant string
	// RunID is required; with Tenant and InstanceID it is the idempotency key.
	RunID string
	// InstanceID is required.
	InstanceID string
	// Tags is optional: extra tags put on the snapshots, besides tenant, run and instance.
	Tags map[string]string
}

// Validate reports every problem with the request.
func (r SnapshotRequest) Validate() error {
	return errors.Join(ValidateTenant(r.Tenant), required("RunID", r.RunID), required("InstanceID", r.InstanceID))
}

// Snapshot is the set of volume snapshots taken of one instance for one run.
type Snapshot struct {
	// ID identifies the set; VolumeSnapshotIDs are the provider's per-volume snapshots, in the
	// order of the instance's VolumeIDs (root volume first).
	ID                string
	Tenant            string
	RunID             string
	InstanceID        string
	VolumeSnapshotIDs []string
	State             SnapshotState
	// Error says why the snapshot is in SnapshotError.
	Error string
	// Tags are the request's extra tags.
	Tags map[string]string
	// RootSnapshotID is the snapshot of the root volume, the one a restore uses.
	RootSnapshotID string
	// Progress is the percentage done, 0..100 (the least advanced volume's).
	Progress  int
	CreatedAt time.Time
}

// RestoreRequest asks to restore an instance from one of its snapshots.
type RestoreRequest struct {
	// Tenant is required.
	Tenant string
	// InstanceID is required and must be the instance the snapshot was taken of.
	InstanceID string
	// SnapshotID is required and must be completed.
	SnapshotID string
	// RestoreKey is required: the caller's idempotency key (say, the restore request id).
	RestoreKey string
}

// Validate reports every problem with the request.
func (r RestoreRequest) Validate() error {
	return errors.Join(ValidateTenant(r.Tenant), required("InstanceID", r.InstanceID),
		required("SnapshotID", r.SnapshotID), required("RestoreKey", r.RestoreKey))
}

// Restore is the restore of an instance's root volume from a snapshot.
type Restore struct {
	ID         string
	Tenant     string
	InstanceID string
	SnapshotID string
	State      RestoreState
	// Error says why the restore failed.
	Error     string
	StartedAt time.Time
}

// InstallRequest asks to install a patch set on an instance.
type InstallRequest struct {
	// Tenant is required.
	Tenant string
	// RunID is required; with Tenant and InstanceID it is the idempotency key.
	RunID string
	// InstanceID is required; the instance must be running.
	InstanceID string
	// BaselineID is required: the pinned baseline version the patches come from.
	BaselineID string
	// PatchIDs is optional: the patches to install, without empty or duplicate ids.
	// Default: none (the installation only scans).
	PatchIDs []string
	// RebootPolicy is optional. Default: RebootIfRequired.
	RebootPolicy RebootPolicy
	// Timeout is optional: how long the installation may run before the cloud stops it.
	// Default: the provider's (the caller also enforces its own per-instance timeout).
	Timeout time.Duration
}

// Validate reports every problem with the request.
func (r InstallRequest) Validate() error {
	errs := []error{ValidateTenant(r.Tenant), required("RunID", r.RunID), required("InstanceID", r.InstanceID),
		required("BaselineID", r.BaselineID)}
	seen := make(map[string]bool, len(r.PatchIDs))
	for i, id := range r.PatchIDs {
		switch {
		case id == "":
			errs = append(errs, invalid(fmt.Sprintf("PatchIDs[%d]", i), "must not be empty"))
		case seen[id]:
			errs = append(errs, invalid(fmt.Sprintf("PatchIDs[%d]", i), fmt.Sprintf("duplicate %q", id)))
		}
		seen[id] = true
	}
	if !r.RebootPolicy.Valid() {
		errs = append(errs, invalid("RebootPolicy", fmt.Sprintf("must be one of if-required, always, never, got %q", r.RebootPolicy)))
	}
	return errors.Join(errs...)
}

// Installation is the installation of a patch set on one instance for one run.
type Installation struct {
	// ID is InstallationID(CommandID, InstanceID) on AWS.
	ID string
	// CommandID is the cloud command that runs the installation (one per batch of instances).
	CommandID  string
	Tenant     string
	RunID      string
	InstanceID string
	State      InstallState
	// Results has one entry per requested patch once the installation is terminal.
	Results []PatchResult
	// RebootPending is true when installed patches wait for a reboot (RebootNever).
	RebootPending bool
	// Error says why the installation did not succeed.
	Error      string
	StartedAt  time.Time
	FinishedAt time.Time
}

// PatchResult is the outcome of one patch of an installation.
type PatchResult struct {
	PatchID string
	State   PatchState
	Error   string
}

// PatchOperation is the kind of an agent's patch operation.
type PatchOperation string

// Patch operations.
const (
	PatchOperationInstall PatchOperation = "install"
	PatchOperationScan    PatchOperation = "scan"
)

// PatchSummary is what an instance's agent reported after its last patch operation: how many
// patches are in each state (on AWS, DescribeInstancePatchStates). It is one read for many
// instances; PatchStates reads the patches themselves, one instance per call.
type PatchSummary struct {
	InstanceID string
	// Operation is the last patch operation; StartedAt and EndedAt when it ran.
	Operation PatchOperation
	StartedAt time.Time
	EndedAt   time.Time
	// The counts of patches per state, over every patch the agent reported.
	Installed              int
	InstalledOther         int
	InstalledPendingReboot int
	InstalledRejected      int
	Missing                int
	Failed                 int
	NotApplicable          int
}

// AllInstalled reports whether the summary proves that each of the n patches of an operation
// started at since is installed: the last operation (that one, or any started after it, an
// install or a scan: like PatchStates, the summary is the instance's current state) has
// ended, reported at least n installed patches, and none in any other state (missing, failed,
// pending a reboot, installed other, rejected, not applicable). Anything else needs the
// per-patch states.
func (s PatchSummary) AllInstalled(since time.Time, n int) bool {
	return !s.StartedAt.Before(since) && !s.EndedAt.IsZero() && s.Installed >= n &&
		s.InstalledOther == 0 && s.InstalledPendingReboot == 0 && s.InstalledRejected == 0 &&
		s.Missing == 0 && s.Failed == 0 && s.NotApplicable == 0
}

// Health is the result of a health check.
type Health struct {
	Healthy bool
	// Detail explains the verdict in a few words.
	Detail string
	// State is the instance state; Agent the agent's. Fleet fills them in.
	State InstanceState
	Agent AgentState
	// Initializing is true while status checks have not passed yet after a start or reboot:
	// not healthy, but not failed either.
	Initializing bool
}

var tenantPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidateTenant checks a tenant id against the domain rule; the error wraps ErrInvalidArgument.
func ValidateTenant(tenant string) error {
	if !tenantPattern.MatchString(tenant) {
		return invalid("Tenant", fmt.Sprintf("must match %s, got %q", tenantPattern, tenant))
	}
	return nil
}

func required(field, value string) error {
	if value == "" {
		return invalid(field, "is required")
	}
	return nil
}

func invalid(field, rule string) error {
	return fmt.Errorf("%w: %s %s", ErrInvalidArgument, field, rule)
}
