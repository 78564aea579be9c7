// Package domain holds the installer's rules: the business key of a job, the no-snapshot-no-
// install rule, how provider results map to compliance states, and which errors are retried.
package domain

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/patchwave/patchwave/libs/provider"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// RefusalPrefix starts the reason of an InstallFailed published because the job has no
// completed pre-patch snapshot: the installer never installs without one.
const RefusalPrefix = "no completed pre-patch snapshot for this run: "

// Key returns the business key of one instance in one run, "<run>/<instance>": the key of
// InstallStarted, InstallSucceeded and InstallFailed and of the idempotency marks.
func Key(runID, instanceID string) string { return runID + "/" + instanceID }

// ValidateJob reports every problem with a SnapshotCreated received on a subject of
// eventTenant that prevents even naming the job. A payload tenant, when set, must be the
// subject's tenant.
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

func token(field, v string) error {
	switch {
	case v == "":
		return fmt.Errorf("%s: required", field)
	case strings.ContainsAny(v, "/ \t\r\n"):
		return fmt.Errorf("%s %q: must not contain '/' or white space", field, v)
	}
	return nil
}

// CheckSnapshot applies the no-snapshot-no-install rule: the provider's snapshot of the run
// (found, or the error of looking it up) must exist, be completed and be the snapshot the
// event names. It returns "" when the job may be installed, else the refusal reason.
func CheckSnapshot(snap provider.Snapshot, findErr error, wantID string) string {
	switch {
	case errors.Is(findErr, provider.ErrNotFound):
		return RefusalPrefix + "the provider has no snapshot of this instance for this run"
	case findErr != nil:
		return RefusalPrefix + findErr.Error()
	case wantID == "":
		return RefusalPrefix + "the event names no snapshot"
	case snap.ID != wantID:
		return RefusalPrefix + fmt.Sprintf("the event names snapshot %s but the run's snapshot is %s", wantID, snap.ID)
	case snap.State != provider.SnapshotCompleted:
		return RefusalPrefix + fmt.Sprintf("snapshot %s is %s", snap.ID, snap.State)
	}
	return ""
}

// Retry reports whether a provider error must be retried by redelivering the event rather
// than become the job's outcome: a retryable provider error or the end of the handler's context
// (shutdown). Any other error will not go away on retry, so it is the job's outcome.
func Retry(ctx context.Context, err error) bool {
	return provider.IsRetryable(err) || ctx.Err() != nil
}

// PatchState maps a provider patch state to the compliance state in events.
func PatchState(s provider.PatchState) typesv1.PatchState {
	switch s {
	case provider.PatchInstalled:
		return typesv1.PatchState_PATCH_STATE_INSTALLED
	case provider.PatchInstalledOther:
		return typesv1.PatchState_PATCH_STATE_INSTALLED_OTHER
	case provider.PatchInstalledPendingReboot:
		return typesv1.PatchState_PATCH_STATE_INSTALLED_PENDING_REBOOT
	case provider.PatchInstalledRejected:
		return typesv1.PatchState_PATCH_STATE_INSTALLED_REJECTED
	case provider.PatchMissing:
		return typesv1.PatchState_PATCH_STATE_MISSING
	case provider.PatchFailed:
		return typesv1.PatchState_PATCH_STATE_FAILED
	case provider.PatchNotApplicable:
		return typesv1.PatchState_PATCH_STATE_NOT_APPLICABLE
	}
	return typesv1.PatchState_PATCH_STATE_UNSPECIFIED
}

// Results maps an installation's per-patch results, and reports whether any patch waits for
// a reboot.
func Results(in []provider.PatchResult) (out []*typesv1.PatchResult, rebootPending bool) {
	out = make([]*typesv1.PatchResult, 0, len(in))
	for _, r := range in {
		st := PatchState(r.State)
		rebootPending = rebootPending || st == typesv1.PatchState_PATCH_STATE_INSTALLED_PENDING_REBOOT
		out = append(out, &typesv1.PatchResult{PatchId: r.PatchID, State: st, Error: r.Error})
	}
	return out, rebootPending
}

// FailureReason says why a terminal installation did not succeed.
func FailureReason(in provider.Installation) string {
	if in.Error != "" {
		return fmt.Sprintf("installation %s %s: %s", in.ID, in.State, in.Error)
	}
	return fmt.Sprintf("installation %s %s", in.ID, in.State)
}
