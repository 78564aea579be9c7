package design

import (
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/apierr"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Built-in defaults of a rollout policy's unset fields.
const (
	DefaultMaxConcurrencyPercent   = 10
	DefaultErrorBudgetPercent      = 5
	DefaultSuccessThresholdPercent = 95
	maxCount                       = 100000
)

// NormalizePolicy returns a copy of p with every unset field set to its built-in default
// (10% concurrency, 5% error budget, no cutoff, reboot if required, 95% success threshold), and
// durations in canonical form. The instance timeout stays empty when unset: it then means the
// window's length. A nil p gives the built-in policy.
func NormalizePolicy(p *typesv1.RolloutPolicy) *typesv1.RolloutPolicy {
	n := &typesv1.RolloutPolicy{}
	if p != nil {
		n = proto.Clone(p).(*typesv1.RolloutPolicy)
	}
	if n.GetMaxConcurrency().GetValue() == nil {
		n.MaxConcurrency = Percent(DefaultMaxConcurrencyPercent)
	}
	if n.GetErrorBudget().GetValue() == nil {
		n.ErrorBudget = Percent(DefaultErrorBudgetPercent)
	}
	if n.GetCutoff() == "" {
		n.Cutoff = "0s"
	} else if d, err := time.ParseDuration(n.GetCutoff()); err == nil {
		n.Cutoff = FormatDuration(d)
	}
	if n.GetInstanceTimeout() != "" {
		if d, err := time.ParseDuration(n.GetInstanceTimeout()); err == nil {
			n.InstanceTimeout = FormatDuration(d)
		}
	}
	if n.GetRebootPolicy() == typesv1.RebootPolicy_REBOOT_POLICY_UNSPECIFIED {
		n.RebootPolicy = typesv1.RebootPolicy_REBOOT_POLICY_IF_REQUIRED
	}
	if n.GetSuccessThresholdPercent() == 0 {
		n.SuccessThresholdPercent = DefaultSuccessThresholdPercent
	}
	return n
}

// Percent is an Amount of pct percent.
func Percent(pct int32) *typesv1.Amount {
	return &typesv1.Amount{Value: &typesv1.Amount_Percent{Percent: pct}}
}

// Count is an Amount of n instances.
func Count(n int32) *typesv1.Amount {
	return &typesv1.Amount{Value: &typesv1.Amount_Count{Count: n}}
}

// checkPolicy validates a normalized policy's fields; prefix starts every field name
// ("policy.", "defaultPolicy."). The rules: concurrency count 1..100000 or percent 1..100; error
// budget count 0..100000 or percent 1..100; cutoff a whole number of minutes, at least 0;
// instance timeout at least 1m; success threshold 1..100. The window rules are
// checkPolicyWindow's.
func checkPolicy(v *apierr.Violations, prefix string, p *typesv1.RolloutPolicy) {
	checkAmount(v, prefix+"maxConcurrency", p.GetMaxConcurrency(), 1)
	checkAmount(v, prefix+"errorBudget", p.GetErrorBudget(), 0)
	checkDuration(v, prefix+"cutoff", p.GetCutoff(), 0)
	if p.GetInstanceTimeout() != "" {
		checkDuration(v, prefix+"instanceTimeout", p.GetInstanceTimeout(), time.Minute)
	}
	if _, ok := typesv1.RebootPolicy_name[int32(p.GetRebootPolicy())]; !ok {
		v.Add(prefix+"rebootPolicy", fmt.Sprintf("must be REBOOT_POLICY_IF_REQUIRED, REBOOT_POLICY_ALWAYS or REBOOT_POLICY_NEVER, got %d", p.GetRebootPolicy()))
	}
	if t := p.GetSuccessThresholdPercent(); t < 1 || t > 100 {
		v.Add(prefix+"successThresholdPercent", fmt.Sprintf("must be a percentage from 1 to 100, got %d", t))
	}
}

// checkPolicyWindow checks a policy against the window it governs: the cutoff is shorter than
// the window and the instance timeout no longer. note says whose policy it is when it is not
// the wave's own (", the tenant's default policy, which wave 2 uses").
func checkPolicyWindow(v *apierr.Violations, prefix string, p *typesv1.RolloutPolicy, window time.Duration, note string) {
	if d, err := time.ParseDuration(p.GetCutoff()); err == nil && d >= window {
		v.Add(prefix+"cutoff", fmt.Sprintf("must be shorter than the window (%s), got %s%s", FormatDuration(window), FormatDuration(d), note))
	}
	if p.GetInstanceTimeout() == "" {
		return
	}
	if d, err := time.ParseDuration(p.GetInstanceTimeout()); err == nil && d > window {
		v.Add(prefix+"instanceTimeout", fmt.Sprintf("must be no longer than the window (%s), got %s%s", FormatDuration(window), FormatDuration(d), note))
	}
}

func checkAmount(v *apierr.Violations, field string, a *typesv1.Amount, minCount int32) {
	switch x := a.GetValue().(type) {
	case *typesv1.Amount_Count:
		if x.Count < minCount || x.Count > maxCount {
			v.Add(field+".count", fmt.Sprintf("must be from %d to %d instances, got %d", minCount, maxCount, x.Count))
		}
	case *typesv1.Amount_Percent:
		if x.Percent < 1 || x.Percent > 100 {
			v.Add(field+".percent", fmt.Sprintf("must be a percentage from 1 to 100, got %d", x.Percent))
		}
	}
}

// checkDuration parses a Go duration of whole minutes, at least least.
func checkDuration(v *apierr.Violations, field, s string, least time.Duration) (time.Duration, bool) {
	d, err := time.ParseDuration(s)
	switch {
	case err != nil:
		v.Add(field, fmt.Sprintf("must be a duration such as \"30m\" or \"1h30m\", got %q", s))
	case d%time.Minute != 0:
		v.Add(field, fmt.Sprintf("must be a whole number of minutes, got %q", s))
	case d < least:
		v.Add(field, fmt.Sprintf("must be at least %s, got %q", FormatDuration(least), s))
	default:
		return d, true
	}
	return 0, false
}
