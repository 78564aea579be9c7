package simfleet

import (
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/patchwave/patchwave/libs/provider"
)

// stateVersion is the version of the persisted JSON layout.
const stateVersion = 1

// state is everything the fleet knows; it is what StatePath holds.
type state struct {
	Version       int                     `json:"version"`
	Seq           uint64                  `json:"seq"`
	Instances     map[string]*instanceRec `json:"instances"` // by instKey
	Snapshots     map[string]*snapshotRec `json:"snapshots"` // by snapshot id
	Restores      map[string]*restoreRec  `json:"restores"`  // by restore id
	Installations map[string]*installRec  `json:"installations"`
	Stats         Stats                   `json:"stats"`
}

func newState() *state {
	return &state{
		Version:       stateVersion,
		Instances:     map[string]*instanceRec{},
		Snapshots:     map[string]*snapshotRec{},
		Restores:      map[string]*restoreRec{},
		Installations: map[string]*installRec{},
	}
}

type instanceRec struct {
	Instance      provider.Instance `json:"instance"`
	Installed     map[string]bool   `json:"installed,omitempty"`
	RebootPending bool              `json:"rebootPending,omitempty"`
	Reboots       int               `json:"reboots,omitempty"`
	Health        *provider.Health  `json:"health,omitempty"`
}

func (r *instanceRec) installed() []string {
	if len(r.Installed) == 0 {
		return nil
	}
	return slices.Sorted(maps.Keys(r.Installed))
}

// Each asynchronous record keeps its final outcome (decided when it starts) and when it is due;
// Done says the outcome has been applied. Until then its view shows it pending.

type snapshotRec struct {
	Final   provider.Snapshot `json:"final"`
	Patches []string          `json:"patches,omitempty"` // installed on the instance when taken
	DueAt   time.Time         `json:"dueAt"`
	Seq     uint64            `json:"seq"`
	Done    bool              `json:"done"`
}

func (r *snapshotRec) view() provider.Snapshot {
	s := cloneSnapshot(r.Final)
	if !r.Done {
		s.State, s.Error = provider.SnapshotPending, ""
	}
	return s
}

type restoreRec struct {
	Final   provider.Restore `json:"final"`
	Key     string           `json:"key"`
	Patches []string         `json:"patches,omitempty"` // the snapshot's patches
	DueAt   time.Time        `json:"dueAt"`
	Seq     uint64           `json:"seq"`
	Done    bool             `json:"done"`
}

func (r *restoreRec) view() provider.Restore {
	s := r.Final
	if !r.Done {
		s.State, s.Error = provider.RestoreInProgress, ""
	}
	return s
}

type installRec struct {
	Final    provider.Installation `json:"final"`
	Patches  []string              `json:"patches,omitempty"`
	Rebooted bool                  `json:"rebooted,omitempty"`
	DueAt    time.Time             `json:"dueAt"`
	Seq      uint64                `json:"seq"`
	Done     bool                  `json:"done"`
}

func (r *installRec) view() provider.Installation {
	in := cloneInstallation(r.Final)
	if !r.Done {
		in.State, in.Results, in.RebootPending, in.Error, in.FinishedAt = provider.InstallInProgress, nil, false, "", time.Time{}
	}
	return in
}

type bizKey struct{ tenant, a, b string }

type pendingKind int

const (
	pendingSnapshot pendingKind = iota
	pendingRestore
	pendingInstall
)

type pendingRef struct {
	kind  pendingKind
	id    string
	dueAt time.Time
	seq   uint64
}

func instKey(tenant, id string) string { return tenant + "/" + id }

// reindex rebuilds the lookup indexes and the pending list from the state.
func (f *Fleet) reindex() {
	f.snapByKey = make(map[bizKey]string, len(f.st.Snapshots))
	f.installByKey = make(map[bizKey]string, len(f.st.Installations))
	f.restoreByKey = make(map[bizKey]string, len(f.st.Restores))
	f.pending = nil
	for id, r := range f.st.Snapshots {
		f.snapByKey[bizKey{r.Final.Tenant, r.Final.RunID, r.Final.InstanceID}] = id
		if !r.Done {
			f.pending = append(f.pending, pendingRef{pendingSnapshot, id, r.DueAt, r.Seq})
		}
	}
	for id, r := range f.st.Installations {
		f.installByKey[bizKey{r.Final.Tenant, r.Final.RunID, r.Final.InstanceID}] = id
		if !r.Done {
			f.pending = append(f.pending, pendingRef{pendingInstall, id, r.DueAt, r.Seq})
		}
	}
	for id, r := range f.st.Restores {
		f.restoreByKey[bizKey{r.Final.Tenant, r.Key, ""}] = id
		if !r.Done {
			f.pending = append(f.pending, pendingRef{pendingRestore, id, r.DueAt, r.Seq})
		}
	}
}

// now reads the clock, in UTC and without a monotonic reading, so that times survive a JSON
// round trip unchanged.
func (f *Fleet) now() time.Time { return f.cfg.Clock().UTC().Round(0) }

// nextID returns a new id with the prefix, in the style of AWS ids.
func (f *Fleet) nextID(prefix string) (string, uint64) {
	f.st.Seq++
	return fmt.Sprintf("%s-%017x", prefix, f.st.Seq), f.st.Seq
}

// settle applies the outcome of every pending operation that is due, in the order they became
// due. It needs f.mu. Settled state is not persisted here: it follows from the persisted state
// and the clock, and the next mutation writes it.
func (f *Fleet) settle() {
	if len(f.pending) == 0 {
		return
	}
	now := f.now()
	var due, rest []pendingRef
	for _, p := range f.pending {
		if now.Before(p.dueAt) {
			rest = append(rest, p)
		} else {
			due = append(due, p)
		}
	}
	if len(due) == 0 {
		return
	}
	f.pending = rest
	slices.SortFunc(due, func(a, b pendingRef) int {
		return cmp.Or(a.dueAt.Compare(b.dueAt), cmp.Compare(a.seq, b.seq))
	})
	for _, p := range due {
		switch p.kind {
		case pendingSnapshot:
			if r := f.st.Snapshots[p.id]; r != nil {
				r.Done = true
			}
		case pendingRestore:
			if r := f.st.Restores[p.id]; r != nil {
				r.Done = true
				f.applyRestore(r)
			}
		case pendingInstall:
			if r := f.st.Installations[p.id]; r != nil {
				r.Done = true
				f.applyInstall(r)
			}
		}
	}
}

func (f *Fleet) applyInstall(r *installRec) {
	in := f.st.Instances[instKey(r.Final.Tenant, r.Final.InstanceID)]
	if in == nil || r.Final.State != provider.InstallSucceeded {
		return
	}
	if in.Installed == nil {
		in.Installed = map[string]bool{}
	}
	for _, p := range r.Patches {
		in.Installed[p] = true
	}
	switch {
	case r.Rebooted:
		in.Reboots++
		in.RebootPending = false
		f.st.Stats.Reboots++
	case r.Final.RebootPending:
		in.RebootPending = true
	}
}

func (f *Fleet) applyRestore(r *restoreRec) {
	in := f.st.Instances[instKey(r.Final.Tenant, r.Final.InstanceID)]
	if in == nil || r.Final.State != provider.RestoreSucceeded {
		return
	}
	in.Installed = nil
	for _, p := range r.Patches {
		if in.Installed == nil {
			in.Installed = map[string]bool{}
		}
		in.Installed[p] = true
	}
	in.RebootPending = false
	if len(in.Instance.VolumeIDs) > 0 {
		// As on AWS, the root volume is replaced by a new volume made from the snapshot.
		in.Instance.VolumeIDs[0] = "vol-" + f.hashHex(17, "restore-volume", r.Final.ID)
	}
}

// save writes the state to StatePath, if set, atomically. It needs f.mu.
func (f *Fleet) save() error {
	if f.cfg.StatePath == "" {
		return nil
	}
	data, err := json.Marshal(f.st)
	if err != nil {
		return fmt.Errorf("save simfleet state: %w", err)
	}
	if err := writeFileAtomic(f.cfg.StatePath, data); err != nil {
		return fmt.Errorf("save simfleet state: %w", err)
	}
	return nil
}

// writeFileAtomic replaces path with data through a temporary file and a rename, so a reader or a
// restarted process sees the old or the new state, never half of one. It does not fsync: the
// simulation guards against process restarts, not power loss, and stays fast.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// loadState reads a persisted state; nil, nil when the file does not exist.
func loadState(path string) (*state, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load simfleet state: %w", err)
	}
	st := newState()
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("load simfleet state %s: %w", path, err)
	}
	if st.Version != stateVersion {
		return nil, fmt.Errorf("load simfleet state %s: version %d, want %d", path, st.Version, stateVersion)
	}
	// A file holding null maps decodes them as nil; the fleet writes into them.
	if st.Instances == nil {
		st.Instances = map[string]*instanceRec{}
	}
	if st.Snapshots == nil {
		st.Snapshots = map[string]*snapshotRec{}
	}
	if st.Restores == nil {
		st.Restores = map[string]*restoreRec{}
	}
	if st.Installations == nil {
		st.Installations = map[string]*installRec{}
	}
	return st, nil
}

// hash digests the seed and the parts, each length-prefixed so that parts never run together.
func (f *Fleet) hash(parts ...string) [sha256.Size]byte {
	h := sha256.New()
	var b [binary.MaxVarintLen64]byte
	h.Write(binary.BigEndian.AppendUint64(b[:0], uint64(f.cfg.Seed)))
	for _, p := range parts {
		h.Write(binary.AppendUvarint(b[:0], uint64(len(p))))
		h.Write([]byte(p))
	}
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	return sum
}

// roll maps the parts to a number uniform in [0, 1): "fails" is roll(...) < rate, so rate 0 never
// fails and rate 1 always does.
func (f *Fleet) roll(parts ...string) float64 {
	sum := f.hash(parts...)
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53)
}

// pick maps the parts to an index in [0, n).
func (f *Fleet) pick(n int, parts ...string) int {
	sum := f.hash(append(slices.Clip(parts), "pick")...)
	return int(binary.BigEndian.Uint64(sum[:8]) % uint64(n))
}

func (f *Fleet) hashHex(n int, parts ...string) string {
	sum := f.hash(parts...)
	return hex.EncodeToString(sum[:])[:n]
}

func newInstance(tenant string, s InstanceSpec) *instanceRec {
	in := provider.Instance{
		ID:        s.ID,
		Tenant:    tenant,
		Name:      cmp.Or(s.Name, s.Tags["Name"], s.ID),
		OSFamily:  cmp.Or(s.OSFamily, DefaultOSFamily),
		State:     cmp.Or(s.State, provider.InstanceRunning),
		Tags:      maps.Clone(s.Tags),
		VolumeIDs: slices.Clone(s.VolumeIDs),
	}
	if in.Tags == nil {
		in.Tags = map[string]string{}
	}
	if len(in.VolumeIDs) == 0 {
		// Deterministic ids, so a re-populated fleet has the same volumes.
		sum := sha256.Sum256([]byte(instKey(tenant, s.ID)))
		h := hex.EncodeToString(sum[:])
		in.VolumeIDs = []string{"vol-" + h[:17], "vol-" + h[17:34]}
	}
	return &instanceRec{Instance: in}
}

func cloneInstance(in provider.Instance) provider.Instance {
	in.Tags = maps.Clone(in.Tags)
	in.VolumeIDs = slices.Clone(in.VolumeIDs)
	return in
}

func cloneSnapshot(s provider.Snapshot) provider.Snapshot {
	s.VolumeSnapshotIDs = slices.Clone(s.VolumeSnapshotIDs)
	s.Tags = maps.Clone(s.Tags)
	return s
}

func cloneInstallation(in provider.Installation) provider.Installation {
	in.Results = slices.Clone(in.Results)
	return in
}
