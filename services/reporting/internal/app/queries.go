package app

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/patchwave/patchwave/libs/apierr"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// Page bounds of the listings: 1..1000 rows, 100 by default.
const (
	DefaultPage = 100
	MaxPage     = 1000
)

// Page is a page request: its size (0: the default) and the token of the previous page.
type Page struct {
	Size  int32
	Token string
}

func (p Page) check(v *apierr.Violations) (int, string) {
	size := DefaultPage
	switch {
	case p.Size == 0:
	case p.Size < 1 || p.Size > MaxPage:
		v.Add("pageSize", fmt.Sprintf("must be from 1 to %d, got %d", MaxPage, p.Size))
	default:
		size = int(p.Size)
	}
	after := ""
	if p.Token != "" {
		b, err := base64.RawURLEncoding.DecodeString(p.Token)
		if err != nil || len(b) == 0 || !strings.HasPrefix(string(b), "k:") {
			v.Add("pageToken", "must be the nextPageToken of the previous page")
		} else {
			after = string(b[2:])
		}
	}
	return size, after
}

func token(key string) string { return base64.RawURLEncoding.EncodeToString([]byte("k:" + key)) }

// InstanceFilter selects instances; zero values select all.
type InstanceFilter struct {
	States   []typesv1.ComplianceState
	Wave     int32
	OSFamily string
}

func (f InstanceFilter) check(v *apierr.Violations) {
	for _, s := range f.States {
		if !slices.Contains(domain.States, s) {
			v.Add("states", fmt.Sprintf("must be COMPLIANT, NON_COMPLIANT or UNKNOWN, got %s", s))
		}
	}
	if f.Wave < 0 {
		v.Add("wave", fmt.Sprintf("must be 0 (all) or a wave number, got %d", f.Wave))
	}
}

// ListInstances returns a page of a tenant's in-scope instances that pass f, sorted by id,
// and the token of the next page ("" on the last).
func (a *Application) ListInstances(ctx context.Context, tenant string, f InstanceFilter, p Page) ([]domain.Instance, string, error) {
	var v apierr.Violations
	f.check(&v)
	size, after := p.check(&v)
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	if err := a.query(ctx, tenant); err != nil {
		return nil, "", err
	}
	ids, err := a.instanceIDs(ctx, tenant, f)
	if err != nil {
		return nil, "", err
	}
	start := sort.SearchStrings(ids, after)
	if start < len(ids) && after != "" && ids[start] == after {
		start++
	}
	end := min(start+size, len(ids))
	out := make([]domain.Instance, 0, end-start)
	for _, id := range ids[start:end] {
		in, found, err := a.repo.Instance(ctx, tenant, id)
		if err != nil {
			return nil, "", err
		}
		if found {
			out = append(out, in)
		}
	}
	next := ""
	if end < len(ids) {
		next = token(ids[end-1])
	}
	return out, next, nil
}

// instanceIDs returns the sorted ids of the instances that pass f, from the coverage buckets.
func (a *Application) instanceIDs(ctx context.Context, tenant string, f InstanceFilter) ([]string, error) {
	return memberIDs(ctx, a.repo, tenant, f)
}

// memberIDs returns the sorted ids of the tenant's instances in repo that pass f, from the
// coverage buckets.
func memberIDs(ctx context.Context, repo domain.Repository, tenant string, f InstanceFilter) ([]string, error) {
	groups, err := repo.Groups(ctx, tenant)
	if err != nil {
		return nil, err
	}
	states := f.States
	if len(states) == 0 {
		states = domain.States
	}
	var ids []string
	for _, g := range groups {
		if (f.Wave != 0 && g.Wave != f.Wave) || (f.OSFamily != "" && g.OSFamily != f.OSFamily) {
			continue
		}
		for _, s := range states {
			ms, err := repo.Members(ctx, tenant, g, s)
			if err != nil {
				return nil, err
			}
			ids = append(ids, ms...)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids), nil
}

// InstanceReport is one instance with its patches measured against its baseline.
type InstanceReport struct {
	Instance domain.Instance
	Patches  []domain.PatchView
}

// InstancePatches returns an instance's per-patch state; apierr.ErrNotFound when the
// instance was never in scope.
func (a *Application) InstancePatches(ctx context.Context, tenant, id string) (InstanceReport, error) {
	if id == "" {
		var v apierr.Violations
		v.Add("instanceId", "is required")
		return InstanceReport{}, v.Err()
	}
	if err := a.query(ctx, tenant); err != nil {
		return InstanceReport{}, err
	}
	in, found, err := a.repo.Instance(ctx, tenant, id)
	if err != nil {
		return InstanceReport{}, err
	}
	if !found {
		return InstanceReport{}, fmt.Errorf("%w: instance %s of tenant %s is not in the read model", domain.ErrNotFound, id, tenant)
	}
	var b *domain.Baseline
	if in.Baseline != "" {
		bl, found, err := a.repo.Baseline(ctx, in.Baseline)
		if err != nil {
			return InstanceReport{}, err
		}
		if found {
			b = &bl
		}
	}
	return InstanceReport{Instance: in, Patches: in.PatchViews(b)}, nil
}

// FailedFilter selects failed patches; zero values select all.
type FailedFilter struct {
	Wave       int32
	OSFamily   string
	PatchID    string
	InstanceID string
}

// ListFailedPatches returns a page of a tenant's failed patches that pass f, sorted by
// instance, then patch; apierr.ErrNotFound for a tenant that is not in the service design.
func (a *Application) ListFailedPatches(ctx context.Context, tenant string, f FailedFilter, p Page) ([]domain.FailedPatch, string, error) {
	var v apierr.Violations
	if f.Wave < 0 {
		v.Add("wave", fmt.Sprintf("must be 0 (all) or a wave number, got %d", f.Wave))
	}
	size, after := p.check(&v)
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	if err := a.query(ctx, tenant); err != nil {
		return nil, "", err
	}
	ids, err := a.repo.FailedInstances(ctx, tenant)
	if err != nil {
		return nil, "", err
	}
	slices.Sort(ids)
	afterInst, afterPatch, _ := strings.Cut(after, "\x00")
	start := sort.SearchStrings(ids, afterInst)
	var out []domain.FailedPatch
	next := ""
	for _, id := range ids[start:] {
		if f.InstanceID != "" && id != f.InstanceID {
			continue
		}
		in, found, err := a.repo.Instance(ctx, tenant, id)
		if err != nil {
			return nil, "", err
		}
		if !found || (f.Wave != 0 && in.Wave != f.Wave) || (f.OSFamily != "" && in.Family() != f.OSFamily) {
			continue
		}
		for _, fp := range in.Failed() {
			if f.PatchID != "" && fp.PatchID != f.PatchID {
				continue
			}
			if after != "" && (id < afterInst || (id == afterInst && fp.PatchID <= afterPatch)) {
				continue
			}
			if len(out) == size {
				last := out[len(out)-1]
				return out, token(last.InstanceID + "\x00" + last.PatchID), nil
			}
			out = append(out, fp)
		}
	}
	return out, next, nil
}

// AllFailedPatches returns every failed patch that passes f (an export), sorted.
func (a *Application) AllFailedPatches(ctx context.Context, tenant string, f FailedFilter) ([]domain.FailedPatch, error) {
	return allPages(func(p Page) ([]domain.FailedPatch, string, error) { return a.ListFailedPatches(ctx, tenant, f, p) })
}

// AllInstances returns every instance that passes f (an export), sorted by id.
func (a *Application) AllInstances(ctx context.Context, tenant string, f InstanceFilter) ([]domain.Instance, error) {
	return allPages(func(p Page) ([]domain.Instance, string, error) { return a.ListInstances(ctx, tenant, f, p) })
}

// allPages reads every page of a listing, MaxPage at a time.
func allPages[T any](list func(Page) ([]T, string, error)) ([]T, error) {
	var all []T
	p := Page{Size: MaxPage}
	for {
		page, next, err := list(p)
		if err != nil {
			return nil, err
		}
		all = append(all, page...)
		if next == "" {
			return all, nil
		}
		p.Token = next
	}
}

// Ageing is the tenant's missing patches by age, and a summary per severity.
type Ageing struct {
	AsOf       time.Time
	Patches    []domain.AgeingEntry
	BySeverity []SeverityAgeing
}

// SeverityAgeing sums the missing patches of one severity.
type SeverityAgeing struct {
	Severity typesv1.Severity
	// Patches is how many patches of the severity are missing somewhere, Instances how many
	// (instance, patch) pairs miss them, OldestDays the age of the oldest.
	Patches    int
	Instances  int
	OldestDays int32
}

// GetAgeing returns, for every OS family the tenant has in scope, the patches of the baseline
// that applies that instances still miss, with the days since each was certified (the
// baseline's publication when the catalog recorded no certification). Its cost grows with the
// baselines' patches, not with the fleet.
func (a *Application) GetAgeing(ctx context.Context, tenant string) (Ageing, error) {
	if err := a.query(ctx, tenant); err != nil {
		return Ageing{}, err
	}
	now := a.clock().UTC()
	groups, err := a.repo.Groups(ctx, tenant)
	if err != nil {
		return Ageing{}, err
	}
	fams := map[string]bool{}
	for _, g := range groups {
		fams[g.OSFamily] = true
	}
	out := Ageing{AsOf: now, Patches: []domain.AgeingEntry{}, BySeverity: []SeverityAgeing{}}
	seen := map[string]bool{}
	sev := map[typesv1.Severity]*SeverityAgeing{}
	for _, fam := range slices.Sorted(func(yield func(string) bool) {
		for f := range fams {
			if !yield(f) {
				return
			}
		}
	}) {
		ap, found, err := a.repo.Approval(ctx, tenant, fam)
		if err != nil {
			return Ageing{}, err
		}
		if !found {
			continue
		}
		b, found, err := a.repo.Baseline(ctx, ap.BaselineID)
		if err != nil {
			return Ageing{}, err
		}
		if !found {
			continue
		}
		for _, p := range b.Patches {
			if seen[p.ID] {
				continue
			}
			seen[p.ID] = true
			n, err := a.repo.MissingCount(ctx, tenant, p.ID)
			if err != nil {
				return Ageing{}, err
			}
			if n == 0 {
				continue
			}
			cert, found, err := a.repo.CertifiedAt(ctx, p.ID)
			if err != nil {
				return Ageing{}, err
			}
			if !found {
				cert = b.PublishedAt
			}
			e := domain.AgeingEntry{PatchID: p.ID, OSFamily: fam, BaselineID: b.ID, Severity: p.Severity,
				CertifiedAt: cert, Days: domain.AgeDays(cert, now), Instances: n}
			out.Patches = append(out.Patches, e)
			s := sev[p.Severity]
			if s == nil {
				s = &SeverityAgeing{Severity: p.Severity}
				sev[p.Severity] = s
			}
			s.Patches++
			s.Instances += n
			s.OldestDays = max(s.OldestDays, e.Days)
		}
	}
	sort.Slice(out.Patches, func(i, j int) bool {
		x, y := out.Patches[i], out.Patches[j]
		if x.Days != y.Days {
			return x.Days > y.Days
		}
		return x.PatchID < y.PatchID
	})
	for s := typesv1.Severity_SEVERITY_CRITICAL; s >= typesv1.Severity_SEVERITY_UNSPECIFIED; s-- {
		if v := sev[s]; v != nil {
			out.BySeverity = append(out.BySeverity, *v)
		}
	}
	return out, nil
}

// HistoryYear is the span of a history query without from: the last 12 months.
const HistoryYear = 365 * 24 * time.Hour

// History is a tenant's figures over time: a snapshot per past day and per finished run, in
// time order, and the figures now.
type History struct {
	Days []domain.Snapshot
	Runs []domain.Snapshot
	// Cycles are the tenant's past cycles, each as the next one began.
	Cycles  []domain.Snapshot
	Current domain.Snapshot
}

// GetHistory returns the snapshots with a time in [from, to]; zero to is now, zero from is
// 12 months before to.
func (a *Application) GetHistory(ctx context.Context, tenant string, from, to time.Time) (History, error) {
	now := a.clock().UTC()
	if to.IsZero() {
		to = now
	}
	if from.IsZero() {
		from = to.Add(-HistoryYear)
	}
	if from.After(to) {
		var v apierr.Violations
		v.Add("from", fmt.Sprintf("must not be after to (%s), got %s", to.Format(time.RFC3339), from.Format(time.RFC3339)))
		return History{}, v.Err()
	}
	if err := a.query(ctx, tenant); err != nil {
		return History{}, err
	}
	h := History{Days: []domain.Snapshot{}, Runs: []domain.Snapshot{}, Cycles: []domain.Snapshot{}}
	in := func(s domain.Snapshot) bool { return !s.At.Before(from) && !s.At.After(to) }
	for kind, dst := range map[string]*[]domain.Snapshot{"day": &h.Days, "run": &h.Runs, "cycle": &h.Cycles} {
		snaps, err := a.repo.Snapshots(ctx, tenant, kind)
		if err != nil {
			return History{}, err
		}
		for _, s := range snaps {
			if in(s) {
				*dst = append(*dst, s)
			}
		}
		sort.SliceStable(*dst, func(i, j int) bool { return (*dst)[i].At.Before((*dst)[j].At) })
	}
	r, err := a.tx(a.repo).report(ctx, tenant)
	if err != nil {
		return History{}, err
	}
	cyc, _, err := a.repo.Cycle(ctx, tenant)
	if err != nil {
		return History{}, err
	}
	h.Current = domain.Snapshot{Kind: "current", Key: now.Format(time.DateOnly), At: now, Report: r, Cycle: cyc.Key, Pins: cyc.Pins}
	return h, nil
}

// RunReport is one run with the state of each of its jobs.
type RunReport struct {
	Run    domain.Run
	Counts map[typesv1.JobState]int
	// Jobs is a page of (instance, job state), sorted by instance.
	Jobs []Job
	Next string
}

// Job is one instance of a run.
type Job struct {
	InstanceID string
	State      typesv1.JobState
}

// GetRun returns a run's report with a page of its jobs; apierr.ErrNotFound for a run the
// read model does not know.
func (a *Application) GetRun(ctx context.Context, tenant, runID string, p Page) (RunReport, error) {
	var v apierr.Violations
	if runID == "" {
		v.Add("runId", "is required")
	}
	size, after := p.check(&v)
	if err := v.Err(); err != nil {
		return RunReport{}, err
	}
	if err := a.query(ctx, tenant); err != nil {
		return RunReport{}, err
	}
	run, found, err := a.repo.Run(ctx, tenant, runID)
	if err != nil {
		return RunReport{}, err
	}
	if !found {
		return RunReport{}, fmt.Errorf("%w: run %s of tenant %s is not in the read model", domain.ErrNotFound, runID, tenant)
	}
	states, err := a.repo.JobStates(ctx, tenant, runID)
	if err != nil {
		return RunReport{}, err
	}
	rep := RunReport{Run: run, Counts: map[typesv1.JobState]int{}, Jobs: []Job{}}
	ids := make([]string, 0, len(states))
	for id, s := range states {
		rep.Counts[s]++
		ids = append(ids, id)
	}
	slices.Sort(ids)
	start := sort.SearchStrings(ids, after)
	if start < len(ids) && after != "" && ids[start] == after {
		start++
	}
	end := min(start+size, len(ids))
	for _, id := range ids[start:end] {
		rep.Jobs = append(rep.Jobs, Job{InstanceID: id, State: states[id]})
	}
	if end < len(ids) {
		rep.Next = token(ids[end-1])
	}
	return rep, nil
}
