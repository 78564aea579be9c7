package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/adapters/kvstore"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
	"github.com/patchwave/patchwave/services/catalog/internal/pb"
)

// RuleActor is the actor of the steps a rule makes.
func RuleActor(id string) string { return "rule:" + id }

// ListRules returns every rule, by id.
func (a *App) ListRules(ctx context.Context) ([]domain.Rule, error) {
	if err := a.st.Rules.Sync(ctx); err != nil {
		return nil, err
	}
	var out []domain.Rule
	for _, e := range a.st.Rules.Snapshot() {
		out = append(out, pb.FromRule(e.Value))
	}
	return out, nil
}

// enabledRules returns the enabled rules from the read model.
func (a *App) enabledRules() ([]domain.Rule, error) {
	var out []domain.Rule
	for _, e := range a.st.Rules.Snapshot() {
		if r := pb.FromRule(e.Value); r.Enabled {
			out = append(out, r)
		}
	}
	return out, nil
}

// PutRule creates or replaces a rule, announces it (catalog.rule.changed) and applies the
// rules at once, so a rule whose patches are already due certifies them now.
func (a *App) PutRule(ctx context.Context, r domain.Rule, actor string) (domain.Rule, error) {
	if err := r.Validate(); err != nil {
		return domain.Rule{}, err
	}
	if err := domain.ValidateActor(actor); err != nil {
		return domain.Rule{}, domain.Invalid(fmt.Errorf("actor: %w", err))
	}
	slices.Sort(r.Classifications)
	slices.Sort(r.Severities)
	slices.Sort(r.OSFamilies)
	msg := pb.Rule(r)
	for attempt := 0; attempt < maxCASAttempts; attempt++ {
		e, found, err := a.st.Rules.Get(ctx, r.ID)
		if err != nil {
			return domain.Rule{}, err
		}
		var rev uint64
		if found {
			if proto.Equal(e.Value, msg) {
				return r, nil
			}
			rev = e.Revision
		}
		next, err := a.st.Rules.Put(ctx, r.ID, msg, rev)
		if errors.Is(err, kvstore.ErrConflict) {
			continue
		}
		if err != nil {
			return domain.Rule{}, err
		}
		data, _ := protojson.Marshal(msg)
		ev := events.MustNew("", r.ID+"/"+strconv.FormatUint(next, 10), &eventsv1.AutoApprovalRuleChanged{
			RuleId: r.ID, RuleJson: string(data), ChangedBy: actor, ChangedAt: pb.Time(a.now()), Revision: next,
		})
		if err := a.publish(ctx, ev); err != nil {
			return domain.Rule{}, err
		}
		if err := a.st.Rules.WaitFor(ctx, next); err != nil {
			return domain.Rule{}, err
		}
		if _, err := a.ApplyRules(ctx); err != nil {
			return domain.Rule{}, err
		}
		return r, nil
	}
	return domain.Rule{}, fmt.Errorf("rule %s: %w", r.ID, kvstore.ErrConflict)
}

// DeleteRule deletes a rule; the certifications it made stay.
func (a *App) DeleteRule(ctx context.Context, id, actor string) error {
	if err := domain.ValidateRuleID(id); err != nil {
		return err
	}
	if err := domain.ValidateActor(actor); err != nil {
		return domain.Invalid(fmt.Errorf("actor: %w", err))
	}
	e, found, err := a.st.Rules.Get(ctx, id)
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("rule %q: %w", id, domain.ErrRuleNotFound)
	}
	if err := a.st.Rules.Delete(ctx, id, e.Revision); err != nil {
		return err
	}
	return a.publish(ctx, events.MustNew("", id+"/"+strconv.FormatUint(e.Revision, 10)+"-deleted", &eventsv1.AutoApprovalRuleChanged{
		RuleId: id, Deleted: true, ChangedBy: actor, ChangedAt: pb.Time(a.now()), Revision: e.Revision,
	}))
}

// ApplyRules certifies every NEW patch that an enabled rule makes due now, each step recorded
// as the rule's (actor "rule:<id>", with the rule and dates as evidence). It returns how many
// patches it certified. Patches in test are left to their testers.
func (a *App) ApplyRules(ctx context.Context) (int, error) {
	rules, err := a.enabledRules()
	if err != nil || len(rules) == 0 {
		return 0, err
	}
	if err := a.st.Patches.Sync(ctx); err != nil {
		return 0, err
	}
	n := 0
	now := a.now()
	for _, e := range a.st.Patches.Snapshot() {
		if e.Value.GetState() != domain.StateNew || !slices.ContainsFunc(rules, func(r domain.Rule) bool { return r.Due(e.Value.GetPatch(), now) }) {
			continue
		}
		// The mirror's copy is trimmed: certify the whole record, read from the bucket.
		full, err := a.GetPatch(ctx, e.Value.GetPatch().GetId())
		if err != nil {
			return n, err
		}
		if full.State != domain.StateNew {
			continue
		}
		rec, err := a.applyRules(ctx, full, rules)
		if err != nil {
			return n, err
		}
		if rec != nil {
			n++
		}
	}
	return n, nil
}

// applyRules certifies rec by the first due rule (rules in id order); nil when none is due.
// A record that moved on meanwhile is read again once.
func (a *App) applyRules(ctx context.Context, rec *domain.Record, rules []domain.Rule) (*domain.Record, error) {
	now := a.now()
	for _, r := range rules {
		if !r.Due(rec.Patch, now) {
			continue
		}
		released := rec.Patch.GetReleasedAt().AsTime().UTC()
		req := domain.StepRequest{
			To: domain.StateCertified, Actor: RuleActor(r.ID), RuleID: r.ID,
			Notes: fmt.Sprintf("auto-approval rule %s: released %s, approve after %d days (UTC), due %s",
				r.ID, released.Format("2006-01-02T15:04:05Z"), r.ApproveAfterDays, r.DueAt(released).Format("2006-01-02")),
			Evidence: []*typesv1.Evidence{{Title: "auto-approval rule " + r.ID, MediaType: "text/plain", Content: ruleEvidence(r)}},
		}
		out, err := a.certify(ctx, rec, req)
		if errors.Is(err, kvstore.ErrConflict) {
			fresh, gerr := a.GetPatch(ctx, rec.Patch.GetId())
			if gerr != nil || fresh.State != domain.StateNew {
				return nil, gerr
			}
			out, err = a.certify(ctx, fresh, req)
		}
		return out, err
	}
	return nil, nil
}

func ruleEvidence(r domain.Rule) string {
	names := func(n int, name func(i int) string) string {
		if n == 0 {
			return "any"
		}
		out := make([]string, n)
		for i := range out {
			out[i] = name(i)
		}
		return strings.Join(out, ",")
	}
	return fmt.Sprintf("rule=%s classifications=%s severities=%s os_families=%s approve_after_days=%d",
		r.ID,
		names(len(r.Classifications), func(i int) string { return r.Classifications[i].String() }),
		names(len(r.Severities), func(i int) string { return r.Severities[i].String() }),
		names(len(r.OSFamilies), func(i int) string { return r.OSFamilies[i] }),
		r.ApproveAfterDays)
}

// NextRuleDue returns when the next NEW patch falls (or fell) due under an enabled rule, zero
// when none will, so the evaluation timer wakes for it.
func (a *App) NextRuleDue() time.Time {
	rules, _ := a.enabledRules()
	if len(rules) == 0 {
		return time.Time{}
	}
	var next time.Time
	for _, e := range a.st.Patches.Snapshot() {
		if e.Value.GetState() != domain.StateNew {
			continue
		}
		for _, r := range rules {
			if !r.Matches(e.Value.GetPatch()) {
				continue
			}
			due := r.DueAt(e.Value.GetPatch().GetReleasedAt().AsTime())
			if next.IsZero() || due.Before(next) {
				next = due
			}
		}
	}
	return next
}
