package app

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

// StartSpec is everything a run starts with. StartRun builds one from the design and the
// fleet; a re-run from the run it repeats.
type StartSpec struct {
	Tenant string
	// RunID is optional: empty makes a new sortable id.
	RunID string
	Wave  int32
	Pins  []domain.Pin
	// Members is the membership in release order (eligible ones are released in this order).
	Members []*typesv1.Member
	// Window is the window the run dispatches in; nil: the wave's window open now, if any.
	Window *domain.Window
	// RerunOf names the run whose failed instances this one runs again.
	RerunOf string
	// Firing says why the run exists (its occurrence, cycle, trigger); RunStarted carries it.
	Firing *typesv1.FiringRef
}

// Start publishes a run: the membership in RunMembership chunks (MaxChunk instances each),
// then RunStarted with the counts, pins and resolved limits (and RunCompleted at once when no
// member is eligible). The chunks are named by a digest of the membership, so a retry with the
// same membership stores nothing twice, and one with another is ignored by the run's readers.
func (a *Application) Start(ctx context.Context, spec StartSpec) (domain.Run, error) {
	pub, err := a.waitReady(ctx)
	if err != nil {
		return domain.Run{}, err
	}
	now := a.clock().UTC()
	if spec.RunID == "" {
		if spec.RunID, err = domain.NewRunID(now, a.rand); err != nil {
			return domain.Run{}, err
		}
	}
	rollout, err := a.design.WavePolicy(ctx, spec.Tenant, spec.Wave)
	if err != nil {
		return domain.Run{}, err
	}
	window := spec.Window
	if window == nil {
		if window, err = a.design.Window(ctx, spec.Tenant, spec.Wave, now); err != nil {
			return domain.Run{}, err
		}
	}
	detail := domain.RunDetail{Pins: spec.Pins, RerunOf: spec.RerunOf}
	for _, m := range spec.Members {
		switch m.GetStatus() {
		case typesv1.MemberStatus_MEMBER_STATUS_ELIGIBLE:
			detail.Eligible++
		case typesv1.MemberStatus_MEMBER_STATUS_STOPPED:
			detail.Missed++
		case typesv1.MemberStatus_MEMBER_STATUS_NO_AGENT:
			detail.NoAgent++
		default:
			detail.NoBaseline++
		}
	}
	detail.Limits = domain.ResolveLimits(design.NormalizePolicy(rollout), detail.Eligible, window)
	jobPolicy := domain.JobPolicy(rollout, a.cfg.Policy)
	if rollout.GetInstanceTimeout() == "" && window != nil && window.End.After(now) {
		// The design's default per-instance timeout is the window: no installation outlives
		// the window the run dispatches in (the installer ends it TIMED_OUT).
		jobPolicy.InstanceTimeout = durationpb.New(window.End.Sub(now).Truncate(time.Second))
	}
	if detail.Policy, err = protojson.Marshal(jobPolicy); err != nil {
		return domain.Run{}, fmt.Errorf("encode job policy: %w", err)
	}
	detail.MembershipID = membershipID(spec.Members)
	chunks := chunk(spec.Members)
	detail.Chunks = len(chunks)

	evs := make([]*events.Event, 0, len(chunks)+2)
	for i, members := range chunks {
		ev, err := events.New(spec.Tenant, spec.RunID+"/"+detail.MembershipID+"/"+strconv.Itoa(i), &eventsv1.RunMembership{
			Tenant: spec.Tenant, RunId: spec.RunID, Wave: spec.Wave, MembershipId: detail.MembershipID,
			Chunk: int32(i), Chunks: int32(len(chunks)), Members: members,
		})
		if err != nil {
			return domain.Run{}, fmt.Errorf("run membership event: %w", err)
		}
		ev.Time = now
		evs = append(evs, ev)
	}
	primary := primaryBaseline(spec.Pins, spec.Members)
	started, err := events.New(spec.Tenant, spec.RunID, &eventsv1.RunStarted{
		Tenant: spec.Tenant, RunId: spec.RunID, Wave: spec.Wave, StartedAt: timestamppb.New(now),
		BaselineId: primary.BaselineID, PatchIds: primary.PatchIDs, Policy: jobPolicy,
		Membership: &typesv1.MembershipCounts{
			Total: int32(len(spec.Members)), Eligible: int32(detail.Eligible), Stopped: int32(detail.Missed),
			NoAgent: int32(detail.NoAgent), NoBaseline: int32(detail.NoBaseline), Chunks: int32(len(chunks)),
		},
		MembershipId: detail.MembershipID, Pins: pinsProto(spec.Pins), Limits: limitsProto(detail.Limits), RerunOf: spec.RerunOf,
		Firing: spec.Firing,
	})
	if err != nil {
		return domain.Run{}, fmt.Errorf("run started event: %w", err)
	}
	started.Time = now
	evs = append(evs, started)
	run := domain.Run{
		Tenant: spec.Tenant, ID: spec.RunID, Wave: spec.Wave, BaselineID: primary.BaselineID,
		State: typesv1.RunState_RUN_STATE_RUNNING, Total: len(spec.Members), StartedAt: now, Detail: detail,
	}
	if c, ok := run.Complete(); ok {
		done, err := a.completedEvent(run, c, now)
		if err != nil {
			return domain.Run{}, err
		}
		evs = append(evs, done)
		run.State, run.CompletedAt = c.State, now
	}
	if err := pub.Publish(ctx, evs...); err != nil {
		return domain.Run{}, fmt.Errorf("%w: publish run %s: %w", domain.ErrUnavailable, spec.RunID, err)
	}
	a.log.InfoContext(ctx, "run started", "tenant", spec.Tenant, "run_id", spec.RunID, "wave", spec.Wave,
		"instances", len(spec.Members), "eligible", detail.Eligible, "chunks", len(chunks),
		"max_in_flight", detail.Limits.MaxInFlight, "error_budget", detail.Limits.ErrorBudget, "stop_at", detail.Limits.StopAt)
	return run, nil
}

// membershipID is a digest of the membership: 12 hex digits of sha256 over the members.
func membershipID(members []*typesv1.Member) string {
	h := sha256.New()
	for _, m := range members {
		fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%d\n", m.GetInstanceId(), m.GetLocation().GetAccount(), m.GetLocation().GetRegion(), m.GetOsFamily(), m.GetStatus())
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

func chunk(members []*typesv1.Member) [][]*typesv1.Member {
	var out [][]*typesv1.Member
	for i := 0; i < len(members); i += domain.MaxChunk {
		out = append(out, members[i:min(i+domain.MaxChunk, len(members))])
	}
	return out
}

// primaryBaseline is the run's baseline for one-line displays (and RunStarted's baseline_id
// and patch_ids, for older readers): the pin of the OS family most eligible members run (the
// only one in a one-family fleet).
func primaryBaseline(pins []domain.Pin, members []*typesv1.Member) domain.Pin {
	n := map[string]int{}
	for _, m := range members {
		if m.GetStatus() == typesv1.MemberStatus_MEMBER_STATUS_ELIGIBLE {
			n[m.GetOsFamily()]++
		}
	}
	best, pin := -1, domain.Pin{}
	for _, p := range pins {
		if n[p.OSFamily] > best {
			best, pin = n[p.OSFamily], p
		}
	}
	return pin
}

func pinsProto(pins []domain.Pin) []*typesv1.BaselinePin {
	out := make([]*typesv1.BaselinePin, len(pins))
	for i, p := range pins {
		out[i] = &typesv1.BaselinePin{OsFamily: p.OSFamily, BaselineId: p.BaselineID, Version: p.Version, PatchIds: p.PatchIDs}
	}
	return out
}

func pinsOf(pb []*typesv1.BaselinePin) []domain.Pin {
	out := make([]domain.Pin, len(pb))
	for i, p := range pb {
		out[i] = domain.Pin{OSFamily: p.GetOsFamily(), BaselineID: p.GetBaselineId(), Version: p.GetVersion(), PatchIDs: p.GetPatchIds()}
	}
	return out
}

func limitsProto(l domain.Limits) *typesv1.DispatchLimits {
	p := &typesv1.DispatchLimits{MaxInFlight: int32(l.MaxInFlight), ErrorBudget: int32(l.ErrorBudget), StopReason: l.StopReason}
	if !l.StopAt.IsZero() {
		p.StopAt = timestamppb.New(l.StopAt)
	}
	if !l.WindowEnd.IsZero() {
		p.WindowEnd = timestamppb.New(l.WindowEnd)
	}
	return p
}

func limitsOf(p *typesv1.DispatchLimits) domain.Limits {
	l := domain.Limits{MaxInFlight: int(p.GetMaxInFlight()), ErrorBudget: int(p.GetErrorBudget()), StopReason: p.GetStopReason()}
	if p.GetStopAt() != nil {
		l.StopAt = p.GetStopAt().AsTime().UTC()
	}
	if p.GetWindowEnd() != nil {
		l.WindowEnd = p.GetWindowEnd().AsTime().UTC()
	}
	return l
}

// legacyMembership is the membership id of a run whose RunStarted listed its instances itself
// (events from before chunks): the runs projection writes them as one chunk under this id.
const legacyMembership = "legacy"

// errChunkMissing means a run's chunk is not in the read model yet (published, not applied).
var errChunkMissing = errors.New("membership chunk not in the read model yet")

// membership is a run's membership as read from its chunks: immutable, so it is cached. It is
// kept compact (about 60 bytes a member: its id, and indexes into the run's few locations and
// OS families), not as decoded protobufs: the controller holds one per open run, and a run
// may have 100,000 members and more.
type membership struct {
	// all is every member in chunk order; eligible the positions in all of the eligible
	// ones, in release order (a job's index is its place in eligible).
	all      []member
	eligible []int32
	locs     []*typesv1.Location
	families []string
	// pos maps an eligible instance to its index, built on first use only (jobs from before
	// job indexes, and repairs): a job.requested names its index.
	posOnce sync.Once
	pos     map[string]int
}

// member is one member of a membership.
type member struct {
	id     string
	loc    uint32
	family uint32
	status typesv1.MemberStatus
}

// memberBuilder adds members to a membership, sharing locations and families.
type memberBuilder struct {
	m        *membership
	locs     map[[2]string]uint32
	families map[string]uint32
}

func newMemberBuilder() *memberBuilder {
	return &memberBuilder{m: &membership{}, locs: map[[2]string]uint32{}, families: map[string]uint32{}}
}

func (b *memberBuilder) add(mem *typesv1.Member) {
	lk := [2]string{mem.GetLocation().GetAccount(), mem.GetLocation().GetRegion()}
	loc, ok := b.locs[lk]
	if !ok {
		loc = uint32(len(b.m.locs))
		b.locs[lk] = loc
		var l *typesv1.Location
		if mem.GetLocation() != nil {
			l = proto.Clone(mem.GetLocation()).(*typesv1.Location)
		}
		b.m.locs = append(b.m.locs, l)
	}
	fam, ok := b.families[mem.GetOsFamily()]
	if !ok {
		fam = uint32(len(b.m.families))
		b.families[mem.GetOsFamily()] = fam
		b.m.families = append(b.m.families, mem.GetOsFamily())
	}
	if mem.GetStatus() == typesv1.MemberStatus_MEMBER_STATUS_ELIGIBLE {
		b.m.eligible = append(b.m.eligible, int32(len(b.m.all)))
	}
	b.m.all = append(b.m.all, member{id: mem.GetInstanceId(), loc: loc, family: fam, status: mem.GetStatus()})
}

// size is the number of eligible members.
func (m *membership) size() int { return len(m.eligible) }

// eligibleID is the instance of eligible position p.
func (m *membership) eligibleID(p int) string { return m.all[m.eligible[p]].id }

// family is the OS family of member i of all.
func (m *membership) family(i int32) string { return m.families[m.all[i].family] }

// location is the location of member i of all; it is shared: callers do not change it.
func (m *membership) location(i int32) *typesv1.Location { return m.locs[m.all[i].loc] }

// proto returns member i of all as a new Member.
func (m *membership) proto(i int32) *typesv1.Member {
	mem := m.all[i]
	out := &typesv1.Member{InstanceId: mem.id, OsFamily: m.families[mem.family], Status: mem.status}
	if l := m.locs[mem.loc]; l != nil {
		out.Location = proto.Clone(l).(*typesv1.Location)
	}
	return out
}

// position returns the eligible position of instanceID, with index as a hint (a job's
// index): -1 if the instance is not an eligible member.
func (m *membership) position(instanceID string, index int32) int {
	if index >= 0 && int(index) < len(m.eligible) && m.eligibleID(int(index)) == instanceID {
		return int(index)
	}
	m.posOnce.Do(func() {
		m.pos = make(map[string]int, len(m.eligible))
		for p := range m.eligible {
			m.pos[m.eligibleID(p)] = p
		}
	})
	if p, ok := m.pos[instanceID]; ok {
		return p
	}
	return -1
}

// memberCache keeps the memberships of recent runs (a membership never changes).
type memberCache struct {
	mu sync.Mutex
	m  map[string]*membership
	// order is the insertion order, for eviction.
	order []string
}

// memberCacheSize bounds the cached memberships (about 6 MB each at 100,000 instances); the
// controller keeps the memberships of its open runs besides.
const memberCacheSize = 4

func (c *memberCache) get(key string) *membership {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[key]
}

func (c *memberCache) put(key string, m *membership) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*membership{}
	}
	if _, ok := c.m[key]; ok {
		return
	}
	c.m[key] = m
	c.order = append(c.order, key)
	if len(c.order) > memberCacheSize {
		delete(c.m, c.order[0])
		c.order = c.order[1:]
	}
}

// members reads a run's membership from its chunks; errChunkMissing while one is not applied.
func (a *Application) members(ctx context.Context, r domain.Run) (*membership, error) {
	key := r.Tenant + "/" + r.ID
	if m := a.ctl.cache.get(key); m != nil {
		return m, nil
	}
	b := newMemberBuilder()
	for i := range r.Detail.Chunks {
		data, ok, err := a.repo.Chunk(ctx, r.Tenant, r.ID, r.Detail.MembershipID, i)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("run %s chunk %d of %d: %w", r.ID, i, r.Detail.Chunks, errChunkMissing)
		}
		var c eventsv1.RunMembership
		if err := proto.Unmarshal(data, &c); err != nil {
			return nil, fmt.Errorf("decode run %s chunk %d: %w", r.ID, i, err)
		}
		for _, mem := range c.GetMembers() {
			b.add(mem)
		}
	}
	a.ctl.cache.put(key, b.m)
	return b.m, nil
}

// jobPolicy decodes a run's job policy.
func jobPolicyOf(r domain.Run) (*typesv1.JobPolicy, error) {
	p := &typesv1.JobPolicy{}
	if len(r.Detail.Policy) == 0 {
		return p, nil
	}
	if err := protojson.Unmarshal(r.Detail.Policy, p); err != nil {
		return nil, fmt.Errorf("decode job policy of run %s: %w", r.ID, err)
	}
	return p, nil
}
