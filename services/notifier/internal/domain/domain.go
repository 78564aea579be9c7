// Package domain holds the notifier's vocabulary: a notification about one outcome event, the
// channels it is delivered through, and the delivery log entry each delivery leaves.
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

// Channels.
const (
	// ChannelLog is the delivery log itself; it is always on.
	ChannelLog = "log"
	// ChannelWebhook POSTs the notification as a CloudEvent to a configured URL.
	ChannelWebhook = "webhook"
)

// Delivery statuses.
const (
	StatusSent   = "sent"
	StatusFailed = "failed"
)

// Notification is what Patchwave tells a tenant about one outcome event.
type Notification struct {
	// ID is derived from the event id, so a redelivered event makes the same notification.
	ID string
	// Tenant the notification belongs to.
	Tenant string
	// AboutEventID is the CloudEvents id of the outcome event.
	AboutEventID string
	// Summary is one line for a human.
	Summary string
}

// Delivery is one entry of the delivery log: one notification through one channel.
type Delivery struct {
	// ID is the notification id.
	ID string `json:"id"`
	// Channel the notification went through, e.g. "log" or "webhook".
	Channel string `json:"channel"`
	// AboutEventID is the CloudEvents id of the event the notification is about.
	AboutEventID string `json:"about_event_id"`
	// Summary of the notification.
	Summary string `json:"summary,omitempty"`
	// Status is "sent" or "failed".
	Status string `json:"status"`
	// Error says why a failed delivery failed.
	Error string `json:"error,omitempty"`
	// Time of the delivery (or of the final failed attempt).
	Time time.Time `json:"time"`
}

// Key returns the business key of the delivery of notification id through channel: the key of
// NotificationSent and NotificationFailed and of the idempotency marks.
func Key(id, channel string) string { return id + "/" + channel }

// NotificationID returns "n-" and the first 16 hex digits of the SHA-256 of the event id.
func NotificationID(eventID string) string {
	sum := sha256.Sum256([]byte(eventID))
	return "n-" + hex.EncodeToString(sum[:8])
}

// Notify builds the notification about an outcome event. It fails for an event the notifier
// does not notify about or one without a tenant.
func Notify(ev *events.Event) (Notification, error) {
	if ev.Tenant == "" {
		return Notification{}, fmt.Errorf("event %s: tenant: required", ev.ID)
	}
	var summary string
	switch m := ev.Data.(type) {
	case *eventsv1.InstallSucceeded:
		summary = fmt.Sprintf("%s: %s install succeeded%s", prefix(ev.Tenant, m.GetWave(), m.GetRunId()),
			m.GetInstanceId(), installedDetail(m))
	case *eventsv1.InstallFailed:
		summary = fmt.Sprintf("%s: %s install failed: %s", prefix(ev.Tenant, m.GetWave(), m.GetRunId()),
			m.GetInstanceId(), oneLine(m.GetReason()))
	case *eventsv1.SnapshotFailed:
		summary = fmt.Sprintf("%s: %s snapshot failed: %s", prefix(ev.Tenant, m.GetWave(), m.GetRunId()),
			m.GetInstanceId(), oneLine(m.GetReason()))
	case *eventsv1.RunCompleted:
		summary = fmt.Sprintf("%s %s: %d succeeded, %d failed", prefix(ev.Tenant, m.GetWave(), m.GetRunId()),
			runOutcome(m.GetState()), m.GetSucceeded(), m.GetFailed())
		if rest := m.GetTotal() - m.GetSucceeded() - m.GetFailed(); rest > 0 {
			summary += fmt.Sprintf(", %d not done", rest)
		}
	default:
		return Notification{}, fmt.Errorf("event %s: type %s: not an outcome the notifier notifies about", ev.ID, ev.Type)
	}
	return Notification{
		ID:           NotificationID(ev.ID),
		Tenant:       ev.Tenant,
		AboutEventID: ev.ID,
		Summary:      summary,
	}, nil
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
	}
	return "ended " + strings.ToLower(strings.TrimPrefix(s.String(), "RUN_STATE_"))
}

// oneLine keeps a reason on one line of reasonable length.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if s == "" {
		return "no reason given"
	}
	if r := []rune(s); len(r) > 500 {
		s = string(r[:500]) + "..."
	}
	return s
}
