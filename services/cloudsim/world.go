package cloudsim

import (
	"maps"
	"sort"
	"time"
)

// world is the emulator's state: every entity, its indexes and the set of entities changed since
// the last flush to the mutation log. It is guarded by Server.mu; nothing in it runs on its own:
// transitions are computed from the clock when an entity is read (settle).
type world struct {
	seed   int64
	timing Timing
	meta   meta
	rates  rates // per-instance outcome rates: from the config, changed at run time by FaultSetRates

	accounts  map[string]*account
	sessions  map[string]*session // by access key id
	instances map[string]*instance
	snapshots map[string]*snapshot
	commands  map[string]*command
	invs      map[invKey]*invocation
	tasks     map[string]*rootTask
	buckets   map[string]*bucket
	objects   map[string]map[string]*object // bucket -> key -> object

	instByRegion map[regionKey]*ordSet[*instance]
	instByTag    map[tagKey]*ordSet[*instance] // tag key=value; Value "" with KeyOnly for tag-key
	snapByRegion map[regionKey]*ordSet[*snapshot]
	snapByTag    map[tagKey]*ordSet[*snapshot]
	cmdByRegion  map[regionKey]*ordSet[*command]
	invByInst    map[string]*ordSet[*invocation]
	invByRegion  map[regionKey]*ordSet[*invocation]
	taskByRegion map[regionKey]*ordSet[*rootTask]
	taskByInst   map[string]*ordSet[*rootTask]
	taskByToken  map[tokenKey]*rootTask

	dirty map[entityKey]any // value nil: deleted

	// frozen marks the per-read copy a view runs on (shared lock held): settle must not change
	// it, and sets stale when an instance has a transition due, so the read is run again
	// through update. The copy's dirty is nil: a mark on it panics rather than race.
	frozen, stale bool
}

type regionKey struct{ Account, Region string }

type tagKey struct {
	Account, Region, Key, Value string
	KeyOnly                     bool
}

type tokenKey struct{ Account, Region, Token string }

type invKey struct{ CommandID, InstanceID string }

type entityKey struct{ Kind, ID string }

// rates decide per-snapshot and per-(instance, patch) outcomes.
type rates struct {
	SnapshotError, PatchFailure, RebootRequired float64
}

// meta holds the counters and provider identity that must survive a restart.
type meta struct {
	Seq            uint64 `json:"seq"`
	Ord            uint64 `json:"ord"`
	ProviderKey    string `json:"provider_key"`
	ProviderSecret string `json:"provider_secret"`
}

// account is a tenant (or the provider) account with the role Patchwave assumes.
type account struct {
	ID               string   `json:"id"`
	Tenant           string   `json:"tenant"`
	Regions          []string `json:"regions"`
	RoleName         string   `json:"role_name"`
	ExternalID       string   `json:"external_id"`
	TrustedPrincipal string   `json:"trusted_principal"`
	Provider         bool     `json:"provider,omitempty"`
}

// session is a set of temporary credentials from AssumeRole.
type session struct {
	AccessKeyID string    `json:"access_key_id"`
	Secret      string    `json:"secret"`
	Token       string    `json:"token"`
	Account     string    `json:"account"`
	RoleName    string    `json:"role_name"`
	RoleID      string    `json:"role_id"`
	SessionName string    `json:"session_name"`
	Expiration  time.Time `json:"expiration"`
}

// instance is an EC2 instance with its volumes, SSM agent and patch states.
type instance struct {
	ID               string                  `json:"id"`
	Account          string                  `json:"account"`
	Region           string                  `json:"region"`
	AZ               string                  `json:"az"`
	Ord              uint64                  `json:"ord"`
	State            string                  `json:"state"`
	StateSince       time.Time               `json:"state_since"`
	LaunchTime       time.Time               `json:"launch_time"`
	Tags             map[string]string       `json:"tags,omitempty"`
	OS               string                  `json:"os"`
	InstanceType     string                  `json:"instance_type"`
	ImageID          string                  `json:"image_id"`
	PrivateIP        string                  `json:"private_ip"`
	Volumes          []*volume               `json:"volumes"`
	Agent            bool                    `json:"agent"`
	AgentDropped     bool                    `json:"agent_dropped,omitempty"`
	Impaired         bool                    `json:"impaired,omitempty"`
	BootedAt         time.Time               `json:"booted_at"`
	RebootUntil      time.Time               `json:"reboot_until,omitzero"`
	Patches          map[string]*patchRecord `json:"patches,omitempty"`
	LastOp           *patchOp                `json:"last_op,omitempty"`
	FailNextInstalls int                     `json:"fail_next_installs,omitempty"`
	FailNextSnaps    int                     `json:"fail_next_snapshots,omitempty"`
	// pending are the effects (install results, root volume replacements) not yet applied, in
	// time order; rebuilt from invocations and tasks at load.
	pending []effect
}

func (in *instance) order() uint64 { return in.Ord }

// volume is an EBS volume attached to an instance; the first is the root volume.
type volume struct {
	ID         string            `json:"id"`
	Device     string            `json:"device"`
	SizeGiB    int               `json:"size_gib"`
	Tags       map[string]string `json:"tags,omitempty"`
	AttachTime time.Time         `json:"attach_time"`
}

// patchRecord is the state of one patch on one instance (DescribeInstancePatches).
type patchRecord struct {
	ID             string    `json:"id"`
	Title          string    `json:"title"`
	KBID           string    `json:"kb_id,omitempty"`
	Classification string    `json:"classification"`
	Severity       string    `json:"severity"`
	State          string    `json:"state"`
	InstalledTime  time.Time `json:"installed_time,omitzero"`
}

// patchOp is the last patch operation of an instance (DescribeInstancePatchStates).
type patchOp struct {
	Operation           string    `json:"operation"`
	RebootOption        string    `json:"reboot_option"`
	InstallOverrideList string    `json:"install_override_list,omitempty"`
	SnapshotID          string    `json:"snapshot_id,omitempty"`
	Start               time.Time `json:"start"`
	End                 time.Time `json:"end"`
}

// effect is a future change of an instance: an invocation's results or a task's restore.
type effect struct {
	at   time.Time
	inv  *invocation
	task *rootTask
}

// snapshot is one EBS snapshot; the root volume's snapshot keeps the instance's patch states.
type snapshot struct {
	ID          string                  `json:"id"`
	Account     string                  `json:"account"`
	Region      string                  `json:"region"`
	Ord         uint64                  `json:"ord"`
	VolumeID    string                  `json:"volume_id"`
	VolumeSize  int                     `json:"volume_size"`
	InstanceID  string                  `json:"instance_id"`
	Root        bool                    `json:"root,omitempty"`
	Description string                  `json:"description,omitempty"`
	Tags        map[string]string       `json:"tags,omitempty"`
	Start       time.Time               `json:"start"`
	EndAt       time.Time               `json:"end_at"`
	Final       string                  `json:"final"` // completed or error
	Patches     map[string]*patchRecord `json:"patches,omitempty"`
}

func (s *snapshot) order() uint64 { return s.Ord }

// stateAt is the snapshot's state and progress at t.
func (s *snapshot) stateAt(t time.Time) (state, progress string) {
	if !t.Before(s.EndAt) {
		if s.Final == "error" {
			return "error", pct(0.5)
		}
		return "completed", "100%"
	}
	total := s.EndAt.Sub(s.Start)
	if s.Final == "error" {
		total *= 2 // an error snapshot fails half way
	}
	return "pending", pct(float64(t.Sub(s.Start)) / float64(total))
}

// command is one SendCommand.
type command struct {
	ID             string              `json:"id"`
	Account        string              `json:"account"`
	Region         string              `json:"region"`
	Ord            uint64              `json:"ord"`
	DocumentName   string              `json:"document_name"`
	Comment        string              `json:"comment,omitempty"`
	Parameters     map[string][]string `json:"parameters,omitempty"`
	InstanceIDs    []string            `json:"instance_ids"`
	Requested      time.Time           `json:"requested"`
	TimeoutSeconds int                 `json:"timeout_seconds,omitempty"`
	MaxConcurrency string              `json:"max_concurrency,omitempty"`
	MaxErrors      string              `json:"max_errors,omitempty"`
	invs           []*invocation
}

func (c *command) order() uint64 { return c.Ord }

// invocation is one command on one instance; its outcome is decided when it is sent, and its
// status is a function of the clock.
type invocation struct {
	CommandID    string    `json:"command_id"`
	InstanceID   string    `json:"instance_id"`
	Account      string    `json:"account"`
	Region       string    `json:"region"`
	Ord          uint64    `json:"ord"`
	Requested    time.Time `json:"requested"`
	PendingUntil time.Time `json:"pending_until"`
	EffectAt     time.Time `json:"effect_at"`
	EndAt        time.Time `json:"end_at"`
	Final        string    `json:"final"`
	FinalDetails string    `json:"final_details"`
	ResponseCode int       `json:"response_code"`
	Output       string    `json:"output,omitempty"`
	// Rendered says that Output is not kept but rendered from the results (output); OS is
	// the instance's, for that report.
	Rendered     bool          `json:"rendered,omitempty"`
	OS           string        `json:"os,omitempty"`
	Stderr       string        `json:"stderr,omitempty"`
	Plugin       string        `json:"plugin"`
	Operation    string        `json:"operation"`
	RebootOption string        `json:"reboot_option"`
	OverrideList string        `json:"override_list,omitempty"`
	SnapshotID   string        `json:"snapshot_id,omitempty"`
	Results      []patchRecord `json:"results,omitempty"`
	Reboot       bool          `json:"reboot,omitempty"`
	CancelledAt  time.Time     `json:"cancelled_at,omitzero"`
	Applied      bool          `json:"applied,omitempty"`
}

func (v *invocation) order() uint64 { return v.Ord }

// statusAt is the invocation's Status and StatusDetails at t.
func (v *invocation) statusAt(t time.Time) (status, details string) {
	switch {
	case !v.CancelledAt.IsZero() && !t.Before(v.CancelledAt):
		return "Cancelled", "Cancelled"
	case t.Before(v.PendingUntil):
		return "Pending", "Pending"
	case t.Before(v.EndAt):
		return "InProgress", "InProgress"
	default:
		return v.Final, v.FinalDetails
	}
}

// rootTask is a replace-root-volume task.
type rootTask struct {
	ID             string                  `json:"id"`
	Account        string                  `json:"account"`
	Region         string                  `json:"region"`
	Ord            uint64                  `json:"ord"`
	InstanceID     string                  `json:"instance_id"`
	SnapshotID     string                  `json:"snapshot_id,omitempty"`
	ClientToken    string                  `json:"client_token,omitempty"`
	Params         string                  `json:"params"`
	Start          time.Time               `json:"start"`
	PendingUntil   time.Time               `json:"pending_until"`
	EndAt          time.Time               `json:"end_at"`
	Final          string                  `json:"final"` // succeeded or failed
	Reason         string                  `json:"reason,omitempty"`
	DeleteReplaced bool                    `json:"delete_replaced,omitempty"`
	Tags           map[string]string       `json:"tags,omitempty"`
	NewVolumeID    string                  `json:"new_volume_id,omitempty"`
	Patches        map[string]*patchRecord `json:"patches,omitempty"`
	Applied        bool                    `json:"applied,omitempty"`
}

func (r *rootTask) order() uint64 { return r.Ord }

// stateAt is the task's state at t.
func (r *rootTask) stateAt(t time.Time) string {
	switch {
	case t.Before(r.PendingUntil):
		return "pending"
	case t.Before(r.EndAt):
		if r.Final == "failed" {
			return "failing"
		}
		return "in-progress"
	default:
		return r.Final
	}
}

// bucket and object are the minimal S3.
type bucket struct {
	Name    string    `json:"name"`
	Account string    `json:"account"`
	Region  string    `json:"region"`
	Created time.Time `json:"created"`
}

type object struct {
	Bucket      string    `json:"bucket"`
	Key         string    `json:"key"`
	Data        []byte    `json:"data"`
	ETag        string    `json:"etag"`
	ContentType string    `json:"content_type,omitempty"`
	Modified    time.Time `json:"modified"`
}

func newWorld(seed int64, timing Timing) *world {
	return &world{
		seed: seed, timing: timing,
		accounts: map[string]*account{}, sessions: map[string]*session{},
		instances: map[string]*instance{}, snapshots: map[string]*snapshot{},
		commands: map[string]*command{}, invs: map[invKey]*invocation{},
		tasks: map[string]*rootTask{}, buckets: map[string]*bucket{}, objects: map[string]map[string]*object{},
		dirty: map[entityKey]any{},
	}
}

// buildIndexes (re)builds every index from the entity maps: at start, after a load.
func (w *world) buildIndexes() {
	w.instByRegion = map[regionKey]*ordSet[*instance]{}
	w.instByTag = map[tagKey]*ordSet[*instance]{}
	w.snapByRegion = map[regionKey]*ordSet[*snapshot]{}
	w.snapByTag = map[tagKey]*ordSet[*snapshot]{}
	w.cmdByRegion = map[regionKey]*ordSet[*command]{}
	w.invByInst = map[string]*ordSet[*invocation]{}
	w.invByRegion = map[regionKey]*ordSet[*invocation]{}
	w.taskByRegion = map[regionKey]*ordSet[*rootTask]{}
	w.taskByInst = map[string]*ordSet[*rootTask]{}
	w.taskByToken = map[tokenKey]*rootTask{}
	for _, in := range w.instances {
		in.pending = nil
		w.indexInstance(in)
	}
	for _, s := range w.snapshots {
		w.indexSnapshot(s)
	}
	for _, c := range w.commands {
		c.invs = nil
		indexAdd(w.cmdByRegion, regionKey{c.Account, c.Region}, c)
	}
	invs := make([]*invocation, 0, len(w.invs))
	for _, v := range w.invs {
		invs = append(invs, v)
	}
	sort.Slice(invs, func(a, b int) bool { return invs[a].Ord < invs[b].Ord })
	for _, v := range invs {
		w.indexInvocation(v)
	}
	for _, r := range w.tasks {
		w.indexTask(r)
	}
}

func (w *world) indexInstance(in *instance) {
	indexAdd(w.instByRegion, regionKey{in.Account, in.Region}, in)
	for k, v := range in.Tags {
		indexAdd(w.instByTag, tagKey{in.Account, in.Region, k, v, false}, in)
		indexAdd(w.instByTag, tagKey{in.Account, in.Region, k, "", true}, in)
	}
}

func (w *world) indexSnapshot(s *snapshot) {
	indexAdd(w.snapByRegion, regionKey{s.Account, s.Region}, s)
	for k, v := range s.Tags {
		indexAdd(w.snapByTag, tagKey{s.Account, s.Region, k, v, false}, s)
		indexAdd(w.snapByTag, tagKey{s.Account, s.Region, k, "", true}, s)
	}
}

// indexSnapshotSet is indexSnapshot of snapshots made together, in creation order, that share
// their account, region and tag map (a CreateSnapshots call's): each index set is looked up
// once for all of them, not once for each.
func (w *world) indexSnapshotSet(ss []*snapshot) {
	if len(ss) == 0 {
		return
	}
	first := ss[0]
	addAll := func(set *ordSet[*snapshot]) {
		for _, s := range ss {
			set.add(s)
		}
	}
	addAll(indexSet(w.snapByRegion, regionKey{first.Account, first.Region}))
	for k, v := range first.Tags {
		addAll(indexSet(w.snapByTag, tagKey{first.Account, first.Region, k, v, false}))
		addAll(indexSet(w.snapByTag, tagKey{first.Account, first.Region, k, "", true}))
	}
}

func (w *world) unindexSnapshot(s *snapshot) {
	indexRemove(w.snapByRegion, regionKey{s.Account, s.Region}, s)
	for k, v := range s.Tags {
		indexRemove(w.snapByTag, tagKey{s.Account, s.Region, k, v, false}, s)
		indexRemove(w.snapByTag, tagKey{s.Account, s.Region, k, "", true}, s)
	}
}

func (w *world) indexInvocation(v *invocation) {
	if c := w.commands[v.CommandID]; c != nil {
		c.invs = append(c.invs, v)
	}
	indexAdd(w.invByInst, v.InstanceID, v)
	indexAdd(w.invByRegion, regionKey{v.Account, v.Region}, v)
	if !v.Applied {
		if in := w.instances[v.InstanceID]; in != nil {
			in.addEffect(effect{at: v.EffectAt, inv: v})
		}
	}
}

func (w *world) indexTask(r *rootTask) {
	indexAdd(w.taskByRegion, regionKey{r.Account, r.Region}, r)
	indexAdd(w.taskByInst, r.InstanceID, r)
	if r.ClientToken != "" {
		w.taskByToken[tokenKey{r.Account, r.Region, r.ClientToken}] = r
	}
	if !r.Applied {
		if in := w.instances[r.InstanceID]; in != nil {
			in.addEffect(effect{at: r.EndAt, task: r})
		}
	}
}

// setTags changes one entity's tags and keeps the tag index in step.
func setTag[T ordered](idx map[tagKey]*ordSet[T], x T, tags map[string]string, account, region, key, value string) map[string]string {
	if old, ok := tags[key]; ok {
		if old == value {
			return tags
		}
		indexRemove(idx, tagKey{account, region, key, old, false}, x)
	}
	if tags == nil {
		tags = map[string]string{}
	}
	tags[key] = value
	indexAdd(idx, tagKey{account, region, key, value, false}, x)
	indexAdd(idx, tagKey{account, region, key, "", true}, x)
	return tags
}

func deleteTag[T ordered](idx map[tagKey]*ordSet[T], x T, tags map[string]string, account, region, key string, value *string) {
	old, ok := tags[key]
	if !ok || (value != nil && *value != old) {
		return
	}
	delete(tags, key)
	indexRemove(idx, tagKey{account, region, key, old, false}, x)
	indexRemove(idx, tagKey{account, region, key, "", true}, x)
}

func (in *instance) addEffect(e effect) {
	in.pending = append(in.pending, e)
	for i := len(in.pending) - 1; i > 0 && in.pending[i].at.Before(in.pending[i-1].at); i-- {
		in.pending[i], in.pending[i-1] = in.pending[i-1], in.pending[i]
	}
}

// transient states and the state each settles into.
var stateTargets = map[string]string{"pending": "running", "stopping": "stopped", "shutting-down": "terminated"}

// settle applies to the instance everything that is due at now: the end of a state change,
// install results, root volume replacements and the end of reboots, in time order. It is the
// only place transitions happen, and it runs whenever an instance is read.
func (w *world) settle(in *instance, now time.Time) {
	if w.frozen {
		if !w.stale && w.due(in, now) {
			w.stale = true
		}
		return
	}
	if target, ok := stateTargets[in.State]; ok {
		if at := in.StateSince.Add(w.timing.StateChange); !now.Before(at) {
			in.State, in.StateSince = target, at
			if target == "running" {
				in.BootedAt = at
			}
			w.markInstance(in)
		}
	}
	for len(in.pending) > 0 && !in.pending[0].at.After(now) {
		e := in.pending[0]
		in.pending = in.pending[1:]
		w.endReboot(in, e.at)
		switch {
		case e.inv != nil:
			w.applyInvocation(in, e.inv)
		case e.task != nil:
			w.applyTask(in, e.task)
		}
	}
	w.endReboot(in, now)
}

// due tells whether settle(in, now) would change the instance.
func (w *world) due(in *instance, now time.Time) bool {
	if _, ok := stateTargets[in.State]; ok && !now.Before(in.StateSince.Add(w.timing.StateChange)) {
		return true
	}
	if len(in.pending) > 0 && !in.pending[0].at.After(now) {
		return true
	}
	return !in.RebootUntil.IsZero() && !in.RebootUntil.After(now)
}

// endReboot finishes a reboot that is over at t: patches pending a reboot are installed.
func (w *world) endReboot(in *instance, t time.Time) {
	if in.RebootUntil.IsZero() || in.RebootUntil.After(t) {
		return
	}
	for id, p := range in.Patches {
		if p.State == "INSTALLED_PENDING_REBOOT" {
			c := *p // records are shared (invocation results, snapshots): never changed in place
			c.State = "INSTALLED"
			in.Patches[id] = &c
		}
	}
	in.RebootUntil = time.Time{}
	w.markInstance(in)
}

func (w *world) applyInvocation(in *instance, v *invocation) {
	if v.Applied {
		return
	}
	v.Applied = true
	w.markInvocation(v)
	if len(v.Results) > 0 || v.Final == "Success" || v.Final == "Failed" {
		if in.Patches == nil {
			in.Patches = map[string]*patchRecord{}
		}
		for i := range v.Results {
			// The instance's record is the invocation's result itself (records are never
			// changed in place once stored), not a copy of it per instance.
			rec := &v.Results[i]
			if old := in.Patches[rec.ID]; old != nil && isInstalled(old.State) && isInstalled(rec.State) {
				rec.InstalledTime = old.InstalledTime
			} else if isInstalled(rec.State) {
				rec.InstalledTime = v.EffectAt
			}
			in.Patches[rec.ID] = rec
		}
		in.LastOp = &patchOp{Operation: v.Operation, RebootOption: v.RebootOption, InstallOverrideList: v.OverrideList,
			SnapshotID: v.SnapshotID, Start: v.PendingUntil, End: v.EffectAt}
	}
	if v.Reboot {
		in.RebootUntil = v.EffectAt.Add(w.timing.Reboot)
		w.endReboot(in, v.EffectAt)
	}
	w.markInstance(in)
}

func (w *world) applyTask(in *instance, r *rootTask) {
	if r.Applied {
		return
	}
	r.Applied = true
	w.markTask(r)
	if r.Final == "succeeded" {
		in.Patches = clonePatches(r.Patches)
		if len(in.Volumes) > 0 && r.NewVolumeID != "" {
			root := *in.Volumes[0]
			root.ID, root.AttachTime = r.NewVolumeID, r.EndAt
			in.Volumes[0] = &root
		}
		w.markInstance(in)
	}
}

func isInstalled(state string) bool {
	return state == "INSTALLED" || state == "INSTALLED_OTHER" || state == "INSTALLED_PENDING_REBOOT"
}

// clonePatches copies the map; the records are shared: they are never changed in place once
// stored (a change replaces the record).
func clonePatches(m map[string]*patchRecord) map[string]*patchRecord {
	if m == nil {
		return nil
	}
	return maps.Clone(m)
}

func cloneTags(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// rebooting tells whether the instance is inside a reboot at t.
func (in *instance) rebooting(t time.Time) bool {
	return !in.RebootUntil.IsZero() && t.Before(in.RebootUntil)
}

// pingStatus is the SSM agent's ping status at t ("" when there is no agent).
func (in *instance) pingStatus(t time.Time) string {
	switch {
	case !in.Agent:
		return ""
	case in.State == "terminated":
		return "Inactive"
	case in.AgentDropped || in.State != "running" || in.rebooting(t):
		return "ConnectionLost"
	default:
		return "Online"
	}
}

// The mark functions record a changed entity for the next flush to the mutation log.
// resetDirty empties the changed set after it was written. A map that grew large (the
// generated fleet, a call that changed thousands of entities) is replaced, not cleared: clear
// keeps its capacity, and every later flush would iterate all of it, O(fleet) per call.
// entities counts the entities a checkpoint of the world holds (give or take the meta record).
func (w *world) entities() int {
	n := len(w.accounts) + len(w.sessions) + len(w.instances) + len(w.snapshots) + len(w.commands) +
		len(w.invs) + len(w.tasks) + len(w.buckets)
	for _, objs := range w.objects {
		n += len(objs)
	}
	return n
}

func (w *world) resetDirty() {
	if len(w.dirty) > 256 {
		w.dirty = map[entityKey]any{}
		return
	}
	clear(w.dirty)
}

func (w *world) markMeta()                 { w.dirty[entityKey{"meta", ""}] = &w.meta }
func (w *world) markAccount(a *account)    { w.dirty[entityKey{"account", a.ID}] = a }
func (w *world) markSession(s *session)    { w.dirty[entityKey{"session", s.AccessKeyID}] = s }
func (w *world) markInstance(in *instance) { w.dirty[entityKey{"instance", in.ID}] = in }
func (w *world) markSnapshot(s *snapshot)  { w.dirty[entityKey{"snapshot", s.ID}] = s }
func (w *world) markCommand(c *command)    { w.dirty[entityKey{"command", c.ID}] = c }
func (w *world) markInvocation(v *invocation) {
	w.dirty[entityKey{"invocation", v.CommandID + "/" + v.InstanceID}] = v
}
func (w *world) markTask(r *rootTask)        { w.dirty[entityKey{"task", r.ID}] = r }
func (w *world) markBucket(b *bucket)        { w.dirty[entityKey{"bucket", b.Name}] = b }
func (w *world) markObject(o *object)        { w.dirty[entityKey{"object", o.Bucket + "/" + o.Key}] = o }
func (w *world) markDeleted(kind, id string) { w.dirty[entityKey{kind, id}] = nil }
