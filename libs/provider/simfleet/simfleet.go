// Package simfleet is an in-memory provider.Fleet for tests and the patchd demo.
//
// It behaves like the AWS adapter where it matters to Patchwave: creations are idempotent per
// business key, snapshots, installations and restores are asynchronous (see Config.Latency), a
// stopped instance cannot be patched, and restoring an instance brings back the patches it had
// when the snapshot was taken.
//
// # Deterministic outcomes
//
// Whether the snapshot or the installation of (tenant, run, instance) fails is decided by a hash
// of (Seed, operation, tenant, run, instance) compared with the configured rate, never by a shared
// random stream, so a replay, a retry or a restart gets the same outcome, whatever the order or
// concurrency of the calls. A failed installation works like a failed package-manager transaction
// (yum and dnf on Amazon Linux are all-or-nothing): one patch, also chosen by the hash, is FAILED
// with "exit status 1: package conflict", every other requested patch stays MISSING, and nothing
// is installed. A failed snapshot ends in SnapshotError.
//
// # Reboots
//
// A patch whose id contains "kernel" (any case) needs a reboot. With RebootIfRequired the
// installation reboots the instance when such a patch is in the set; with RebootAlways it always
// reboots; with RebootNever it does not, and those patches end INSTALLED_PENDING_REBOOT with
// Installation.RebootPending set until the instance is rebooted.
//
// # Time
//
// Nothing runs in the background. With Latency > 0 an operation stays pending until Clock()
// reaches its start plus Latency; every call first settles whatever became due, in the order it
// became due, so tests drive time with an injected clock.
//
// # Persistence
//
// With StatePath set, the whole state is written as JSON (temporary file, then rename) after
// every mutation and loaded by New, so a restarted process continues with the same fleet,
// snapshots and installations. Only one Fleet may use a StatePath at a time. Pending faults
// (FailNext) are not persisted.
package simfleet

import (
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/patchwave/patchwave/libs/provider"
)

// Operation names for FailNext: the names of the provider.Fleet methods.
const (
	OpDiscoverInstances   = "DiscoverInstances"
	OpCreateSnapshot      = "CreateSnapshot"
	OpGetSnapshot         = "GetSnapshot"
	OpFindSnapshot        = "FindSnapshot"
	OpDeleteSnapshot      = "DeleteSnapshot"
	OpRestoreFromSnapshot = "RestoreFromSnapshot"
	OpGetRestore          = "GetRestore"
	OpInstall             = "Install"
	OpGetInstallation     = "GetInstallation"
	OpFindInstallation    = "FindInstallation"
	OpReboot              = "Reboot"
	OpCheckHealth         = "CheckHealth"
)

var knownOps = []string{
	OpDiscoverInstances, OpCreateSnapshot, OpGetSnapshot, OpFindSnapshot, OpDeleteSnapshot,
	OpRestoreFromSnapshot, OpGetRestore, OpInstall, OpGetInstallation, OpFindInstallation,
	OpReboot, OpCheckHealth,
}

// DefaultOSFamily is the OS family of instances that do not name one.
const DefaultOSFamily = "amazon-linux-2023"

// WaveTagKey is the tag Populate puts the wave number in.
const WaveTagKey = "PatchWave"

// Config configures a simulated fleet.
type Config struct {
	// Seed is optional: with the business keys it decides which operations fail.
	// Default 1 (0 means the default).
	Seed int64
	// InstallFailureRate is optional: the share of installations that fail, in [0, 1]. Default 0.
	InstallFailureRate float64
	// SnapshotFailureRate is optional: the share of snapshots that fail, in [0, 1]. Default 0.
	SnapshotFailureRate float64
	// Latency is optional: how long a snapshot, installation or restore stays pending or in
	// progress, measured on Clock. Default 0: it completes within the call that starts it.
	Latency time.Duration
	// StatePath is optional: the JSON file the state is persisted to and loaded from.
	// Default "": state lives in memory only.
	StatePath string
	// Clock is optional: the time source. Default time.Now.
	Clock func() time.Time
}

func (c *Config) setDefaults() {
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	rate := func(field string, v float64) {
		if math.IsNaN(v) || v < 0 || v > 1 {
			errs = append(errs, fieldError(field, fmt.Sprintf("must be in [0, 1], got %v", v)))
		}
	}
	rate("InstallFailureRate", c.InstallFailureRate)
	rate("SnapshotFailureRate", c.SnapshotFailureRate)
	if c.Latency < 0 {
		errs = append(errs, fieldError("Latency", fmt.Sprintf("must be >= 0, got %s", c.Latency)))
	}
	return errors.Join(errs...)
}

// fieldError reports a broken rule, naming the field.
func fieldError(field, rule string) error { return fmt.Errorf("%s: %s", field, rule) }

// InstanceSpec describes an instance to add to the fleet.
type InstanceSpec struct {
	// ID is required and unique within the tenant.
	ID string
	// Name is optional. Default: the "Name" tag, else ID.
	Name string
	// OSFamily is optional. Default: DefaultOSFamily.
	OSFamily string
	// State is optional. Default: provider.InstanceRunning.
	State provider.InstanceState
	// Tags is optional.
	Tags map[string]string
	// VolumeIDs is optional, root volume first. Default: two volumes with generated ids.
	VolumeIDs []string
}

// Stats counts what the fleet really did; idempotent repeats are not counted.
type Stats struct {
	SnapshotsCreated int
	SnapshotsDeleted int
	InstallsStarted  int
	Restores         int
	Reboots          int
}

// Fleet is an in-memory provider.Fleet. All methods are safe for concurrent use.
type Fleet struct {
	cfg Config

	mu           sync.Mutex
	st           *state
	snapByKey    map[bizKey]string
	installByKey map[bizKey]string
	restoreByKey map[bizKey]string
	pending      []pendingRef
	faults       map[string][]error
}

var _ provider.Fleet = (*Fleet)(nil)

// New builds a fleet from cfg, loading the state from cfg.StatePath when that file exists.
func New(cfg Config) (*Fleet, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("simfleet config: %w", err)
	}
	f := &Fleet{cfg: cfg, st: newState(), faults: make(map[string][]error)}
	if cfg.StatePath != "" {
		if err := os.MkdirAll(filepath.Dir(cfg.StatePath), 0o750); err != nil {
			return nil, fmt.Errorf("simfleet state dir: %w", err)
		}
		st, err := loadState(cfg.StatePath)
		if err != nil {
			return nil, err
		}
		if st != nil {
			f.st = st
		}
	}
	f.reindex()
	return f, nil
}

// AddInstances adds instances to a tenant's fleet. It fails, adding nothing, when a spec is
// invalid or its ID is already taken in the tenant.
func (f *Fleet) AddInstances(tenant string, specs ...InstanceSpec) error {
	if err := provider.ValidateTenant(tenant); err != nil {
		return fmt.Errorf("add instances: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settle()
	seen := make(map[string]bool, len(specs))
	var errs []error
	for i, s := range specs {
		switch {
		case s.ID == "":
			errs = append(errs, fmt.Errorf("specs[%d].ID: is required", i))
		case seen[s.ID] || f.st.Instances[instKey(tenant, s.ID)] != nil:
			errs = append(errs, fmt.Errorf("specs[%d].ID: %q already exists in tenant %s", i, s.ID, tenant))
		}
		if s.State != "" && !s.State.Valid() {
			errs = append(errs, fmt.Errorf("specs[%d].State: unknown state %q", i, s.State))
		}
		seen[s.ID] = true
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("add instances: %w: %w", provider.ErrInvalidArgument, err)
	}
	for _, s := range specs {
		f.st.Instances[instKey(tenant, s.ID)] = newInstance(tenant, s)
	}
	return f.save()
}

// Populate makes sure the tenant has n instances, "i-<tenant>-0001" to "i-<tenant>-<n>": running,
// OS family DefaultOSFamily, tagged "Name" and WaveTagKey (waves 1..waves, round-robin), two
// volumes each. Instances that already exist are left as they are, so calling it again (after a
// restart, say) adds nothing.
func (f *Fleet) Populate(tenant string, n, waves int) error {
	var errs []error
	if n < 0 {
		errs = append(errs, fmt.Errorf("n: must be >= 0, got %d", n))
	}
	if waves < 1 {
		errs = append(errs, fmt.Errorf("waves: must be >= 1, got %d", waves))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("populate: %w: %w", provider.ErrInvalidArgument, err)
	}
	if err := provider.ValidateTenant(tenant); err != nil {
		return fmt.Errorf("populate: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settle()
	for i := 1; i <= n; i++ {
		id := fmt.Sprintf("i-%s-%04d", tenant, i)
		if f.st.Instances[instKey(tenant, id)] != nil {
			continue
		}
		name := fmt.Sprintf("%s-vm-%04d", tenant, i)
		f.st.Instances[instKey(tenant, id)] = newInstance(tenant, InstanceSpec{
			ID:   id,
			Name: name,
			Tags: map[string]string{"Name": name, WaveTagKey: fmt.Sprint((i-1)%waves + 1)},
		})
	}
	return f.save()
}

// SetInstanceState changes an instance's state (stop it, start it, terminate it).
func (f *Fleet) SetInstanceState(tenant, instanceID string, s provider.InstanceState) error {
	if !s.Valid() {
		return fmt.Errorf("set instance state: %w: state: unknown state %q", provider.ErrInvalidArgument, s)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settle()
	in, err := f.instance(tenant, instanceID)
	if err != nil {
		return fmt.Errorf("set instance state: %w", err)
	}
	in.Instance.State = s
	return f.save()
}

// SetHealth makes CheckHealth report h for the instance while it is running. Setting a healthy
// Health with an empty Detail goes back to the default report.
func (f *Fleet) SetHealth(tenant, instanceID string, h provider.Health) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settle()
	in, err := f.instance(tenant, instanceID)
	if err != nil {
		return fmt.Errorf("set health: %w", err)
	}
	in.Health = &h
	if h.Healthy && h.Detail == "" {
		in.Health = nil
	}
	return f.save()
}

// Instances lists all the tenant's instances, in any state, sorted by ID.
func (f *Fleet) Instances(tenant string) []provider.Instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settle()
	var out []provider.Instance
	for _, in := range f.st.Instances {
		if in.Instance.Tenant == tenant {
			out = append(out, cloneInstance(in.Instance))
		}
	}
	slices.SortFunc(out, func(a, b provider.Instance) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// InstalledPatches lists, sorted, the patches successfully installed on the instance (including
// those pending a reboot); nil for an unknown instance.
func (f *Fleet) InstalledPatches(tenant, instanceID string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settle()
	in, err := f.instance(tenant, instanceID)
	if err != nil {
		return nil
	}
	return in.installed()
}

// Reboots counts the reboots of the instance: explicit ones and those done by installations.
func (f *Fleet) Reboots(tenant, instanceID string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settle()
	in, err := f.instance(tenant, instanceID)
	if err != nil {
		return 0
	}
	return in.Reboots
}

// FailNext makes the next call of op (one of the Op constants) return err, once. Calls stack:
// two FailNext for the same op fail its next two calls, in order. The call fails before doing
// anything, as a lost request would. It panics on an unknown op or a nil err, which are bugs in
// the test that calls it.
func (f *Fleet) FailNext(op string, err error) {
	if !slices.Contains(knownOps, op) {
		panic(fmt.Sprintf("simfleet: FailNext: unknown op %q, want one of %v", op, knownOps))
	}
	if err == nil {
		panic("simfleet: FailNext: nil error")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.faults[op] = append(f.faults[op], err)
}

// Stats returns the counters of what the fleet really did.
func (f *Fleet) Stats() Stats {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.settle()
	return f.st.Stats
}

// needsReboot is the simulation's rule for patches that need a reboot.
func needsReboot(patchID string) bool {
	return strings.Contains(strings.ToLower(patchID), "kernel")
}
