package cloudsim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Fault kinds accepted by InjectFault.
const (
	// FaultThrottle refuses calls of Operation with the service's throttling error
	// (RequestLimitExceeded 503 for EC2, ThrottlingException 400 for SSM, Throttling 400 for
	// STS, SlowDown 503 for S3).
	FaultThrottle = "throttle"
	// FaultError fails calls of Operation with Code (default the service's internal error).
	FaultError = "error"
	// FaultStopInstance stops InstanceID (stopping, then stopped after Timing.StateChange).
	FaultStopInstance = "stop-instance"
	// FaultStartInstance starts InstanceID (pending, then running).
	FaultStartInstance = "start-instance"
	// FaultTerminateInstance terminates InstanceID.
	FaultTerminateInstance = "terminate-instance"
	// FaultDropAgent makes InstanceID's SSM agent lose its connection (ConnectionLost; commands
	// are Undeliverable).
	FaultDropAgent = "drop-agent"
	// FaultRestoreAgent reconnects InstanceID's agent.
	FaultRestoreAgent = "restore-agent"
	// FaultFailNextInstall makes InstanceID's next Count installs (default 1) fail every patch.
	FaultFailNextInstall = "fail-next-install"
	// FaultImpair makes InstanceID's instance status check impaired; FaultUnimpair clears it.
	FaultImpair   = "impair"
	FaultUnimpair = "unimpair"
	// FaultFailNextSnapshot makes every volume snapshot of InstanceID's next Count (default 1)
	// CreateSnapshots end in error.
	FaultFailNextSnapshot = "fail-next-snapshot"
	// FaultLatency sets Operation's latency (and Jitter) from now on; "0s" removes it.
	FaultLatency = "latency"
	// FaultSetRates changes the per-snapshot and per-(instance, patch) rates from now on: each
	// of SnapshotErrorRate, PatchFailureRate and RebootRequiredRate that is set.
	FaultSetRates = "set-rates"
)

// Fault is a failure injected at run time (Server.InjectFault, POST /_cloudsim/faults).
type Fault struct {
	// Kind is one of the Fault* constants. Required.
	Kind string `json:"kind"`
	// Operation the throttle or error applies to: "DescribeInstances", "ec2:DescribeInstances"
	// or "*". Required for throttle and error.
	Operation string `json:"operation,omitempty"`
	// Account limits a throttle or error to calls with credentials of this account.
	Account string `json:"account,omitempty"`
	// Count is how many calls the throttle or error applies to (the next N matching calls), or
	// how many installs fail. With Rate set and Count 0 the fault lasts until cleared.
	Count int `json:"count,omitempty"`
	// Rate is the fraction of matching calls the throttle or error applies to (0: all of them,
	// while Count lasts).
	Rate float64 `json:"rate,omitempty"`
	// Code and Message of an injected error; Status its HTTP status (default from the code:
	// 500 for internal errors, 503 for unavailability, else 400).
	Code    string `json:"code,omitempty"`
	Message string `json:"message,omitempty"`
	Status  int    `json:"status,omitempty"`
	// InstanceID is the instance of an instance fault.
	InstanceID string `json:"instance_id,omitempty"`
	// Latency and Jitter of a latency fault, as Go durations ("150ms").
	Latency string `json:"latency,omitempty"`
	Jitter  string `json:"jitter,omitempty"`
	// SnapshotErrorRate, PatchFailureRate and RebootRequiredRate of a set-rates fault.
	SnapshotErrorRate  *float64 `json:"snapshot_error_rate,omitempty"`
	PatchFailureRate   *float64 `json:"patch_failure_rate,omitempty"`
	RebootRequiredRate *float64 `json:"reboot_required_rate,omitempty"`
}

func (f Fault) validate() error {
	var errs []error
	switch f.Kind {
	case FaultThrottle, FaultError:
		if f.Operation == "" {
			errs = append(errs, errors.New("operation: required for throttle and error faults"))
		} else if f.Operation != "*" && !knownOperation(f.Operation) {
			errs = append(errs, fmt.Errorf("operation %q: unknown operation", f.Operation))
		}
		if f.Count < 0 {
			errs = append(errs, fmt.Errorf("count %d: must be >= 0", f.Count))
		}
		if f.Rate < 0 || f.Rate > 1 {
			errs = append(errs, fmt.Errorf("rate %v: must be from 0 to 1", f.Rate))
		}
		if f.Count == 0 && f.Rate == 0 {
			errs = append(errs, errors.New("count or rate: one is required (the next N calls, or a fraction of calls)"))
		}
		if f.Status != 0 && (f.Status < 400 || f.Status > 599) {
			errs = append(errs, fmt.Errorf("status %d: must be an HTTP error status (400-599)", f.Status))
		}
	case FaultLatency:
		if f.Operation == "" || (f.Operation != "*" && !knownOperation(f.Operation)) {
			errs = append(errs, fmt.Errorf("operation %q: a known operation or * is required for latency faults", f.Operation))
		}
		for name, v := range map[string]string{"latency": f.Latency, "jitter": f.Jitter} {
			if d, err := time.ParseDuration(v); v != "" && (err != nil || d < 0) {
				errs = append(errs, fmt.Errorf("%s %q: must be a duration >= 0 like 150ms", name, v))
			}
		}
	case FaultSetRates:
		set := 0
		for name, v := range map[string]*float64{"snapshot_error_rate": f.SnapshotErrorRate, "patch_failure_rate": f.PatchFailureRate,
			"reboot_required_rate": f.RebootRequiredRate} {
			if v == nil {
				continue
			}
			set++
			if err := rateErr(name, *v); err != nil {
				errs = append(errs, err)
			}
		}
		if set == 0 {
			errs = append(errs, errors.New("snapshot_error_rate, patch_failure_rate or reboot_required_rate: at least one is required"))
		}
	case FaultStopInstance, FaultStartInstance, FaultTerminateInstance, FaultDropAgent, FaultRestoreAgent,
		FaultFailNextInstall, FaultFailNextSnapshot, FaultImpair, FaultUnimpair:
		if f.InstanceID == "" {
			errs = append(errs, fmt.Errorf("instance_id: required for %s", f.Kind))
		}
		if f.Count < 0 {
			errs = append(errs, fmt.Errorf("count %d: must be >= 0", f.Count))
		}
	default:
		errs = append(errs, fmt.Errorf("kind %q: must be one of throttle, error, latency, set-rates, stop-instance, start-instance, "+
			"terminate-instance, drop-agent, restore-agent, fail-next-install, fail-next-snapshot, impair, unimpair", f.Kind))
	}
	return errors.Join(errs...)
}

// callFault is an injected throttle or error rule with what is left of its count.
type callFault struct {
	Fault
	left int
}

// faultSet decides per call whether a fault fires: the static rates of the configuration and
// the rules injected at run time.
type faultSet struct {
	static map[string]OperationFaults
	mu     sync.Mutex
	delays map[string]OperationFaults // latency set at run time, by operation pattern
	rules  []*callFault
	rng    *rand.Rand
	// none is true while there is nothing to apply: no configured faults, no latency and no
	// rule set at run time. A call then skips the lock and the lookups (changed under mu).
	none atomic.Bool
}

func newFaultSet(static map[string]OperationFaults, seed int64) *faultSet {
	// Sampling which calls a fault hits needs no cryptographic randomness.
	f := &faultSet{static: static, rng: rand.New(rand.NewPCG(uint64(seed), 0x636c6f756473696d))} //nolint:gosec // G404: fault sampling, not security
	f.none.Store(len(static) == 0)
	return f
}

// changed updates none after the run-time faults changed; the caller holds mu.
func (f *faultSet) changed() {
	f.none.Store(len(f.static) == 0 && len(f.delays) == 0 && len(f.rules) == 0)
}

// operationFaults is the most specific static entry for the operation.
func (f *faultSet) operationFaults(service, op string) OperationFaults {
	if o, ok := f.static[service+":"+op]; ok {
		return o
	}
	if o, ok := f.static[op]; ok {
		return o
	}
	return f.static["*"]
}

// latency is the latency of one call: set at run time, or configured.
func (f *faultSet) latency(service, op string) time.Duration {
	if f.none.Load() {
		return 0
	}
	o := f.operationFaults(service, op)
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, key := range []string{service + ":" + op, op, service + ":*", "*"} {
		if r, ok := f.delays[key]; ok {
			o = r
			break
		}
	}
	d := o.Latency
	if o.Jitter > 0 {
		d += time.Duration(f.rng.Int64N(int64(o.Jitter)))
	}
	return d
}

// setLatency sets an operation's latency at run time.
func (f *faultSet) setLatency(op string, latency, jitter time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.delays == nil {
		f.delays = map[string]OperationFaults{}
	}
	f.delays[op] = OperationFaults{Latency: latency, Jitter: jitter}
	f.changed()
}

// decide returns the fault kind (FaultThrottle or FaultError) that fires for this call, with
// its code, message and status, or "".
func (f *faultSet) decide(service, op, account string) (kind string, fault Fault) {
	if f.none.Load() {
		return "", Fault{}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, r := range f.rules {
		if !matchOperation(r.Operation, service, op) || (r.Account != "" && r.Account != account) {
			continue
		}
		if r.Rate > 0 && f.rng.Float64() >= r.Rate {
			continue
		}
		if r.Count > 0 {
			r.left--
			if r.left <= 0 {
				f.rules = append(f.rules[:i:i], f.rules[i+1:]...)
				f.changed()
			}
		}
		return r.Kind, r.Fault
	}
	o := f.operationFaults(service, op)
	if o.ThrottleRate > 0 && f.rng.Float64() < o.ThrottleRate {
		return FaultThrottle, Fault{}
	}
	if o.ErrorRate > 0 && f.rng.Float64() < o.ErrorRate {
		return FaultError, Fault{Code: o.ErrorCode}
	}
	return "", Fault{}
}

func (f *faultSet) add(r Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &callFault{Fault: r, left: r.Count})
	f.changed()
}

func (f *faultSet) list() []Fault {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Fault, 0, len(f.rules))
	for _, r := range f.rules {
		x := r.Fault
		if x.Count > 0 {
			x.Count = r.left
		}
		out = append(out, x)
	}
	return out
}

func (f *faultSet) clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
	f.delays = nil
	f.changed()
}

func matchOperation(pattern, service, op string) bool {
	if pattern == "*" || pattern == op {
		return true
	}
	svc, name, ok := strings.Cut(pattern, ":")
	return ok && svc == service && (name == op || name == "*")
}

// statusForCode is the HTTP status AWS uses for an error code.
func statusForCode(code string) int {
	switch {
	case strings.HasPrefix(code, "Internal"):
		return 500
	case code == "RequestLimitExceeded", code == "ServiceUnavailable", code == "SlowDown", code == "Unavailable":
		return 503
	case code == "AuthFailure":
		return 401
	case code == "UnauthorizedOperation", code == "AccessDenied", code == "AccessDeniedException",
		code == "InvalidClientTokenId", code == "SignatureDoesNotMatch", code == "ExpiredToken",
		code == "InvalidAccessKeyId":
		return 403
	case strings.HasSuffix(code, ".NotFound"), code == "NoSuchKey", code == "NoSuchBucket", code == "NotFound":
		if strings.Contains(code, ".") {
			return 400 // EC2 answers its NotFound codes with 400
		}
		return 404
	default:
		return 400
	}
}

// applyInstanceFault changes an instance as a run-time fault asks.
func (w *world) applyInstanceFault(f Fault, now time.Time) error {
	in := w.instances[f.InstanceID]
	if in == nil {
		return fmt.Errorf("instance_id %q: no such instance", f.InstanceID)
	}
	w.settle(in, now)
	switch f.Kind {
	case FaultStopInstance:
		if in.State == "running" || in.State == "pending" {
			in.State, in.StateSince = "stopping", now
		}
	case FaultStartInstance:
		if in.State == "stopped" || in.State == "stopping" {
			in.State, in.StateSince = "pending", now
		}
	case FaultTerminateInstance:
		if in.State != "terminated" {
			in.State, in.StateSince = "shutting-down", now
		}
	case FaultDropAgent:
		in.AgentDropped = true
	case FaultRestoreAgent:
		in.AgentDropped = false
	case FaultFailNextInstall:
		n := f.Count
		if n == 0 {
			n = 1
		}
		in.FailNextInstalls += n
	case FaultFailNextSnapshot:
		in.FailNextSnaps += max(1, f.Count)
	case FaultImpair:
		in.Impaired = true
	case FaultUnimpair:
		in.Impaired = false
	}
	w.markInstance(in)
	w.settle(in, now) // a zero StateChange settles at once
	return nil
}
