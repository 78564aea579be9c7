// Package adapters keeps reporting's read models in a store.Store (Redis or memory). Coverage is
// counted with one set of instance ids per (tenant, wave, OS family, state), so a query is a
// few SCARDs however large the fleet, and moving an instance between sets (SREM, SADD) is
// idempotent.
package adapters

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/patchwave/patchwave/libs/store"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// Key layout. Every key starts with "reporting:" so the service can share a store.
//
//	reporting:checkpoint                               string, last applied tenant-stream sequence
//	reporting:catalog-checkpoint                       string, last applied catalog-stream sequence
//	reporting:inst:<tenant>:<instance>                 string, packed record (record.go: domain.Instance, versioned)
//	reporting:groups:<tenant>                          set of "<wave>|<os family>"
//	reporting:bucket:<tenant>:<wave>:<family>:<state>  set of instance ids (state as a number)
//	reporting:family:<tenant>:<family>                 set of instance ids
//	reporting:failed-instances:<tenant>                set of instance ids with FAILED patches
//	reporting:missing:<tenant>:<patch>                 set of instance ids missing the patch
//	reporting:baseline:<id>                            string, JSON domain.Baseline
//	reporting:certified:<patch>                        string, RFC 3339 certification time
//	reporting:approved:<tenant>:<family>               string, JSON domain.Approval (newest)
//	reporting:last-day:<tenant>                        string, UTC date of the latest event
//	reporting:cycle:<tenant>                           string, JSON domain.Cycle (current cycle and its pin)
//	reporting:history:<tenant>:<kind>:<key>            string, JSON domain.Snapshot
//	reporting:run:<tenant>:<run>                       string, JSON domain.Run
//	reporting:jobs:<tenant>:<run>                      hash instance -> job state (number)
//	reporting:marker:<name>                            string, e.g. the last day of a daily scan
const root = "reporting:"

// Store is the compliance repository over a store.Store.
type Store struct {
	st store.Store

	// groups are the groups of each tenant as the last summary found them: a tenant's groups
	// only grow (a flush empties them), so the next summary reads them and counts their
	// buckets in one round trip, and a second one only for groups that are new.
	groupsMu sync.Mutex
	groups   map[string][]domain.Group
}

// New returns the repository over st.
func New(st store.Store) *Store { return &Store{st: st} }

var _ domain.Repository = (*Store)(nil)

func (s *Store) getUint(ctx context.Context, key string) (uint64, error) {
	v, found, err := s.st.Get(ctx, key)
	if err != nil || !found {
		return 0, err
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("decode %s: %w", key, err)
	}
	return n, nil
}

func (s *Store) getJSON(ctx context.Context, key string, v any) (bool, error) {
	b, found, err := s.st.Get(ctx, key)
	if err != nil || !found {
		return false, err
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

func (s *Store) setJSON(ctx context.Context, key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return s.st.Set(ctx, key, b)
}

// Checkpoint implements domain.Repository.
func (s *Store) Checkpoint(ctx context.Context) (uint64, error) {
	return s.getUint(ctx, root+"checkpoint")
}

// SetCheckpoint implements domain.Repository.
func (s *Store) SetCheckpoint(ctx context.Context, seq uint64) error {
	return s.st.Set(ctx, root+"checkpoint", []byte(strconv.FormatUint(seq, 10)))
}

// CatalogCheckpoint implements domain.Repository.
func (s *Store) CatalogCheckpoint(ctx context.Context) (uint64, error) {
	return s.getUint(ctx, root+"catalog-checkpoint")
}

// SetCatalogCheckpoint implements domain.Repository.
func (s *Store) SetCatalogCheckpoint(ctx context.Context, seq uint64) error {
	return s.st.Set(ctx, root+"catalog-checkpoint", []byte(strconv.FormatUint(seq, 10)))
}

func instKey(tenant, id string) string { return root + "inst:" + tenant + ":" + id }

// groupsPrefix starts the key of a tenant's groups set.
const groupsPrefix = root + "groups:"

func groupMember(g domain.Group) string { return strconv.Itoa(int(g.Wave)) + "|" + g.OSFamily }

func bucketKey(tenant string, g domain.Group, state typesv1.ComplianceState) string {
	return root + "bucket:" + tenant + ":" + strconv.Itoa(int(g.Wave)) + ":" + g.OSFamily + ":" + strconv.Itoa(int(state))
}

func familyKey(tenant, family string) string { return root + "family:" + tenant + ":" + family }

func missingKey(tenant, patch string) string { return root + "missing:" + tenant + ":" + patch }

func failedIndex(tenant string) string { return root + "failed-instances:" + tenant }

// Instance implements domain.Repository.
func (s *Store) Instance(ctx context.Context, tenant, id string) (domain.Instance, bool, error) {
	in := domain.Instance{Tenant: tenant, ID: id}
	b, found, err := s.st.Get(ctx, instKey(tenant, id))
	if err != nil {
		return domain.Instance{}, false, fmt.Errorf("read instance %s: %w", id, err)
	}
	if found {
		if err := decodeInstance(b, &in); err != nil {
			return domain.Instance{}, false, fmt.Errorf("decode instance %s: %w", id, err)
		}
	}
	return in, found, nil
}

// SaveInstance implements domain.Repository.
func (s *Store) SaveInstance(ctx context.Context, prev domain.Instance, prevFound bool, next domain.Instance) error {
	if err := s.saveIndexes(ctx, indexedOf(prev), prevFound, indexedOf(next)); err != nil {
		return err
	}
	// Last: once the record (with its sequence) is saved, the event counts as applied.
	return s.putInstance(ctx, next)
}

func (s *Store) putInstance(ctx context.Context, in domain.Instance) error {
	b, err := encodeInstance(in)
	if err == nil {
		err = s.st.Set(ctx, instKey(in.Tenant, in.ID), b)
	}
	if err != nil {
		return fmt.Errorf("save instance %s: %w", in.ID, err)
	}
	return nil
}

// indexMove is one member move of an instance's indexes: into (add) or out of a set.
type indexMove struct {
	add     bool
	key, id string
}

// hasFailed says whether an instance has FAILED patches (it is in the failed-instances index).
func hasFailed(in domain.Instance) bool {
	for _, p := range in.Patches {
		if p.State == typesv1.PatchState_PATCH_STATE_FAILED {
			return true
		}
	}
	return false
}

// indexed is what an instance's indexes follow: its coverage bucket (tenant, wave, family,
// state), its missing patches and whether it has FAILED ones. A unit keeps it, not a second
// copy of the whole record, for each instance it holds.
type indexed struct {
	tenant, id, family string
	wave               int32
	state              typesv1.ComplianceState
	missing            []string
	failed             bool
}

func indexedOf(in domain.Instance) indexed {
	return indexed{tenant: in.Tenant, id: in.ID, family: in.Family(), wave: in.Wave, state: in.State, missing: in.Missing, failed: hasFailed(in)}
}

// indexMoves calls move for each set move that takes the instance's indexes from prev (absent
// when !prevFound) to next: coverage bucket, group, OS family, missing patches, failed
// patches. The indexes are written with the records, atomically, so prev's are the ones in
// the store and only what changes moves. The moves of one instance touch each set once.
func indexMoves(prev indexed, prevFound bool, next indexed, move func(indexMove)) {
	g := domain.Group{Wave: next.wave, OSFamily: next.family}
	var prevMissing []string
	prevFailed := false
	if prevFound {
		pg := domain.Group{Wave: prev.wave, OSFamily: prev.family}
		if pg != g || prev.state != next.state || prev.tenant != next.tenant {
			move(indexMove{key: bucketKey(prev.tenant, pg, prev.state), id: prev.id})
			move(indexMove{add: true, key: bucketKey(next.tenant, g, next.state), id: next.id})
		}
		if pg != g {
			move(indexMove{add: true, key: groupsPrefix + next.tenant, id: groupMember(g)})
		}
		if prev.family != next.family {
			move(indexMove{key: familyKey(prev.tenant, prev.family), id: prev.id})
			move(indexMove{add: true, key: familyKey(next.tenant, next.family), id: next.id})
		}
		prevMissing = prev.missing
		prevFailed = prev.failed
	} else {
		move(indexMove{add: true, key: bucketKey(next.tenant, g, next.state), id: next.id})
		move(indexMove{add: true, key: groupsPrefix + next.tenant, id: groupMember(g)})
		move(indexMove{add: true, key: familyKey(next.tenant, next.family), id: next.id})
	}
	for _, p := range prevMissing {
		if !slices.Contains(next.missing, p) {
			move(indexMove{key: missingKey(next.tenant, p), id: next.id})
		}
	}
	for _, p := range next.missing {
		if !slices.Contains(prevMissing, p) {
			move(indexMove{add: true, key: missingKey(next.tenant, p), id: next.id})
		}
	}
	switch {
	case next.failed && !prevFailed:
		move(indexMove{add: true, key: failedIndex(next.tenant), id: next.id})
	case !next.failed && prevFailed:
		move(indexMove{key: failedIndex(next.tenant), id: next.id})
	}
}

// saveIndexes moves the instance between the coverage buckets and indexes.
func (s *Store) saveIndexes(ctx context.Context, prev indexed, prevFound bool, next indexed) error {
	var err error
	indexMoves(prev, prevFound, next, func(m indexMove) {
		if err != nil {
			return
		}
		if m.add {
			_, err = s.st.SAdd(ctx, m.key, m.id)
		} else {
			_, err = s.st.SRem(ctx, m.key, m.id)
		}
	})
	if err != nil {
		return fmt.Errorf("index instance %s: %w", next.id, err)
	}
	return nil
}

// Groups implements domain.Repository.
func (s *Store) Groups(ctx context.Context, tenant string) ([]domain.Group, error) {
	ms, err := s.st.SMembers(ctx, root+"groups:"+tenant)
	if err != nil {
		return nil, fmt.Errorf("list groups of %s: %w", tenant, err)
	}
	return decodeGroups(tenant, ms)
}

// decodeGroups decodes the members of a tenant's groups set.
func decodeGroups(tenant string, ms []string) ([]domain.Group, error) {
	out := make([]domain.Group, 0, len(ms))
	for _, m := range ms {
		w, f, ok := strings.Cut(m, "|")
		n, err := strconv.ParseInt(w, 10, 32)
		if !ok || err != nil {
			return nil, fmt.Errorf("decode group %q of %s", m, tenant)
		}
		out = append(out, domain.Group{Wave: int32(n), OSFamily: f})
	}
	return out, nil
}

// Count implements domain.Repository.
func (s *Store) Count(ctx context.Context, tenant string, g domain.Group, state typesv1.ComplianceState) (int, error) {
	n, err := s.st.SCard(ctx, bucketKey(tenant, g, state))
	if err != nil {
		return 0, fmt.Errorf("count wave %d %s: %w", g.Wave, g.OSFamily, err)
	}
	return n, nil
}

var _ domain.Counter = (*Store)(nil)

// Counts implements domain.Counter: the groups and the buckets of the groups seen last time,
// in one round trip; then the buckets of new groups, if any.
func (s *Store) Counts(ctx context.Context, tenant string, states []typesv1.ComplianceState) ([]domain.GroupCounts, error) {
	s.groupsMu.Lock()
	known := s.groups[tenant]
	s.groupsMu.Unlock()
	keys := func(groups []domain.Group) []string {
		out := make([]string, 0, len(groups)*len(states))
		for _, g := range groups {
			for _, st := range states {
				out = append(out, bucketKey(tenant, g, st))
			}
		}
		return out
	}
	var members []string
	var ns []int
	var err error
	if mc, ok := s.st.(store.MultiCarder); ok {
		members, ns, err = mc.SMembersSCardMany(ctx, root+"groups:"+tenant, keys(known))
	} else {
		known = nil
		members, err = s.st.SMembers(ctx, root+"groups:"+tenant)
	}
	if err != nil {
		return nil, fmt.Errorf("count the coverage of %s: %w", tenant, err)
	}
	groups, err := decodeGroups(tenant, members)
	if err != nil {
		return nil, err
	}
	counted := make(map[domain.Group][]int, len(known))
	for i, g := range known {
		counted[g] = ns[i*len(states) : (i+1)*len(states)]
	}
	var fresh []domain.Group
	for _, g := range groups {
		if _, ok := counted[g]; !ok {
			fresh = append(fresh, g)
		}
	}
	if len(fresh) > 0 {
		ks := keys(fresh)
		more := make([]int, len(ks))
		if mc, ok := s.st.(store.MultiCarder); ok {
			more, err = mc.SCardMany(ctx, ks)
		} else {
			for i, k := range ks {
				if more[i], err = s.st.SCard(ctx, k); err != nil {
					break
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("count the coverage of %s: %w", tenant, err)
		}
		for i, g := range fresh {
			counted[g] = more[i*len(states) : (i+1)*len(states)]
		}
	}
	s.groupsMu.Lock()
	if s.groups == nil {
		s.groups = map[string][]domain.Group{}
	}
	s.groups[tenant] = groups
	s.groupsMu.Unlock()
	out := make([]domain.GroupCounts, len(groups))
	for i, g := range groups {
		out[i] = domain.GroupCounts{Group: g, Counts: counted[g]}
	}
	return out, nil
}

// Members implements domain.Repository.
func (s *Store) Members(ctx context.Context, tenant string, g domain.Group, state typesv1.ComplianceState) ([]string, error) {
	return s.st.SMembers(ctx, bucketKey(tenant, g, state))
}

// FamilyInstances implements domain.Repository.
func (s *Store) FamilyInstances(ctx context.Context, tenant, family string) ([]string, error) {
	return s.st.SMembers(ctx, familyKey(tenant, family))
}

// FailedInstances implements domain.Repository.
func (s *Store) FailedInstances(ctx context.Context, tenant string) ([]string, error) {
	return s.st.SMembers(ctx, failedIndex(tenant))
}

// MissingCount implements domain.Repository.
func (s *Store) MissingCount(ctx context.Context, tenant, patch string) (int, error) {
	return s.st.SCard(ctx, missingKey(tenant, patch))
}

// Baseline implements domain.Repository.
func (s *Store) Baseline(ctx context.Context, id string) (domain.Baseline, bool, error) {
	var b domain.Baseline
	found, err := s.getJSON(ctx, root+"baseline:"+id, &b)
	return b, found, err
}

// PutBaseline implements domain.Repository.
func (s *Store) PutBaseline(ctx context.Context, b domain.Baseline) error {
	return s.setJSON(ctx, root+"baseline:"+b.ID, b)
}

// CertifiedAt implements domain.Repository.
func (s *Store) CertifiedAt(ctx context.Context, patch string) (time.Time, bool, error) {
	v, found, err := s.st.Get(ctx, root+"certified:"+patch)
	if err != nil || !found {
		return time.Time{}, false, err
	}
	t, err := time.Parse(time.RFC3339Nano, string(v))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("decode certification time of %s: %w", patch, err)
	}
	return t, true, nil
}

// PutCertifiedAt implements domain.Repository.
func (s *Store) PutCertifiedAt(ctx context.Context, patch string, at time.Time) error {
	return s.st.Set(ctx, root+"certified:"+patch, []byte(at.UTC().Format(time.RFC3339Nano)))
}

// Approval implements domain.Repository.
func (s *Store) Approval(ctx context.Context, tenant, family string) (domain.Approval, bool, error) {
	var a domain.Approval
	found, err := s.getJSON(ctx, root+"approved:"+tenant+":"+family, &a)
	return a, found, err
}

// PutApproval implements domain.Repository.
func (s *Store) PutApproval(ctx context.Context, tenant string, a domain.Approval) error {
	return s.setJSON(ctx, root+"approved:"+tenant+":"+a.OSFamily, a)
}

// Cycle implements domain.Repository.
func (s *Store) Cycle(ctx context.Context, tenant string) (domain.Cycle, bool, error) {
	var c domain.Cycle
	found, err := s.getJSON(ctx, root+"cycle:"+tenant, &c)
	return c, found, err
}

// PutCycle implements domain.Repository.
func (s *Store) PutCycle(ctx context.Context, tenant string, c domain.Cycle) error {
	return s.setJSON(ctx, root+"cycle:"+tenant, c)
}

// LastDay implements domain.Repository.
func (s *Store) LastDay(ctx context.Context, tenant string) (string, error) {
	v, _, err := s.st.Get(ctx, root+"last-day:"+tenant)
	return string(v), err
}

// SetLastDay implements domain.Repository.
func (s *Store) SetLastDay(ctx context.Context, tenant, day string) error {
	return s.st.Set(ctx, root+"last-day:"+tenant, []byte(day))
}

// Marker implements domain.Repository.
func (s *Store) Marker(ctx context.Context, name string) (string, error) {
	v, _, err := s.st.Get(ctx, root+"marker:"+name)
	return string(v), err
}

// SetMarker implements domain.Repository.
func (s *Store) SetMarker(ctx context.Context, name, value string) error {
	return s.st.Set(ctx, root+"marker:"+name, []byte(value))
}

func historyPrefix(tenant, kind string) string { return root + "history:" + tenant + ":" + kind + ":" }

// PutSnapshot implements domain.Repository.
func (s *Store) PutSnapshot(ctx context.Context, tenant string, snap domain.Snapshot) error {
	return s.setJSON(ctx, historyPrefix(tenant, snap.Kind)+snap.Key, snap)
}

// Snapshots implements domain.Repository.
func (s *Store) Snapshots(ctx context.Context, tenant, kind string) ([]domain.Snapshot, error) {
	keys, err := s.st.Keys(ctx, historyPrefix(tenant, kind))
	if err != nil {
		return nil, fmt.Errorf("list history of %s: %w", tenant, err)
	}
	out := make([]domain.Snapshot, 0, len(keys))
	for _, k := range keys {
		var snap domain.Snapshot
		if found, err := s.getJSON(ctx, k, &snap); err != nil {
			return nil, err
		} else if found {
			out = append(out, snap)
		}
	}
	slices.SortFunc(out, func(a, b domain.Snapshot) int { return strings.Compare(a.Key, b.Key) })
	return out, nil
}

func runKey(tenant, runID string) string  { return root + "run:" + tenant + ":" + runID }
func jobsKey(tenant, runID string) string { return root + "jobs:" + tenant + ":" + runID }

// Run implements domain.Repository.
func (s *Store) Run(ctx context.Context, tenant, runID string) (domain.Run, bool, error) {
	var r domain.Run
	found, err := s.getJSON(ctx, runKey(tenant, runID), &r)
	return r, found, err
}

// PutRun implements domain.Repository.
func (s *Store) PutRun(ctx context.Context, tenant string, r domain.Run) error {
	return s.setJSON(ctx, runKey(tenant, r.RunID), r)
}

// SetJobStates implements domain.Repository.
func (s *Store) SetJobStates(ctx context.Context, tenant, runID string, states map[string]typesv1.JobState) error {
	if len(states) == 0 {
		return nil
	}
	fields := make(map[string][]byte, len(states))
	for id, st := range states {
		fields[id] = jobStateValue(st)
	}
	return s.st.HSet(ctx, jobsKey(tenant, runID), fields)
}

// jobStateValues are the stored values of the job states (a number each), by state.
var jobStateValues = func() [][]byte {
	var out [][]byte
	for n := range typesv1.JobState_name {
		if int(n) >= len(out) {
			out = append(out, make([][]byte, int(n)+1-len(out))...)
		}
		out[n] = []byte(strconv.Itoa(int(n)))
	}
	return out
}()

func jobStateValue(st typesv1.JobState) []byte {
	if st >= 0 && int(st) < len(jobStateValues) && jobStateValues[st] != nil {
		return jobStateValues[st]
	}
	return []byte(strconv.Itoa(int(st)))
}

// JobStates implements domain.Repository.
func (s *Store) JobStates(ctx context.Context, tenant, runID string) (map[string]typesv1.JobState, error) {
	h, err := s.st.HGetAll(ctx, jobsKey(tenant, runID))
	if err != nil {
		return nil, err
	}
	out := make(map[string]typesv1.JobState, len(h))
	for id, v := range h {
		n, err := strconv.Atoi(string(v))
		if err != nil {
			return nil, fmt.Errorf("decode job state of %s: %w", id, err)
		}
		out[id] = typesv1.JobState(n)
	}
	return out, nil
}

// unit is a unit of work: the repository over a store.Batch of the store. It folds a batch in
// memory: it keeps the instances it read or saved decoded, moves each saved one's indexes
// (coverage bucket, OS family, missing patches, failed patches) once, from the record as the
// batch found it to the last one saved, and encodes each saved record once, at the commit. A
// read of the indexes inside the batch (an approval lists its family, a snapshot counts the
// buckets) moves the pending ones first, so it sees every save before it.
type unit struct {
	*Store
	b     *store.Batch
	insts map[instRef]*cached
	// touched are the instances the unit read or saved (used), in the order it first did:
	// what writes encodes and hands on, without walking the instances handed to it and left
	// alone.
	touched []*cached
	// batch is how many instances the batch names (Prefetch): the size of the maps that
	// grow with it.
	batch int
	// unindexed counts the saved instances whose indexes are not moved yet, dirty those whose
	// record is not written yet.
	unindexed, dirty int
	// jobs are the job states set per run's hash key, written at the commit (or at the next
	// read of them) as one HSET per run.
	jobs     map[string]map[string][]byte
	jobCount int
	// lastJobs are the job states of the run SetJobState set one of last (a batch's events
	// mostly follow one run): the next one of that run builds no key and looks up no run.
	lastJobs                    map[string][]byte
	lastJobsTenant, lastJobsRun string
}

// recordRoom is the room writes leaves for a record in its buffer before it starts a new one
// (a larger record just grows it).
const recordRoom = 1024

// instRef names an instance in a unit (without building its key).
type instRef struct{ tenant, id string }

type cached struct {
	ref instRef
	// in is the instance as of the batch; found: it exists.
	in    domain.Instance
	found bool
	// indexed is the instance as the batch's indexes have it (as read, or as last moved);
	// indexedFound: it was in them.
	indexed      indexed
	indexedFound bool
	// dirty: in is not written yet; pending: its indexes lag behind (indexed is not in).
	dirty, pending bool
	// used: the unit read or saved it (the instances a unit hands to the next are those).
	used bool
}

// Instance implements domain.Repository from the decoded instances.
func (u *unit) Instance(ctx context.Context, tenant, id string) (domain.Instance, bool, error) {
	k := instRef{tenant, id}
	if c, ok := u.insts[k]; ok {
		u.use(c)
		return c.in, c.found, nil
	}
	in, found, err := u.Store.Instance(ctx, tenant, id)
	if err != nil {
		return in, found, err
	}
	c := &cached{ref: k, in: in, found: found, indexedFound: found}
	if found {
		c.indexed = indexedOf(in)
	}
	u.insts[k] = c
	u.use(c)
	return in, found, nil
}

// use marks c as read or saved by the unit.
func (u *unit) use(c *cached) {
	if !c.used {
		c.used = true
		u.touched = append(u.touched, c)
	}
}

// SaveInstance implements domain.Repository: the record and its indexes at the commit (or at
// the next read of the indexes), from what the batch found.
func (u *unit) SaveInstance(_ context.Context, prev domain.Instance, prevFound bool, next domain.Instance) error {
	k := instRef{next.Tenant, next.ID}
	c, ok := u.insts[k]
	if !ok {
		c = &cached{ref: k, indexedFound: prevFound}
		if prevFound {
			c.indexed = indexedOf(prev)
		}
		u.insts[k] = c
	}
	u.use(c)
	if !c.dirty {
		c.dirty = true
		u.dirty++
	}
	c.in, c.found = next, true
	if !c.pending {
		c.pending = true
		u.unindexed++
	}
	return nil
}

// moveIndexes moves the pending instances' indexes into the batch.
func (u *unit) moveIndexes(ctx context.Context) error {
	if u.unindexed == 0 {
		return nil
	}
	for _, c := range u.touched {
		if !c.pending {
			continue
		}
		next := indexedOf(c.in)
		if err := u.saveIndexes(ctx, c.indexed, c.indexedFound, next); err != nil {
			return err
		}
		c.indexed, c.indexedFound, c.pending = next, true, false
	}
	u.unindexed = 0
	return nil
}

// writes returns the saved instances' records and index moves as the batch's last writes: a
// record per instance (one MSET on Redis) and, per set, one SREM and one SADD of every
// instance moving out of and into it. One instance's moves touch a set once and two instances'
// moves never name the same member, so a set's removals and additions do not depend on their
// order. Only the instances the unit read or saved can have anything to write (those handed
// to it and left alone were written by the unit before). What the unit does with its decoded
// instances afterwards is after's.
func (u *unit) writes(after afterWrites) []store.Write {
	type setMoves struct{ add, rem []string }
	sets := make(map[string]*setMoves, 64)
	order := make([]string, 0, 64)
	move := func(m indexMove) {
		sm := sets[m.key]
		if sm == nil {
			sm = &setMoves{}
			sets[m.key] = sm
			order = append(order, m.key)
		}
		switch {
		case !m.add:
			sm.rem = append(sm.rem, m.id)
		case len(sm.add) > 0 && sm.add[len(sm.add)-1] == m.id:
			// the same group again (each instance of a group adds it)
		default:
			sm.add = append(sm.add, m.id)
		}
	}
	ws := make([]store.Write, 0, u.dirty+len(u.jobs)+16)
	// The records are encoded one after the other into shared buffers (each record its own
	// piece, capped): a few allocations per batch rather than several per record.
	var buf []byte
	for _, c := range u.touched {
		if c.pending {
			next := indexedOf(c.in)
			indexMoves(c.indexed, c.indexedFound, next, move)
			c.indexed, c.indexedFound = next, true
		}
		if c.dirty {
			if cap(buf)-len(buf) < recordRoom {
				buf = make([]byte, 0, max(64*1024, recordRoom))
			}
			start := len(buf)
			buf = appendInstance(buf, c.in)
			ws = append(ws, store.SetW(instKey(c.in.Tenant, c.in.ID), buf[start:len(buf):len(buf)]))
		}
	}
	for k, fields := range u.jobs {
		ws = append(ws, store.HSetW(k, fields))
	}
	u.jobs, u.jobCount, u.lastJobs = nil, 0, nil
	for _, k := range order {
		sm := sets[k]
		if len(sm.rem) > 0 {
			ws = append(ws, store.SRemW(k, sm.rem...))
		}
		if len(sm.add) > 0 {
			if strings.HasPrefix(k, groupsPrefix) {
				// Only the groups set has members that several instances add; an instance
				// moves into any other set once.
				slices.Sort(sm.add)
				sm.add = slices.Compact(sm.add)
			}
			ws = append(ws, store.SAddW(k, sm.add...))
		}
	}
	switch after {
	case keepInstances, handInstances:
		for _, c := range u.touched {
			c.dirty, c.pending = false, false
		}
		if after == handInstances {
			// Only what the unit used goes on (what was handed to it and left alone is
			// dropped, so the map never outgrows two batches).
			next := make(map[instRef]*cached, len(u.touched))
			for _, c := range u.touched {
				c.used = false
				next[c.ref] = c
			}
			u.insts, u.touched = next, nil
		}
	default:
		clear(u.insts)
		u.touched = nil
	}
	u.unindexed, u.dirty = 0, 0
	return ws
}

// afterWrites says what writes does with the unit's decoded instances once it has encoded
// them.
type afterWrites int

const (
	// forgetInstances: the unit is done (a Commit).
	forgetInstances afterWrites = iota
	// keepInstances: the unit keeps them as written and goes on (a Flush).
	keepInstances
	// handInstances: the unit is done, and hands those it read or saved, as written, to the
	// unit begun after its commit (a Start): their records are what that unit's view of the
	// commit answers, so it does not read and decode them again.
	handInstances
)

// SetJobState sets one job's state, as SetJobStates does (an event moves one job: no map to
// build).
func (u *unit) SetJobState(tenant, runID, instanceID string, st typesv1.JobState) {
	fields := u.lastJobs
	if fields == nil || u.lastJobsTenant != tenant || u.lastJobsRun != runID {
		k := jobsKey(tenant, runID)
		fields = u.jobs[k]
		if fields == nil {
			fields = make(map[string][]byte, u.batch) // a run's jobs in the batch: at most one per instance it names
			if u.jobs == nil {
				u.jobs = map[string]map[string][]byte{}
			}
			u.jobs[k] = fields
		}
		u.lastJobs, u.lastJobsTenant, u.lastJobsRun = fields, tenant, runID
	}
	n := len(fields)
	fields[instanceID] = jobStateValue(st)
	u.jobCount += len(fields) - n
}

// SetJobStates implements domain.Repository: the states wait in the unit.
func (u *unit) SetJobStates(_ context.Context, tenant, runID string, states map[string]typesv1.JobState) error {
	if len(states) == 0 {
		return nil
	}
	k := jobsKey(tenant, runID)
	fields := u.jobs[k]
	if fields == nil {
		fields = make(map[string][]byte, len(states))
		if u.jobs == nil {
			u.jobs = map[string]map[string][]byte{}
		}
		u.jobs[k] = fields
	}
	for id, st := range states {
		if _, ok := fields[id]; !ok {
			u.jobCount++
		}
		fields[id] = jobStateValue(st)
	}
	return nil
}

// JobStates implements domain.Repository with the unit's job states.
func (u *unit) JobStates(ctx context.Context, tenant, runID string) (map[string]typesv1.JobState, error) {
	k := jobsKey(tenant, runID)
	if fields := u.jobs[k]; len(fields) > 0 {
		if err := u.b.HSet(ctx, k, fields); err != nil {
			return nil, err
		}
		u.jobCount -= len(fields)
		delete(u.jobs, k)
		u.lastJobs = nil
	}
	return u.Store.JobStates(ctx, tenant, runID)
}

// Groups implements domain.Repository with the batch's saves.
func (u *unit) Groups(ctx context.Context, tenant string) ([]domain.Group, error) {
	if err := u.moveIndexes(ctx); err != nil {
		return nil, err
	}
	return u.Store.Groups(ctx, tenant)
}

// Count implements domain.Repository with the batch's saves.
func (u *unit) Count(ctx context.Context, tenant string, g domain.Group, state typesv1.ComplianceState) (int, error) {
	if err := u.moveIndexes(ctx); err != nil {
		return 0, err
	}
	return u.Store.Count(ctx, tenant, g, state)
}

// Counts implements domain.Counter with the batch's saves.
func (u *unit) Counts(ctx context.Context, tenant string, states []typesv1.ComplianceState) ([]domain.GroupCounts, error) {
	if err := u.moveIndexes(ctx); err != nil {
		return nil, err
	}
	return u.Store.Counts(ctx, tenant, states)
}

// Members implements domain.Repository with the batch's saves.
func (u *unit) Members(ctx context.Context, tenant string, g domain.Group, state typesv1.ComplianceState) ([]string, error) {
	if err := u.moveIndexes(ctx); err != nil {
		return nil, err
	}
	return u.Store.Members(ctx, tenant, g, state)
}

// FamilyInstances implements domain.Repository with the batch's saves.
func (u *unit) FamilyInstances(ctx context.Context, tenant, family string) ([]string, error) {
	if err := u.moveIndexes(ctx); err != nil {
		return nil, err
	}
	return u.Store.FamilyInstances(ctx, tenant, family)
}

// FailedInstances implements domain.Repository with the batch's saves.
func (u *unit) FailedInstances(ctx context.Context, tenant string) ([]string, error) {
	if err := u.moveIndexes(ctx); err != nil {
		return nil, err
	}
	return u.Store.FailedInstances(ctx, tenant)
}

// MissingCount implements domain.Repository with the batch's saves.
func (u *unit) MissingCount(ctx context.Context, tenant, patch string) (int, error) {
	if err := u.moveIndexes(ctx); err != nil {
		return 0, err
	}
	return u.Store.MissingCount(ctx, tenant, patch)
}

var _ domain.UnitOfWorkStarter = (*Store)(nil)

// Begin implements domain.UnitOfWorkStarter: the store must implement store.Updater.
func (s *Store) Begin() (domain.UnitOfWork, error) {
	b, err := store.NewBatch(s.st)
	if err != nil {
		return nil, err
	}
	return &unit{Store: New(b), b: b, insts: map[instRef]*cached{}}, nil
}

// BeginAfter implements domain.UnitOfWorkStarter: c must be what a unit's Start returned.
func (s *Store) BeginAfter(c domain.Commit) (domain.UnitOfWork, error) {
	f, ok := c.(*commit)
	if !ok {
		return nil, fmt.Errorf("begin a unit of work after %T: not a commit of this store", c)
	}
	b := store.NewBatchAfter(f.Flight)
	return &unit{Store: New(b), b: b, insts: f.take()}, nil
}

// Prefetch implements domain.UnitOfWork.
func (u *unit) Prefetch(ctx context.Context, refs []domain.InstanceRef) error {
	u.batch = len(refs)
	if len(u.insts) == 0 {
		u.insts = make(map[instRef]*cached, len(refs)) // the batch's instances, without regrowing
	}
	keys := make([]string, 0, len(refs))
	for _, r := range refs {
		if _, ok := u.insts[instRef{r.Tenant, r.ID}]; ok {
			continue // decoded already (handed on by the unit before)
		}
		keys = append(keys, instKey(r.Tenant, r.ID))
	}
	return u.b.Prefetch(ctx, keys)
}

// Pending implements domain.UnitOfWork: the batch's writes, the records that wait (each with
// its few index moves) and the job states.
func (u *unit) Pending() int { return u.b.Pending() + u.dirty + u.jobCount }

func checkpointWant(prev uint64) []byte {
	if prev == 0 {
		return nil
	}
	return []byte(strconv.FormatUint(prev, 10))
}

// Flush implements domain.UnitOfWork: the unit keeps what it read and wrote, so the events
// after the flush find their instances decoded.
func (u *unit) Flush(ctx context.Context, prev uint64) (bool, error) {
	return u.b.Flush(ctx, root+"checkpoint", checkpointWant(prev), u.writes(keepInstances)...)
}

// Commit implements domain.UnitOfWork.
func (u *unit) Commit(ctx context.Context, prev, seq uint64) (bool, error) {
	ws := append(u.writes(forgetInstances), store.SetW(root+"checkpoint", []byte(strconv.FormatUint(seq, 10))))
	return u.b.Commit(ctx, root+"checkpoint", checkpointWant(prev), ws...)
}

// Start implements domain.UnitOfWork with store.Batch.Start: the commit it returns is what
// BeginAfter takes.
func (u *unit) Start(ctx context.Context, prev, seq uint64) domain.Commit {
	ws := append(u.writes(handInstances), store.SetW(root+"checkpoint", []byte(strconv.FormatUint(seq, 10))))
	c := &commit{Flight: u.b.Start(ctx, root+"checkpoint", checkpointWant(prev), ws...), insts: u.insts}
	u.insts = nil
	return c
}

// commit is a unit's commit under way, with the instances the unit read or saved, decoded as
// it wrote them, for the unit begun after it (BeginAfter) to start from.
type commit struct {
	*store.Flight
	mu    sync.Mutex
	insts map[instRef]*cached
}

// take returns the instances, once: a second unit begun after the same commit (the first was
// given up) reads them through the commit's view, as the first unit may have changed them.
func (c *commit) take() map[instRef]*cached {
	c.mu.Lock()
	defer c.mu.Unlock()
	insts := c.insts
	c.insts = nil
	if insts == nil {
		insts = map[instRef]*cached{}
	}
	return insts
}
