// Package domain holds the installer's rules: no snapshot, no install; how provider results map
// to compliance states and job states; why a job failed; and how the post-install health
// check waits through a reboot.
package domain

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/patchwave/patchwave/libs/provider"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// RefusalPrefix starts the reason of an InstallFailed published because the job has no
// completed pre-patch snapshot: the installer never installs without one.
const RefusalPrefix = "no completed pre-patch snapshot for this run: "

// CheckSnapshot applies the no-snapshot-no-install rule. The run's snapshot set of the
// instance is the set with the deterministic id provider.SnapshotSetID(tenant, run,
// instance); snap is what the provider returned for that id (found false when it has none).
// The set must exist, belong to this tenant, run and instance, be completed, and be the set the
// event names. It returns "" when the job may be installed, else the refusal reason.
func CheckSnapshot(tenant, runID, instanceID, namedID string, snap provider.Snapshot, found bool) string {
	want := provider.SnapshotSetID(tenant, runID, instanceID)
	switch {
	case namedID == "":
		return RefusalPrefix + "the event names no snapshot"
	case namedID != want:
		return RefusalPrefix + fmt.Sprintf("the event names snapshot %s but the run's snapshot set of this instance is %s", namedID, want)
	case !found:
		return RefusalPrefix + fmt.Sprintf("the provider has no snapshot set %s", want)
	case snap.InstanceID != "" && snap.InstanceID != instanceID, snap.RunID != "" && snap.RunID != runID:
		return RefusalPrefix + fmt.Sprintf("snapshot set %s belongs to run %s and instance %s", want, snap.RunID, snap.InstanceID)
	case snap.State != provider.SnapshotCompleted:
		return RefusalPrefix + fmt.Sprintf("snapshot set %s is %s", want, snap.State)
	}
	return ""
}

// PatchState maps a provider patch state to the compliance state in events.
func PatchState(s provider.PatchState) typesv1.PatchState {
	switch s {
	case provider.PatchInstalled:
		return typesv1.PatchState_PATCH_STATE_INSTALLED
	case provider.PatchInstalledOther:
		return typesv1.PatchState_PATCH_STATE_INSTALLED_OTHER
	case provider.PatchInstalledPendingReboot:
		return typesv1.PatchState_PATCH_STATE_INSTALLED_PENDING_REBOOT
	case provider.PatchInstalledRejected:
		return typesv1.PatchState_PATCH_STATE_INSTALLED_REJECTED
	case provider.PatchMissing:
		return typesv1.PatchState_PATCH_STATE_MISSING
	case provider.PatchFailed:
		return typesv1.PatchState_PATCH_STATE_FAILED
	case provider.PatchNotApplicable:
		return typesv1.PatchState_PATCH_STATE_NOT_APPLICABLE
	}
	return typesv1.PatchState_PATCH_STATE_UNSPECIFIED
}

// Results maps the per-patch states the agent reported for the requested patches, in the order
// of patchIDs; a requested patch the agent did not report is MISSING (it was not installed). It
// reports whether any patch waits for a reboot and which failed.
func Results(patchIDs []string, states []provider.PatchResult) (out []*typesv1.PatchResult, rebootPending bool, failed []string) {
	byID := make(map[string]provider.PatchResult, len(states))
	for _, s := range states {
		byID[s.PatchID] = s
	}
	ids := patchIDs
	if len(ids) == 0 {
		for _, s := range states {
			ids = append(ids, s.PatchID)
		}
	}
	out = make([]*typesv1.PatchResult, 0, len(ids))
	for _, id := range ids {
		r, ok := byID[id]
		st := typesv1.PatchState_PATCH_STATE_MISSING
		if ok {
			st = PatchState(r.State)
		}
		switch st {
		case typesv1.PatchState_PATCH_STATE_INSTALLED_PENDING_REBOOT:
			rebootPending = true
		case typesv1.PatchState_PATCH_STATE_FAILED:
			failed = append(failed, id)
		}
		out = append(out, &typesv1.PatchResult{PatchId: id, State: st, Error: r.Error})
	}
	return out, rebootPending, failed
}

// InstalledResults are the per-patch results of an operation whose patch summary proves every
// listed patch installed (provider.PatchSummary.AllInstalled): each of patchIDs INSTALLED, in
// their order. They are what the per-patch read (Results) gives for such an instance, without
// reading the patches: the tracker reads them only for the instances whose summary shows a
// patch failed, missing, pending a reboot, installed other, rejected or not applicable, or
// fewer installed patches than listed, or an operation older than this one.
func InstalledResults(patchIDs []string) []*typesv1.PatchResult {
	out := make([]*typesv1.PatchResult, len(patchIDs))
	for i, id := range patchIDs {
		out[i] = &typesv1.PatchResult{PatchId: id, State: typesv1.PatchState_PATCH_STATE_INSTALLED}
	}
	return out
}

// SettledBySummary reports whether the installation's (or scan's) per-patch results follow
// from its instance's patch summary (found: the provider has one) without reading every
// patch: the summary is of this operation or a later one (started at or after the
// installation was requested), and every one of the patchIDs is installed
// (provider.PatchSummary.AllInstalled). With no patchIDs (every patch the agent reported is
// the result) the summary never settles it.
func SettledBySummary(in provider.Installation, patchIDs []string, s provider.PatchSummary, found bool) bool {
	return found && len(patchIDs) > 0 && !in.StartedAt.IsZero() && s.AllInstalled(in.StartedAt, len(patchIDs))
}

// FailureReason says why a terminal installation did not succeed, naming the failed patches.
func FailureReason(in provider.Installation, failed []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "installation %s %s", in.ID, in.State)
	if len(failed) > 0 {
		fmt.Fprintf(&b, ": %d patch(es) failed: %s", len(failed), strings.Join(failed, ", "))
	}
	if in.Error != "" {
		fmt.Fprintf(&b, " (%s)", in.Error)
	}
	return b.String()
}

// JobStateOf is the job state of a failed installation: TIMED_OUT when the cloud timed it out,
// FAILED otherwise.
func JobStateOf(s provider.InstallState) typesv1.JobState {
	if s == provider.InstallTimedOut {
		return typesv1.JobState_JOB_STATE_TIMED_OUT
	}
	return typesv1.JobState_JOB_STATE_FAILED
}

// Verdict is what the post-install health check concludes.
type Verdict int

// Verdicts.
const (
	// Wait: the instance is coming back from a reboot (status checks initializing, agent not
	// online yet) within the grace period: look again later.
	Wait Verdict = iota + 1
	// Healthy: running, status checks passed, agent online.
	Healthy
	// Unhealthy: not healthy and not coming back within the grace period.
	Unhealthy
)

// Judge decides about one health check at now: a reboot must never mark a good install failed,
// so anything short of healthy is waited through until graceEnd.
func Judge(h provider.Health, found bool, now, graceEnd time.Time) Verdict {
	if found && h.Healthy && !h.Initializing {
		return Healthy
	}
	if now.Before(graceEnd) {
		return Wait
	}
	return Unhealthy
}

// Rebooting reports whether a health check shows an instance in the middle of a reboot.
func Rebooting(h provider.Health) bool {
	return h.Initializing || h.State == provider.InstancePending || h.State == provider.InstanceStopping ||
		(h.State == provider.InstanceRunning && h.Agent == provider.AgentConnectionLost)
}

// HealthDetail names what a health check saw.
func HealthDetail(h provider.Health, found bool) string {
	if !found {
		return "the provider no longer knows the instance"
	}
	parts := []string{}
	if h.Detail != "" {
		parts = append(parts, h.Detail)
	}
	if h.State != "" {
		parts = append(parts, "state "+string(h.State))
	}
	if h.Agent != "" {
		parts = append(parts, "agent "+string(h.Agent))
	}
	if h.Initializing {
		parts = append(parts, "status checks initializing")
	}
	return strings.Join(slices.Compact(parts), ", ")
}
