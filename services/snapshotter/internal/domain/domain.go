// Package domain holds the snapshotter's rules: the business key of a job, what a job request
// must carry, and how provider errors turn into outcomes.
package domain

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/patchwave/patchwave/libs/provider"
)

// Tag keys put on every pre-patch snapshot, so that snapshots can be found, audited and later
// deleted by retention per tenant, run and instance.
const (
	TagTenant   = "patchwave:tenant"
	TagRun      = "patchwave:run"
	TagInstance = "patchwave:instance"
)

// Key returns the business key of one instance in one run, "<run>/<instance>": the key of
// SnapshotCreated and SnapshotFailed and of the idempotency marks.
func Key(runID, instanceID string) string { return runID + "/" + instanceID }

// ValidateJob reports every problem with a job request received on a subject of eventTenant.
// A payload tenant, when set, must be the subject's tenant.
func ValidateJob(eventTenant, payloadTenant, runID, instanceID string) error {
	var errs []error
	if eventTenant == "" {
		errs = append(errs, errors.New("tenant: required (the event has no tenant)"))
	}
	if payloadTenant != "" && payloadTenant != eventTenant {
		errs = append(errs, fmt.Errorf("tenant %q: must equal the event's tenant %q", payloadTenant, eventTenant))
	}
	errs = append(errs, token("run_id", runID), token("instance_id", instanceID))
	return errors.Join(errs...)
}

// token checks an id that becomes part of a business key.
func token(field, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%s: required", field)
	case strings.ContainsAny(v, "/ \t\r\n"):
		return fmt.Errorf("%s %q: must not contain '/' or white space", field, v)
	}
	return nil
}

// Tags returns the tags of the snapshot of instanceID in runID.
func Tags(tenant, runID, instanceID string) map[string]string {
	return map[string]string{TagTenant: tenant, TagRun: runID, TagInstance: instanceID}
}

// Retry reports whether a provider error must be retried by redelivering the event rather than
// become the job's outcome: a retryable provider error (throttling, a transient transport or
// 5xx error) or the end of the handler's context (shutdown). Any other error will not go away
// on retry, so it is the job's outcome: SnapshotFailed with the error as reason.
func Retry(ctx context.Context, err error) bool {
	return provider.IsRetryable(err) || ctx.Err() != nil
}
