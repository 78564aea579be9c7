// Package stage is the kit the provider stages (snapshotter, installer) are built from, so that
// each keeps only its own logic:
//
//   - Handle and Track register typed bus handlers and trackers with a dead-letter hook, so a
//     job whose message is dead-lettered still gets its failure outcome.
//   - Batcher coalesces the concurrent handler calls of one replica into batched cloud calls
//     (size and linger, per-item results); Publisher does the same for outcome events.
//   - The start-then-track pattern: a handler starts a cloud operation (in a batch) and
//     publishes an "operation started" event; a tracker holds those events while the
//     operations run and follows them with batched reads, publishing the outcome when each
//     finishes. No worker waits for a cloud operation, so one replica keeps as many operations
//     in flight as its tracker holds.
//   - Tenant-qualified idempotency keys (Key, MarksProjection), the conversions between event
//     fields and provider types (Target, RebootPolicy), the error classification that decides
//     between a redelivery and a failure outcome (Retry), and config validation helpers.
package stage

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/idem"
	"github.com/patchwave/patchwave/libs/provider"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Key returns the idempotency key of one instance in one run of a tenant:
// "<tenant>/<run>/<instance>". Event keys (the CloudEvents subject) stay "<run>/<instance>":
// an event's subject already names its tenant.
func Key(tenant, runID, instanceID string) string { return tenant + "/" + runID + "/" + instanceID }

// EventKey returns the idempotency key of an event: its tenant and its business key.
func EventKey(ev *events.Event) string { return ev.Tenant + "/" + ev.Key }

// MarksProjection returns the projection that marks EventKey of every event on subjects in
// marks, so a stage can tell which jobs it has finished.
func MarksProjection(marks *idem.Marks, subjects ...string) bus.ProjectionSpec {
	return marks.Projection(EventKey, subjects...)
}

// Follow makes out continue in's correlation and trace, for an outcome published outside the
// handler call of its input (in a tracker's check, or for a batch).
func Follow(out, in *events.Event) *events.Event {
	if out.CorrelationID == "" {
		out.CorrelationID = in.CorrelationID
	}
	if out.TraceParent == "" {
		out.TraceParent = in.TraceParent
	}
	return out
}

// Next builds the event that follows in: msg under key for in's tenant, continuing in's
// correlation and trace, stamped at (the stage's clock, so an injected clock drives the times
// that read models compute from). It panics on a payload that is not an event, a programming
// error.
func Next(in *events.Event, key string, msg proto.Message, at time.Time) *events.Event {
	out := Follow(events.MustNew(in.Tenant, key, msg), in)
	out.Time = at
	return out
}

// Target returns where a job's instance lives. A job without a location cannot be carried out:
// the error names the field.
func Target(tenant string, loc *typesv1.Location) (provider.Target, error) {
	t := provider.Target{Tenant: tenant, Account: loc.GetAccount(), Region: loc.GetRegion()}
	var errs []error
	if t.Account == "" {
		errs = append(errs, errors.New("location.account: required"))
	}
	if t.Region == "" {
		errs = append(errs, errors.New("location.region: required"))
	}
	if err := provider.ValidateTenant(tenant); err != nil {
		errs = append(errs, err)
	}
	return t, errors.Join(errs...)
}

// Location is the event form of a target.
func Location(t provider.Target) *typesv1.Location {
	return &typesv1.Location{Account: t.Account, Region: t.Region}
}

// RebootPolicy maps the event's reboot policy to the provider's; unspecified is if-required.
func RebootPolicy(p typesv1.RebootPolicy) provider.RebootPolicy {
	switch p {
	case typesv1.RebootPolicy_REBOOT_POLICY_ALWAYS:
		return provider.RebootAlways
	case typesv1.RebootPolicy_REBOOT_POLICY_NEVER:
		return provider.RebootNever
	}
	return provider.RebootIfRequired
}

// RebootPolicyOf maps the provider's reboot policy to the event's.
func RebootPolicyOf(p provider.RebootPolicy) typesv1.RebootPolicy {
	switch p.OrDefault() {
	case provider.RebootAlways:
		return typesv1.RebootPolicy_REBOOT_POLICY_ALWAYS
	case provider.RebootNever:
		return typesv1.RebootPolicy_REBOOT_POLICY_NEVER
	}
	return typesv1.RebootPolicy_REBOOT_POLICY_IF_REQUIRED
}

// Retry decides what a cloud error means for a job. It returns the error for the handler to
// return, so the bus redelivers the message after a backoff: throttling marked bus.Throttled
// (waited out longer), other retryable errors and the end of ctx as they are. It returns nil for
// an error no retry can fix (access denied, invalid argument, not found, not running): that
// error is the job's outcome, which the caller publishes.
func Retry(ctx context.Context, err error) error {
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return fmt.Errorf("%w (%w)", err, ctx.Err())
	case errors.Is(err, provider.ErrThrottled):
		return bus.Throttled(err)
	case provider.IsRetryable(err), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return nil
}

// ValidateJob reports every problem with the job fields of an event received on a subject of
// eventTenant: a payload tenant, when set, must be the subject's, and run and instance ids are
// required tokens of the business key.
func ValidateJob(eventTenant, payloadTenant, runID, instanceID string) error {
	var errs []error
	if eventTenant == "" {
		errs = append(errs, errors.New("tenant: required (the event has no tenant)"))
	}
	if payloadTenant != "" && payloadTenant != eventTenant {
		errs = append(errs, fmt.Errorf("tenant %q: must equal the event's tenant %q", payloadTenant, eventTenant))
	}
	errs = append(errs, Token("run_id", runID), Token("instance_id", instanceID))
	return errors.Join(errs...)
}

// Token checks an id that becomes part of a business key: required, no '/' or white space.
func Token(field, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%s: required", field)
	case strings.ContainsAny(v, "/ \t\r\n"):
		return fmt.Errorf("%s %q: must not contain '/' or white space", field, v)
	}
	return nil
}

// Positive reports a duration that is not > 0, naming the field.
func Positive(field string, d time.Duration) error {
	if d <= 0 {
		return fmt.Errorf("%s %s: must be > 0", field, d)
	}
	return nil
}

// NonNegative reports a negative duration, naming the field.
func NonNegative(field string, d time.Duration) error {
	if d < 0 {
		return fmt.Errorf("%s %s: must not be negative", field, d)
	}
	return nil
}

// AtMost reports a duration d longer than limit, naming both fields.
func AtMost(field string, d time.Duration, limitField string, limit time.Duration) error {
	if d > limit {
		return fmt.Errorf("%s %s: must not exceed %s %s", field, d, limitField, limit)
	}
	return nil
}

// IntRange reports n outside lo..hi, naming the field.
func IntRange(field string, n, lo, hi int) error {
	if n < lo || n > hi {
		return fmt.Errorf("%s %d: must be from %d to %d", field, n, lo, hi)
	}
	return nil
}

// Timestamp is t as an event timestamp; the zero time is no timestamp.
func Timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}
