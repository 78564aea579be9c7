package app

import (
	"context"
	"time"

	"github.com/patchwave/patchwave/libs/calendar"
	"github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/design/designcal"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

// Design is the watched service design (libs/design's View).
type Design interface {
	Tenant(id string) (design.Tenant, bool)
	Global() design.Global
}

// DefaultReminderLead is how long before a wave's window opens its reminder is sent when a
// subscription does not say (reminder_minutes 0).
const DefaultReminderLead = time.Hour

// RunReminders queues, every interval, the reminders that are due: for each subscription that
// takes wave.reminder, and each wave of its tenant, once the wave's next window (from the
// service design, freezes applied; skipped occurrences have none) opens within the
// subscription's lead. A reminder's id is derived from the window's opening, so each
// subscription is reminded once per window however often this runs, on however many replicas.
func (a *App) RunReminders(ctx context.Context, d Design, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if err := a.subs.WaitReady(ctx); err != nil {
			return nil
		}
		a.remind(ctx, d)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (a *App) remind(ctx context.Context, d Design) {
	now := a.now().UTC()
	for _, tenant := range a.subs.Tenants() {
		td, ok := d.Tenant(tenant)
		if !ok {
			continue
		}
		subs := a.subs.ForTenant(tenant)
		for _, w := range td.Design.GetWaves() {
			probe := domain.Notification{Type: domain.TypeWaveReminder, Severity: domain.SeverityInfo, Wave: w.GetNumber()}
			var takers []*typesv1.Subscription
			for _, s := range subs {
				if domain.Matches(s, probe) {
					takers = append(takers, s)
				}
			}
			if len(takers) == 0 {
				continue
			}
			opening, ok := a.nextOpening(td.Design, d.Global().Design, w, now)
			if !ok {
				continue
			}
			for _, s := range takers {
				lead := time.Duration(s.GetReminderMinutes()) * time.Minute
				if lead == 0 {
					lead = DefaultReminderLead
				}
				if now.Before(opening.Add(-lead)) {
					continue
				}
				n := domain.Reminder(tenant, w.GetNumber(), opening, now)
				if err := a.enqueueMatching(ctx, []*typesv1.Subscription{s}, n); err != nil && ctx.Err() == nil {
					a.log.Warn("queue reminder", "tenant", tenant, "wave", w.GetNumber(), "error", err)
				}
			}
		}
	}
}

// nextOpening is the start of the wave's next window that has not opened yet, unless that
// occurrence is skipped (frozen, paused, skipped on request).
func (a *App) nextOpening(doc *typesv1.TenantDesign, global *typesv1.GlobalDesign, w *typesv1.Wave, now time.Time) (time.Time, bool) {
	s, o, err := designcal.WaveCalendar(doc, global, w)
	if err != nil {
		a.log.Warn("reminder: wave calendar", "tenant", doc.GetTenant().GetTenantId(), "wave", w.GetNumber(), "error", err)
		return time.Time{}, false
	}
	occ, err := calendar.Occurrences(s, o, now, 2)
	if err != nil {
		return time.Time{}, false
	}
	for _, oc := range occ {
		if oc.Start.After(now) {
			return oc.Start, !oc.Status.Skipped()
		}
	}
	return time.Time{}, false
}
