package cloudsim

import (
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Config configures a cloudsim Server. The zero value plus one AccountConfig is a working
// emulator: instant operations, no faults, memory only.
type Config struct {
	// Addr is the TCP listen address. Optional, default "127.0.0.1:0" (a free port).
	Addr string
	// StateDir is where the mutation log and checkpoints are kept. Optional, default empty:
	// memory only. When it already holds state, that state is loaded and Accounts are not
	// generated again (the loaded accounts and instances win).
	StateDir string
	// CheckpointEvery is how many log records are written before the state is compacted into a
	// new checkpoint. Optional, default 0: a checkpoint is due once the logs hold 200,000
	// records and four times as many records as the newest checkpoint has entities, so that a
	// large world is not written again for every 200,000 changes.
	CheckpointEvery int
	// Seed makes ids, credentials, generated instances and per-instance outcomes deterministic.
	// Optional, default 1.
	Seed int64
	// Clock is the time source; every state transition is computed from it when read. Optional,
	// default time.Now.
	Clock func() time.Time
	// ProviderAccountID is the 12-digit account of the provider identity whose long-lived key
	// Patchwave's services use. Optional, default "100000000000".
	ProviderAccountID string
	// Accounts are the tenant accounts, generated at first start. Optional (a server with none
	// only serves the provider account).
	Accounts []AccountConfig
	// Timing gives the durations of asynchronous operations (0: instant).
	Timing Timing
	// Faults gives latencies and failure rates.
	Faults FaultConfig
	// RebootRequiredRate is the fraction of (instance, patch) pairs whose install needs a reboot,
	// decided by a hash of (Seed, instance, patch). Optional, default 0.
	RebootRequiredRate float64
	// Logger receives one line per failed request at debug level and start-up facts at info.
	// Optional, default discards.
	Logger *slog.Logger
}

// AccountConfig is one tenant account of the emulator.
type AccountConfig struct {
	// ID is the 12-digit account id. Required.
	ID string
	// Tenant is the tenant the account belongs to (a label for the admin API). Required.
	Tenant string
	// Regions the account uses. Optional, default ["us-east-1"].
	Regions []string
	// RoleName is the IAM role Patchwave assumes. Optional, default "PatchwaveAccess".
	RoleName string
	// ExternalID is the role's external id, checked by AssumeRole. Optional, default derived
	// from Seed and ID.
	ExternalID string
	// TrustedPrincipal is the ARN allowed to assume the role: an account root
	// (arn:aws:iam::<id>:root, any principal of that account) or a user ARN. Optional, default
	// the provider account's root.
	TrustedPrincipal string
	// Instances is how many instances are generated, spread round robin over Regions.
	Instances int
	// Waves tags generated instances PatchWave=1..Waves round robin; 0 puts no wave tag.
	Waves int
	// OSMix weighs the OS families of generated instances (keys from OSFamilies). Optional,
	// default amazon-linux-2023 0.4, ubuntu-22.04 0.3, windows-server-2022 0.2, rhel-9 0.1.
	OSMix map[string]float64
	// AgentlessFraction of generated instances have no SSM agent (absent from SSM).
	AgentlessFraction float64
	// StoppedFraction of generated instances are stopped.
	StoppedFraction float64
	// InstalledPatches are patch ids already installed on every generated instance.
	InstalledPatches []string
}

// Timing gives the durations of the emulated asynchronous operations. A zero duration makes the
// operation reach its terminal state at once.
type Timing struct {
	// Snapshot is how long an EBS snapshot takes from 0% to 100%.
	Snapshot time.Duration
	// CommandPending is how long an invocation stays Pending before it runs.
	CommandPending time.Duration
	// Command is how long an invocation runs (InProgress) before its result.
	Command time.Duration
	// Reboot is how long a reboot keeps status checks initializing and the agent ConnectionLost.
	Reboot time.Duration
	// ReplaceRootVolume is how long a replace-root-volume task takes (a quarter pending, the rest
	// in progress).
	ReplaceRootVolume time.Duration
	// StateChange is how long stopping, pending (start) and shutting-down last.
	StateChange time.Duration
	// Boot is how long status checks stay initializing after an instance starts.
	Boot time.Duration
}

// FaultConfig gives latencies and failure rates applied from the start; InjectFault adds more
// at run time.
type FaultConfig struct {
	// Operations maps an operation ("DescribeInstances", "ec2:DescribeInstances", or "*" for
	// every operation) to its latency and failure rates. The most specific entry wins.
	Operations map[string]OperationFaults
	// SnapshotErrorRate is the fraction of volume snapshots that end in the error state.
	SnapshotErrorRate float64
	// PatchFailureRate is the fraction of (instance, patch) installs that fail, decided by a hash
	// of (Seed, instance, patch), so a retry fails the same way.
	PatchFailureRate float64
}

// OperationFaults are the latency and failure rates of one operation.
type OperationFaults struct {
	// Latency is added to every call.
	Latency time.Duration `json:"latency,omitempty"`
	// Jitter adds a uniformly random extra latency in [0, Jitter).
	Jitter time.Duration `json:"jitter,omitempty"`
	// ThrottleRate is the fraction of calls refused with the service's throttling error.
	ThrottleRate float64 `json:"throttle_rate,omitempty"`
	// ErrorRate is the fraction of calls failed with ErrorCode.
	ErrorRate float64 `json:"error_rate,omitempty"`
	// ErrorCode is the code of injected errors. Optional, default the service's internal error
	// (InternalError for EC2 and S3, InternalFailure for SSM and STS), HTTP 500.
	ErrorCode string `json:"error_code,omitempty"`
}

var (
	accountIDPattern = regexp.MustCompile(`^[0-9]{12}$`)
	regionPattern    = regexp.MustCompile(`^[a-z]{2}(-[a-z]+)+-[0-9]$`)
	roleNamePattern  = regexp.MustCompile(`^[\w+=,.@-]{1,64}$`)
)

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
	if c.ProviderAccountID == "" {
		c.ProviderAccountID = "100000000000"
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	for i := range c.Accounts {
		c.Accounts[i].setDefaults(c.Seed, c.ProviderAccountID)
	}
}

func (a *AccountConfig) setDefaults(seed int64, providerAccount string) {
	if len(a.Regions) == 0 {
		a.Regions = []string{"us-east-1"}
	}
	if a.RoleName == "" {
		a.RoleName = "PatchwaveAccess"
	}
	if a.ExternalID == "" {
		a.ExternalID = "pw-" + hashHex(seed, 16, "external-id", a.ID)
	}
	if a.TrustedPrincipal == "" {
		a.TrustedPrincipal = "arn:aws:iam::" + providerAccount + ":root"
	}
	if len(a.OSMix) == 0 {
		a.OSMix = map[string]float64{"amazon-linux-2023": 0.4, "ubuntu-22.04": 0.3, "windows-server-2022": 0.2, "rhel-9": 0.1}
	}
}

// Validate reports every problem with the configuration, naming the field and the rule.
func (c Config) Validate() error {
	var errs []error
	if c.CheckpointEvery < 0 {
		errs = append(errs, fmt.Errorf("CheckpointEvery %d: must be >= 0 (0: by the world's size)", c.CheckpointEvery))
	}
	if !accountIDPattern.MatchString(c.ProviderAccountID) {
		errs = append(errs, fmt.Errorf("ProviderAccountID %q: must be 12 digits", c.ProviderAccountID))
	}
	if err := rateErr("RebootRequiredRate", c.RebootRequiredRate); err != nil {
		errs = append(errs, err)
	}
	seen := map[string]bool{c.ProviderAccountID: true}
	for i, a := range c.Accounts {
		if err := a.validate(); err != nil {
			errs = append(errs, fmt.Errorf("Accounts[%d]: %w", i, err))
		}
		if seen[a.ID] {
			errs = append(errs, fmt.Errorf("Accounts[%d].ID %q: must be unique and differ from ProviderAccountID", i, a.ID))
		}
		seen[a.ID] = true
	}
	errs = append(errs, c.Timing.validate()...)
	errs = append(errs, c.Faults.validate()...)
	return errors.Join(errs...)
}

func (a AccountConfig) validate() error {
	var errs []error
	if !accountIDPattern.MatchString(a.ID) {
		errs = append(errs, fmt.Errorf("ID %q: must be 12 digits", a.ID))
	}
	if strings.TrimSpace(a.Tenant) == "" {
		errs = append(errs, errors.New("Tenant: required"))
	}
	for _, r := range a.Regions {
		if !regionPattern.MatchString(r) {
			errs = append(errs, fmt.Errorf("Regions %q: must be a region name like us-east-1", r))
		}
	}
	if !roleNamePattern.MatchString(a.RoleName) {
		errs = append(errs, fmt.Errorf("RoleName %q: must be 1-64 characters of letters, digits and +=,.@_-", a.RoleName))
	}
	if len(a.ExternalID) < 2 || len(a.ExternalID) > 1224 {
		errs = append(errs, fmt.Errorf("ExternalID: must be 2 to 1224 characters, got %d", len(a.ExternalID)))
	}
	if !strings.HasPrefix(a.TrustedPrincipal, "arn:aws:iam::") {
		errs = append(errs, fmt.Errorf("TrustedPrincipal %q: must be an IAM ARN (arn:aws:iam::<account>:root or :user/<name>)", a.TrustedPrincipal))
	}
	if a.Instances < 0 || a.Instances > 1_000_000 {
		errs = append(errs, fmt.Errorf("Instances %d: must be from 0 to 1000000", a.Instances))
	}
	if a.Waves < 0 || a.Waves > 100 {
		errs = append(errs, fmt.Errorf("Waves %d: must be from 0 to 100", a.Waves))
	}
	total := 0.0
	for _, k := range sortedKeys(a.OSMix) {
		if _, ok := osCatalog[k]; !ok {
			errs = append(errs, fmt.Errorf("OSMix %q: unknown OS family (known: %s)", k, strings.Join(OSFamilies(), ", ")))
		}
		if a.OSMix[k] < 0 {
			errs = append(errs, fmt.Errorf("OSMix %q: weight must be >= 0", k))
		}
		total += a.OSMix[k]
	}
	if total <= 0 {
		errs = append(errs, errors.New("OSMix: weights must add up to more than 0"))
	}
	for name, v := range map[string]float64{"AgentlessFraction": a.AgentlessFraction, "StoppedFraction": a.StoppedFraction} {
		if err := rateErr(name, v); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range a.InstalledPatches {
		if strings.TrimSpace(p) == "" {
			errs = append(errs, errors.New("InstalledPatches: ids must not be empty"))
			break
		}
	}
	return errors.Join(errs...)
}

func (t Timing) validate() []error {
	var errs []error
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"Snapshot", t.Snapshot}, {"CommandPending", t.CommandPending}, {"Command", t.Command},
		{"Reboot", t.Reboot}, {"ReplaceRootVolume", t.ReplaceRootVolume}, {"StateChange", t.StateChange}, {"Boot", t.Boot},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("Timing.%s %s: must be >= 0", d.name, d.v))
		}
	}
	return errs
}

func (f FaultConfig) validate() []error {
	var errs []error
	if err := rateErr("Faults.SnapshotErrorRate", f.SnapshotErrorRate); err != nil {
		errs = append(errs, err)
	}
	if err := rateErr("Faults.PatchFailureRate", f.PatchFailureRate); err != nil {
		errs = append(errs, err)
	}
	for _, op := range sortedKeys(f.Operations) {
		o := f.Operations[op]
		if op != "*" && !knownOperation(op) {
			errs = append(errs, fmt.Errorf("Faults.Operations %q: unknown operation", op))
		}
		if o.Latency < 0 || o.Jitter < 0 {
			errs = append(errs, fmt.Errorf("Faults.Operations[%q]: Latency and Jitter must be >= 0", op))
		}
		if err := rateErr(fmt.Sprintf("Faults.Operations[%q].ThrottleRate", op), o.ThrottleRate); err != nil {
			errs = append(errs, err)
		}
		if err := rateErr(fmt.Sprintf("Faults.Operations[%q].ErrorRate", op), o.ErrorRate); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

func rateErr(name string, v float64) error {
	if v < 0 || v > 1 {
		return fmt.Errorf("%s %v: must be from 0 to 1", name, v)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
