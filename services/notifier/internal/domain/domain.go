// Package domain holds the notifier's vocabulary: the notification an event makes, the
// subscriptions that take it (filter, mode, quiet hours), the run digest, the delivery and its
// retry schedule, and the rendering of a message from templates. It imports no infrastructure.
package domain

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Notification types: what a subscription's filter names in event_types.
const (
	TypeInstallSucceeded = "install.succeeded"
	TypeInstallFailed    = "install.failed"
	TypeSnapshotFailed   = "snapshot.failed"
	TypeRunStarted       = "run.started"
	TypeRunCompleted     = "run.completed"
	TypeRunHalted        = "run.halted"
	TypeRunHeld          = "run.held"
	TypeRunWaiting       = "run.waiting_approval"
	TypeRunMissed        = "run.missed"
	TypeRunSkipped       = "run.skipped"
	TypeRunCancelled     = "run.cancelled"
	TypeRestoreRequested = "restore.requested"
	TypeRestoreCompleted = "restore.completed"
	TypeRestoreFailed    = "restore.failed"
	TypeBaselineWaiting  = "baseline.waiting_approval"
	TypeWaveReminder     = "wave.reminder"
	// TypeRunDigest is the one summary of a run a digest subscription gets.
	TypeRunDigest = "run.digest"
)

// Types lists every notification type a filter may name.
var Types = []string{
	TypeInstallSucceeded, TypeInstallFailed, TypeSnapshotFailed, TypeRunStarted, TypeRunCompleted,
	TypeRunHalted, TypeRunHeld, TypeRunWaiting, TypeRunMissed, TypeRunSkipped, TypeRunCancelled,
	TypeRestoreRequested, TypeRestoreCompleted, TypeRestoreFailed, TypeBaselineWaiting, TypeWaveReminder,
	TypeRunDigest,
}

// Severity orders notifications.
type Severity int

// Severities.
const (
	SeverityInfo Severity = iota + 1
	SeverityWarning
	SeverityCritical
)

// String is "info", "warning" or "critical".
func (s Severity) String() string {
	switch s {
	case SeverityInfo:
		return "info"
	case SeverityWarning:
		return "warning"
	case SeverityCritical:
		return "critical"
	}
	return "unknown"
}

// Notification is what Patchwave tells a tenant about one event. It holds no secret, so a
// template given it cannot print one.
type Notification struct {
	// ID is derived from the event id (or, for a reminder, from the window), so a redelivered
	// or replayed event makes the same notification.
	ID string `json:"id"`
	// Type is one of Types.
	Type     string   `json:"type"`
	Severity Severity `json:"severity"`
	// Failure marks failed jobs, snapshots and restores, halted runs and runs with errors.
	Failure bool   `json:"failure,omitempty"`
	Tenant  string `json:"tenant"`
	// Wave is 0 when the notification is about no wave.
	Wave       int32  `json:"wave,omitempty"`
	RunID      string `json:"run_id,omitempty"`
	InstanceID string `json:"instance_id,omitempty"`
	RestoreID  string `json:"restore_id,omitempty"`
	BaselineID string `json:"baseline_id,omitempty"`
	// Reason of a failure, on one line.
	Reason string `json:"reason,omitempty"`
	// AboutEventID is the CloudEvents id of the event.
	AboutEventID string `json:"about_event_id"`
	// Summary is one line for a human.
	Summary string `json:"summary"`
	// Time the event happened.
	Time time.Time `json:"time"`
	// Digest is set for TypeRunDigest and run ends.
	Digest *Digest `json:"digest,omitempty"`
	// At is the wave window's opening, for TypeWaveReminder.
	At time.Time `json:"at,omitzero"`
}

// Digest is the summary of a run.
type Digest struct {
	State     string `json:"state"`
	Total     int32  `json:"total"`
	Succeeded int32  `json:"succeeded"`
	Failed    int32  `json:"failed"`
	TimedOut  int32  `json:"timed_out,omitempty"`
	NotDone   int32  `json:"not_done,omitempty"`
	// FailedInstall and FailedSnapshot count the failed instances by stage (digests only).
	FailedInstall  int `json:"failed_install,omitempty"`
	FailedSnapshot int `json:"failed_snapshot,omitempty"`
	// Failures lists failed instances with their errors, at most MaxDigestFailures of them,
	// ordered by instance id; MoreFailures counts the rest.
	Failures     []Failure `json:"failures,omitempty"`
	MoreFailures int       `json:"more_failures,omitempty"`
}

// Failure is one failed instance of a run.
type Failure struct {
	InstanceID string `json:"instance_id"`
	Stage      string `json:"stage"`
	Reason     string `json:"reason"`
}

// MaxDigestFailures bounds the failures a digest lists, so a message does not grow with the
// fleet: the rest are counted and reachable through the run's link.
const MaxDigestFailures = 50

// NotificationID returns "n-" and the first 16 hex digits of the SHA-256 of the event id.
func NotificationID(eventID string) string {
	sum := sha256.Sum256([]byte(eventID))
	return "n-" + hex.EncodeToString(sum[:8])
}

// IsRunEnd tells whether the notification ends a run (the digest is sent for it).
func (n Notification) IsRunEnd() bool { return n.Digest != nil && n.Type != TypeRunDigest }

// Notify builds the notification about an event. ok is false for an event the notifier does
// not notify about; an error means the event is malformed.
func Notify(ev *events.Event) (n Notification, ok bool, err error) {
	if ev.Tenant == "" {
		return Notification{}, false, fmt.Errorf("event %s: tenant: required", ev.ID)
	}
	n = Notification{ID: NotificationID(ev.ID), Tenant: ev.Tenant, AboutEventID: ev.ID, Time: ev.Time, Severity: SeverityInfo}
	switch m := ev.Data.(type) {
	case *eventsv1.InstallSucceeded:
		n.Type, n.Wave, n.RunID, n.InstanceID = TypeInstallSucceeded, m.GetWave(), m.GetRunId(), m.GetInstanceId()
		n.Summary = fmt.Sprintf("%s: %s install succeeded%s", prefix(ev.Tenant, n.Wave, n.RunID), n.InstanceID, installedDetail(m))
	case *eventsv1.InstallFailed:
		n.Type, n.Wave, n.RunID, n.InstanceID = TypeInstallFailed, m.GetWave(), m.GetRunId(), m.GetInstanceId()
		n.Severity, n.Failure, n.Reason = SeverityCritical, true, OneLine(m.GetReason())
		n.Summary = fmt.Sprintf("%s: %s install failed: %s", prefix(ev.Tenant, n.Wave, n.RunID), n.InstanceID, n.Reason)
	case *eventsv1.SnapshotFailed:
		n.Type, n.Wave, n.RunID, n.InstanceID = TypeSnapshotFailed, m.GetWave(), m.GetRunId(), m.GetInstanceId()
		n.Severity, n.Failure, n.Reason = SeverityCritical, true, OneLine(m.GetReason())
		n.Summary = fmt.Sprintf("%s: %s snapshot failed: %s", prefix(ev.Tenant, n.Wave, n.RunID), n.InstanceID, n.Reason)
	case *eventsv1.RunStarted:
		n.Type, n.Wave, n.RunID, n.BaselineID = TypeRunStarted, m.GetWave(), m.GetRunId(), m.GetBaselineId()
		count := len(m.GetInstanceIds())
		if g := m.GetGroups(); len(g) > 0 {
			count = 0
			for _, grp := range g {
				count += len(grp.GetInstanceIds())
			}
		}
		n.Summary = fmt.Sprintf("%s started with baseline %s", prefix(ev.Tenant, n.Wave, n.RunID), n.BaselineID)
		if count > 0 {
			// Runs whose membership comes in chunks (the run engine) list no instances here.
			n.Summary += fmt.Sprintf(" on %d instances", count)
		}
	case *eventsv1.RunCompleted:
		n.Wave, n.RunID = m.GetWave(), m.GetRunId()
		n.Type, n.Severity, n.Failure = runType(m.GetState(), m.GetFailed())
		if n.Type != TypeRunCompleted {
			// The run engine may also publish this fate as an event of its own: one id for both.
			n.ID = RunFateID(ev.Tenant, n.RunID, n.Type)
		}
		n.Digest = &Digest{
			State: runOutcome(m.GetState()), Total: m.GetTotal(), Succeeded: m.GetSucceeded(), Failed: m.GetFailed(),
			TimedOut: m.GetTimedOut(), NotDone: max(m.GetTotal()-m.GetSucceeded()-m.GetFailed(), 0),
		}
		n.Summary = fmt.Sprintf("%s %s: %d succeeded, %d failed", prefix(ev.Tenant, n.Wave, n.RunID),
			n.Digest.State, m.GetSucceeded(), m.GetFailed())
		if n.Digest.NotDone > 0 {
			n.Summary += fmt.Sprintf(", %d not done", n.Digest.NotDone)
		}
	case *eventsv1.RestoreRequested:
		n.Type, n.RunID, n.InstanceID, n.RestoreID = TypeRestoreRequested, m.GetRunId(), m.GetInstanceId(), m.GetRestoreId()
		n.Severity = SeverityWarning
		n.Reason = OneLine(m.GetReason())
		n.Summary = fmt.Sprintf("%s: restore %s of %s from run %s requested by %s: %s", ev.Tenant, n.RestoreID, n.InstanceID, n.RunID, m.GetActor(), n.Reason)
	case *eventsv1.RestoreCompleted:
		n.Type, n.RunID, n.InstanceID, n.RestoreID = TypeRestoreCompleted, m.GetRunId(), m.GetInstanceId(), m.GetRestoreId()
		n.Summary = fmt.Sprintf("%s: restore %s of %s from run %s completed", ev.Tenant, n.RestoreID, n.InstanceID, n.RunID)
	case *eventsv1.RestoreFailed:
		n.Type, n.RunID, n.InstanceID, n.RestoreID = TypeRestoreFailed, m.GetRunId(), m.GetInstanceId(), m.GetRestoreId()
		n.Severity, n.Failure, n.Reason = SeverityCritical, true, OneLine(m.GetReason())
		n.Summary = fmt.Sprintf("%s: restore %s of %s from run %s failed: %s", ev.Tenant, n.RestoreID, n.InstanceID, n.RunID, n.Reason)
	default:
		if rn, ok := notifyRunEvent(ev); ok {
			return rn, true, nil
		}
		return Notification{}, false, nil
	}
	return n, true, nil
}

// BaselineWaiting builds the notification that a published baseline waits for the tenant's
// approval (the catalog's baseline.published is global: one notification per tenant).
func BaselineWaiting(ev *events.Event, tenant string) (Notification, bool) {
	m, ok := ev.Data.(*eventsv1.BaselinePublished)
	if !ok {
		return Notification{}, false
	}
	kind := "baseline"
	if m.GetEmergency() {
		kind = "emergency baseline (" + m.GetEmergencyCve() + ")"
	}
	return Notification{
		ID: NotificationID(ev.ID + "/" + tenant), Type: TypeBaselineWaiting, Severity: SeverityWarning, Tenant: tenant,
		BaselineID: m.GetBaselineId(), AboutEventID: ev.ID, Time: ev.Time,
		Summary: fmt.Sprintf("%s: %s %s (%s version %d, %d patches) is published and waits for your approval unless your auto-approve policy approves it",
			tenant, kind, m.GetBaselineId(), m.GetOsFamily(), m.GetVersion(), len(m.GetPatches())),
	}, true
}

// Reminder builds the reminder that a wave's window opens at at.
func Reminder(tenant string, wave int32, at time.Time, now time.Time) Notification {
	id := fmt.Sprintf("reminder/%s/%d/%d", tenant, wave, at.Unix())
	return Notification{
		ID: NotificationID(id), Type: TypeWaveReminder, Severity: SeverityInfo, Tenant: tenant, Wave: wave,
		AboutEventID: id, Time: now, At: at,
		Summary: fmt.Sprintf("%s wave %d: the maintenance window opens at %s (in %s)", tenant, wave,
			at.UTC().Format(time.RFC3339), at.Sub(now).Round(time.Minute)),
	}
}

func runType(s typesv1.RunState, failed int32) (string, Severity, bool) {
	switch s {
	case typesv1.RunState_RUN_STATE_HALTED:
		return TypeRunHalted, SeverityCritical, true
	case typesv1.RunState_RUN_STATE_HELD:
		return TypeRunHeld, SeverityWarning, false
	case typesv1.RunState_RUN_STATE_WAITING_APPROVAL:
		return TypeRunWaiting, SeverityWarning, false
	case typesv1.RunState_RUN_STATE_SKIPPED_FROZEN:
		return TypeRunSkipped, SeverityWarning, false
	case typesv1.RunState_RUN_STATE_CANCELLED:
		return TypeRunCancelled, SeverityWarning, false
	case typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS:
		return TypeRunCompleted, SeverityWarning, true
	}
	if failed > 0 {
		return TypeRunCompleted, SeverityWarning, true
	}
	return TypeRunCompleted, SeverityInfo, false
}

// prefix is "acme wave 1 run run-x".
func prefix(tenant string, wave int32, run string) string {
	if wave > 0 {
		return fmt.Sprintf("%s wave %d run %s", tenant, wave, run)
	}
	return fmt.Sprintf("%s run %s", tenant, run)
}

func installedDetail(m *eventsv1.InstallSucceeded) string {
	var b strings.Builder
	switch n := len(m.GetResults()); n {
	case 0:
	case 1:
		b.WriteString(" (1 patch)")
	default:
		fmt.Fprintf(&b, " (%d patches)", n)
	}
	if m.GetRebootPending() {
		b.WriteString(", reboot pending")
	}
	return b.String()
}

func runOutcome(s typesv1.RunState) string {
	switch s {
	case typesv1.RunState_RUN_STATE_COMPLETED:
		return "completed"
	case typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS:
		return "completed with errors"
	case typesv1.RunState_RUN_STATE_HALTED:
		return "halted (error budget exceeded)"
	case typesv1.RunState_RUN_STATE_CANCELLED:
		return "cancelled"
	case typesv1.RunState_RUN_STATE_SKIPPED_FROZEN:
		return "skipped (change freeze)"
	case typesv1.RunState_RUN_STATE_HELD:
		return "held (wave gate)"
	case typesv1.RunState_RUN_STATE_WAITING_APPROVAL:
		return "waiting for approval"
	}
	return "ended " + strings.ToLower(strings.TrimPrefix(s.String(), "RUN_STATE_"))
}

// OneLine keeps a reason on one line of reasonable length.
func OneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "no reason given"
	}
	if r := []rune(s); len(r) > 500 {
		s = string(r[:500]) + "..."
	}
	return s
}
