package adapters

import (
	"fmt"
	"time"

	"github.com/patchwave/patchwave/libs/calendar"
	"github.com/patchwave/patchwave/libs/design"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Freezes answers from the watched service design whether a tenant is inside a change freeze
// (its own or a global one), with libs/calendar's expansion of one-off and recurring freezes.
type Freezes struct {
	View func() *design.View
}

// FrozenAt returns the id of a freeze covering at, "" if none.
func (f Freezes) FrozenAt(tenant string, at time.Time) (string, error) {
	v := f.View()
	if v == nil {
		return "", nil
	}
	own, _ := v.Freezes(tenant)
	for _, fr := range append(append([]*typesv1.Freeze{}, own...), v.GlobalFreezes()...) {
		cf := calendarFreeze(fr)
		ins, err := cf.Instances(at.Add(-time.Nanosecond), at.Add(time.Nanosecond))
		if err != nil {
			return "", fmt.Errorf("freeze %s: %w", fr.GetId(), err)
		}
		for _, in := range ins {
			if !at.Before(in.Start) && at.Before(in.End) {
				return fr.GetId(), nil
			}
		}
	}
	return "", nil
}

// TenantIDs lists the tenants of the design.
func (f Freezes) TenantIDs() []string {
	v := f.View()
	if v == nil {
		return nil
	}
	var out []string
	for _, t := range v.Tenants() {
		out = append(out, t.Design.GetTenant().GetTenantId())
	}
	return out
}

// Policies answers the waves' max concurrency from the watched service design.
type Policies struct {
	View func() *design.View
}

// MaxConcurrency returns each wave's max concurrency: its rollout policy's, else the tenant's
// default policy's; a wave without either is left out (the built-in default applies).
func (p Policies) MaxConcurrency(tenant string) map[int32]*typesv1.Amount {
	v := p.View()
	if v == nil {
		return nil
	}
	t, ok := v.Tenant(tenant)
	if !ok {
		return nil
	}
	out := map[int32]*typesv1.Amount{}
	def := t.Design.GetTenant().GetDefaultPolicy().GetMaxConcurrency()
	for _, w := range t.Design.GetWaves() {
		a := w.GetPolicy().GetMaxConcurrency()
		if a.GetValue() == nil {
			a = def
		}
		if a.GetValue() != nil {
			out[w.GetNumber()] = a
		}
	}
	return out
}

// calendarFreeze reads a stored freeze (the scheduler validated it when it was written).
func calendarFreeze(f *typesv1.Freeze) calendar.Freeze {
	cf := calendar.Freeze{
		ID: f.GetId(), Name: f.GetName(), Policy: calendar.PolicySkip, DeferDays: int(f.GetDeferDays()), RRule: f.GetRrule(),
		DTStart: f.GetDtStart(), TimeZone: f.GetTimeZone(), Days: int(f.GetDays()), ExDates: f.GetExDates(),
	}
	if f.GetPolicy() == typesv1.FreezePolicy_FREEZE_POLICY_DEFER {
		cf.Policy = calendar.PolicyDefer
	}
	if f.GetStart() != nil {
		cf.Start = f.GetStart().AsTime()
	}
	if f.GetEnd() != nil {
		cf.End = f.GetEnd().AsTime()
	}
	if d, err := time.ParseDuration(f.GetDuration()); err == nil {
		cf.Duration = d
	}
	return cf
}
