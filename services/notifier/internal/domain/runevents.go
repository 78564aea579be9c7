package domain

import (
	"fmt"
	"strings"

	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/patchwave/patchwave/libs/events"
)

// RunEventSubjects are the run engine's events of a run's fate that are notified by subject
// name: the run-engine branches add them (RunHalted, RunHeld, RunWaitingApproval, RunMissed,
// RunSkipped, RunCancelled) and main does not have their Go types yet, so they are read by
// field name through protobuf reflection (tenant, run_id, wave, reason or cause, and the
// counts of a halt), which needs no import of the generated types.
var RunEventSubjects = []string{
	"patch.*.run.halted", "patch.*.run.held", "patch.*.run.waiting_approval",
	"patch.*.run.missed", "patch.*.run.skipped", "patch.*.run.cancelled",
}

// runEventTypes maps the CloudEvents type of a run-engine event to its notification type.
var runEventTypes = map[string]struct {
	typ      string
	severity Severity
	failure  bool
	what     string
}{
	"patchwave.events.v1.RunHalted":          {TypeRunHalted, SeverityCritical, true, "halted (error budget exceeded)"},
	"patchwave.events.v1.RunHeld":            {TypeRunHeld, SeverityWarning, false, "held by the wave gate"},
	"patchwave.events.v1.RunWaitingApproval": {TypeRunWaiting, SeverityWarning, false, "waits for the approval of its baseline"},
	"patchwave.events.v1.RunMissed":          {TypeRunMissed, SeverityWarning, false, "missed its window"},
	"patchwave.events.v1.RunSkipped":         {TypeRunSkipped, SeverityWarning, false, "skipped"},
	"patchwave.events.v1.RunCancelled":       {TypeRunCancelled, SeverityWarning, false, "cancelled"},
}

// RunFateID is the notification id of a run's fate (halted, held, ...): the same whether it
// comes from the run engine's own event or from RunCompleted's state, so a subscription is told
// once.
func RunFateID(tenant, run, typ string) string { return NotificationID(tenant + "/" + run + "/" + typ) }

// notifyRunEvent builds the notification of a run-engine event read by reflection.
func notifyRunEvent(ev *events.Event) (Notification, bool) {
	k, ok := runEventTypes[ev.Type]
	if !ok {
		return Notification{}, false
	}
	if ev.Data == nil {
		return Notification{}, false
	}
	r := ev.Data.ProtoReflect()
	str := func(name string) string {
		if f := r.Descriptor().Fields().ByName(protoreflect.Name(name)); f != nil && f.Kind() == protoreflect.StringKind {
			return r.Get(f).String()
		}
		return ""
	}
	num := func(name string) int64 {
		if f := r.Descriptor().Fields().ByName(protoreflect.Name(name)); f != nil && (f.Kind() == protoreflect.Int32Kind || f.Kind() == protoreflect.Int64Kind) {
			return r.Get(f).Int()
		}
		return 0
	}
	n := Notification{
		Type: k.typ, Severity: k.severity, Failure: k.failure, Tenant: ev.Tenant, Wave: int32(num("wave")),
		RunID: str("run_id"), AboutEventID: ev.ID, Time: ev.Time,
	}
	n.ID = RunFateID(ev.Tenant, n.RunID, n.Type)
	var detail []string
	if e, b := num("errors"), num("error_budget"); e > 0 || b > 0 {
		detail = append(detail, fmt.Sprintf("%d failed jobs, error budget %d", e, b))
	}
	for _, f := range []string{"reason", "cause"} {
		if s := str(f); s != "" {
			n.Reason = OneLine(s)
			detail = append(detail, n.Reason)
			break
		}
	}
	if a := str("actor"); a != "" {
		detail = append(detail, "by "+a)
	}
	n.Summary = prefix(ev.Tenant, n.Wave, n.RunID) + " " + k.what
	if len(detail) > 0 {
		n.Summary += ": " + strings.Join(detail, ", ")
	}
	return n, true
}
