package app

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

// RunControl is a control command on one run: who (the caller's subject) and why.
type RunControl struct {
	Ref    domain.RunRef
	Actor  string
	Reason string
	// RequestID makes RerunFailed idempotent when set.
	RequestID string
}

func (c RunControl) validate() error {
	var v apierr.Violations
	if err := c.Ref.Validate(); err != nil {
		return err
	}
	if err := design.ValidateReason("reason", c.Reason, false); err != nil {
		return err
	}
	if len(c.RequestID) > domain.MaxRequestIDLen {
		v.Add("request_id", fmt.Sprintf("must be at most %d characters, got %d", domain.MaxRequestIDLen, len(c.RequestID)))
	}
	return v.Err()
}

// controlled reads the run a control command is about.
func (a *Application) controlled(ctx context.Context, c RunControl) (domain.Run, error) {
	if err := c.validate(); err != nil {
		return domain.Run{}, err
	}
	return a.GetRun(ctx, c.Ref)
}

// CancelRun cancels a run that has not ended (RUNNING, or not started yet): nothing more is
// released, the jobs in flight finish, then RunCompleted says CANCELLED. Any other state is
// a TransitionError (412) naming it.
func (a *Application) CancelRun(ctx context.Context, c RunControl) (domain.Run, error) {
	r, err := a.controlled(ctx, c)
	if err != nil {
		return domain.Run{}, err
	}
	if err := domain.CheckRun(r.ID, r.State, typesv1.RunState_RUN_STATE_CANCELLED); err != nil {
		return domain.Run{}, err
	}
	now := a.clock().UTC()
	ev, err := events.New(r.Tenant, r.ID, &eventsv1.RunCancelled{
		Tenant: r.Tenant, RunId: r.ID, Wave: r.Wave, Actor: c.Actor, Reason: c.Reason, At: timestamppb.New(now),
	})
	if err != nil {
		return domain.Run{}, err
	}
	ev.Time = now
	if err := a.publish(ctx, ev); err != nil {
		return domain.Run{}, fmt.Errorf("%w: cancel run %s: %w", domain.ErrUnavailable, r.ID, err)
	}
	a.log.InfoContext(ctx, "run cancelled", "tenant", r.Tenant, "run_id", r.ID, "actor", c.Actor, "reason", c.Reason)
	r.State = typesv1.RunState_RUN_STATE_CANCELLED
	return r, nil
}

// PauseRun stops a RUNNING run that is not paused from releasing jobs; ResumeRun lets a paused
// one release again. Either is a TransitionError (412) naming the state otherwise.
func (a *Application) PauseRun(ctx context.Context, c RunControl) (domain.Run, error) {
	return a.pauseResume(ctx, c, true)
}

// ResumeRun lets a paused run release jobs again (see PauseRun).
func (a *Application) ResumeRun(ctx context.Context, c RunControl) (domain.Run, error) {
	return a.pauseResume(ctx, c, false)
}

func (a *Application) pauseResume(ctx context.Context, c RunControl, pause bool) (domain.Run, error) {
	r, err := a.controlled(ctx, c)
	if err != nil {
		return domain.Run{}, err
	}
	check := domain.CheckResume
	if pause {
		check = domain.CheckPause
	}
	if err := check(r.ID, r.State, r.Paused); err != nil {
		return domain.Run{}, err
	}
	now := a.clock().UTC()
	var msg proto.Message
	if pause {
		msg = &eventsv1.RunPaused{Tenant: r.Tenant, RunId: r.ID, Actor: c.Actor, Reason: c.Reason, At: timestamppb.New(now)}
	} else {
		msg = &eventsv1.RunResumed{Tenant: r.Tenant, RunId: r.ID, Actor: c.Actor, Reason: c.Reason, At: timestamppb.New(now)}
	}
	// Each pause and resume is its own event: the key is the run and the instant.
	ev, err := events.New(r.Tenant, r.ID+"/"+strconv.FormatInt(now.UnixNano(), 10), msg)
	if err != nil {
		return domain.Run{}, err
	}
	ev.Time = now
	if err := a.publish(ctx, ev); err != nil {
		return domain.Run{}, fmt.Errorf("%w: %s run %s: %w", domain.ErrUnavailable, map[bool]string{true: "pause", false: "resume"}[pause], r.ID, err)
	}
	a.log.InfoContext(ctx, map[bool]string{true: "run paused", false: "run resumed"}[pause], "tenant", r.Tenant, "run_id", r.ID, "actor", c.Actor)
	a.awaitRun(ctx, r, func(cur domain.Run) bool { return cur.Paused == pause || cur.State != r.State })
	r.Paused = pause
	return r, nil
}

// applyWait bounds how long a control call waits for the run's read model to show what it did.
const applyWait = 3 * time.Second

// awaitRun waits, briefly, until the run's read model has run r and shows what done checks
// (the projection applies the event a control call published a moment later), so a call made
// after this one answered reads it: a second pause is 412 naming the paused run, a re-run just
// started is found. Past the wait the answer stands: the event is stored and applies later.
func (a *Application) awaitRun(ctx context.Context, r domain.Run, done func(domain.Run) bool) {
	deadline := time.Now().Add(applyWait)
	for delay := time.Millisecond; ; delay = min(2*delay, 50*time.Millisecond) {
		cur, ok, err := a.repo.Run(ctx, r.Tenant, r.ID)
		if err != nil || (ok && done(cur)) || !time.Now().Before(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

// RerunFailed starts a new run of a HALTED or COMPLETED_WITH_ERRORS run's failed instances
// (snapshot failed, failed, timed out), with the same pin, within the same window: refused
// (412) once the run's dispatch stop has passed. With a request id the new run's id derives
// from it, and a repeat returns that run.
func (a *Application) RerunFailed(ctx context.Context, c RunControl) (domain.Run, error) {
	r, err := a.controlled(ctx, c)
	if err != nil {
		return domain.Run{}, err
	}
	if err := domain.CheckRerun(r.ID, r.State); err != nil {
		return domain.Run{}, err
	}
	now := a.clock().UTC()
	if l := r.Detail.Limits; !l.StopAt.IsZero() && !now.Before(l.StopAt) {
		return domain.Run{}, fmt.Errorf("%w: run %s is %s and its window closed for new jobs at %s (%s)",
			domain.ErrFailedPrecondition, r.ID, domain.RunStateName(r.State), l.StopAt.Format("2006-01-02T15:04:05Z"), l.StopReason)
	}
	runID := ""
	if c.RequestID != "" {
		runID = domain.RunIDForRequest(r.Tenant, r.Wave, "rerun\x00"+r.ID+"\x00"+c.RequestID)
		if again, ok, err := a.repo.Run(ctx, r.Tenant, runID); err != nil || ok {
			return again, err
		}
	}
	m, err := a.members(ctx, r)
	if err != nil {
		return domain.Run{}, fmt.Errorf("%w: %w", domain.ErrUnavailable, err)
	}
	failed := map[string]bool{}
	for _, o := range []domain.Outcome{domain.OutcomeFailed, domain.OutcomeSnapshotFailed, domain.OutcomeTimedOut} {
		ids, err := a.repo.OutcomeIDs(ctx, r.Tenant, r.ID, o)
		if err != nil {
			return domain.Run{}, err
		}
		for _, id := range ids {
			failed[id] = true
		}
	}
	var members []*typesv1.Member
	for _, i := range m.eligible {
		if failed[m.all[i].id] {
			members = append(members, m.proto(i))
		}
	}
	if len(members) == 0 {
		return domain.Run{}, fmt.Errorf("%w: run %s has no failed instance to run again", domain.ErrFailedPrecondition, r.ID)
	}
	var window *domain.Window
	if l := r.Detail.Limits; !l.WindowEnd.IsZero() || !l.StopAt.IsZero() {
		// The same stop as the run's: its window end less the cutoff, or its freeze.
		window = &domain.Window{End: l.WindowEnd, FreezeStart: l.StopAt, FreezeNote: l.StopReason}
		if window.End.IsZero() {
			window.End = l.StopAt
		}
	}
	next, err := a.Start(ctx, StartSpec{
		Tenant: r.Tenant, RunID: runID, Wave: r.Wave, Pins: r.Detail.Pins, Members: members, Window: window, RerunOf: r.ID,
	})
	if err != nil {
		return domain.Run{}, err
	}
	a.log.InfoContext(ctx, "failed instances run again", "tenant", r.Tenant, "run_id", next.ID, "rerun_of", r.ID,
		"instances", len(members), "actor", c.Actor, "reason", c.Reason)
	a.awaitRun(ctx, next, func(domain.Run) bool { return true })
	return next, nil
}

// JobsQuery pages through a run's jobs.
type JobsQuery struct {
	Ref domain.RunRef
	// States filters; empty means all.
	States    []typesv1.JobState
	PageSize  int
	PageToken string
}

// Job is one instance of a run and its job's state.
type Job struct {
	Member     *typesv1.Member
	State      typesv1.JobState
	BaselineID string
}

// Job listing bounds.
const (
	defaultJobsPage = 100
	maxJobsPage     = 1000
)

// ListRunJobs returns a page of a run's jobs, by instance id, in the given states; the token
// is the last instance id of the previous page (so a page is right whatever changed since).
func (a *Application) ListRunJobs(ctx context.Context, q JobsQuery) ([]Job, string, error) {
	var v apierr.Violations
	if q.PageSize < 0 || q.PageSize > maxJobsPage {
		v.Add("page_size", fmt.Sprintf("must be from 1 to %d (0: %d), got %d", maxJobsPage, defaultJobsPage, q.PageSize))
	}
	for i, s := range q.States {
		if _, ok := typesv1.JobState_name[int32(s)]; !ok || s == typesv1.JobState_JOB_STATE_UNSPECIFIED {
			v.Add(fmt.Sprintf("states[%d]", i), fmt.Sprintf("must be a job state such as JOB_STATE_FAILED, got %d", s))
		}
	}
	if err := v.Err(); err != nil {
		return nil, "", err
	}
	if q.PageSize == 0 {
		q.PageSize = defaultJobsPage
	}
	r, err := a.GetRun(ctx, q.Ref)
	if err != nil {
		return nil, "", err
	}
	m, err := a.members(ctx, r)
	if err != nil {
		return nil, "", fmt.Errorf("%w: %w", domain.ErrUnavailable, err)
	}
	sets := map[domain.Outcome]map[string]bool{}
	for _, o := range []domain.Outcome{domain.OutcomeSnapshotted, domain.OutcomeSnapshotFailed, domain.OutcomeSucceeded, domain.OutcomeFailed, domain.OutcomeTimedOut} {
		ids, err := a.repo.OutcomeIDs(ctx, r.Tenant, r.ID, o)
		if err != nil {
			return nil, "", err
		}
		sets[o] = toSet(ids)
	}
	requestedIDs, err := a.repo.RequestedIDs(ctx, r.Tenant, r.ID)
	if err != nil {
		return nil, "", err
	}
	requested := toSet(requestedIDs)
	over := r.Ledger().DispatchOver()
	pins := map[string]string{}
	for _, p := range r.Detail.Pins {
		pins[p.OSFamily] = p.BaselineID
	}
	all := make([]int32, len(m.all))
	for i := range all {
		all[i] = int32(i)
	}
	slices.SortFunc(all, func(x, y int32) int { return strings.Compare(m.all[x].id, m.all[y].id) })
	var out []Job
	for _, i := range all {
		id, status := m.all[i].id, m.all[i].status
		if id <= q.PageToken {
			continue
		}
		state := domain.MemberJobState(status, over)
		if status == typesv1.MemberStatus_MEMBER_STATUS_ELIGIBLE {
			switch {
			case sets[domain.OutcomeSucceeded][id]:
				state = typesv1.JobState_JOB_STATE_SUCCEEDED
			case sets[domain.OutcomeFailed][id]:
				state = typesv1.JobState_JOB_STATE_FAILED
			case sets[domain.OutcomeTimedOut][id]:
				state = typesv1.JobState_JOB_STATE_TIMED_OUT
			case sets[domain.OutcomeSnapshotFailed][id]:
				state = typesv1.JobState_JOB_STATE_SNAPSHOT_FAILED
			case sets[domain.OutcomeSnapshotted][id]:
				state = typesv1.JobState_JOB_STATE_INSTALLING
			case requested[id]:
				state = typesv1.JobState_JOB_STATE_SNAPSHOTTING
			}
		}
		if len(q.States) > 0 && !slices.Contains(q.States, state) {
			continue
		}
		baselineID := pins[m.family(i)]
		if len(r.Detail.Pins) == 0 {
			baselineID = r.BaselineID
		}
		out = append(out, Job{Member: m.proto(i), State: state, BaselineID: baselineID})
		if len(out) == q.PageSize+1 {
			break
		}
	}
	next := ""
	if len(out) > q.PageSize {
		out = out[:q.PageSize]
		next = out[len(out)-1].Member.GetInstanceId()
	}
	return out, next, nil
}

func toSet(ids []string) map[string]bool {
	s := make(map[string]bool, len(ids))
	for _, id := range ids {
		s[id] = true
	}
	return s
}
