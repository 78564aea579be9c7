package app

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain"
)

// ApplyBaseline is the baselines projection: it records every catalog.baseline.published.
func (a *Application) ApplyBaseline(ctx context.Context, ev *events.Event, _ bool) error {
	msg, ok := ev.Data.(*eventsv1.BaselinePublished)
	if !ok {
		return bus.Permanent(fmt.Errorf("baselines projection: unexpected event type %s", ev.Type))
	}
	if msg.GetBaselineId() == "" {
		return bus.Permanent(fmt.Errorf("baseline published %s: baseline_id is empty", ev.ID))
	}
	b := domain.Baseline{
		ID: msg.GetBaselineId(), OSFamily: msg.GetOsFamily(), Version: msg.GetVersion(),
		PublishedAt: msg.GetPublishedAt().AsTime().UTC(), Emergency: msg.GetEmergency(),
	}
	for _, p := range msg.GetPatches() {
		b.PatchIDs = append(b.PatchIDs, p.GetId())
	}
	if err := a.repo.PutBaseline(ctx, b); err != nil {
		return err
	}
	return a.repo.SetCheckpoint(ctx, ProjectionBaselines, ev.Sequence)
}

// BaselinesCaughtUp marks the baselines read model ready.
func (a *Application) BaselinesCaughtUp(context.Context) error {
	a.baselinesOnce.Do(func() { close(a.baselinesReady) })
	return nil
}

// ApplyRun is the runs projection: run records, membership chunks, released jobs, control
// events and per-outcome instance sets. When live, it wakes the run controller for the run of
// each event.
func (a *Application) ApplyRun(ctx context.Context, ev *events.Event, live bool) error {
	tenant := ev.Tenant
	var err error
	runID := ""
	switch msg := ev.Data.(type) {
	case *eventsv1.RunMembership:
		if msg.GetRunId() == "" || msg.GetMembershipId() == "" {
			return bus.Permanent(fmt.Errorf("run membership %s: run_id and membership_id are required", ev.ID))
		}
		data, merr := proto.Marshal(msg)
		if merr != nil {
			return bus.Permanent(fmt.Errorf("run membership %s: %w", ev.ID, merr))
		}
		err = a.repo.PutChunk(ctx, tenant, msg.GetRunId(), msg.GetMembershipId(), int(msg.GetChunk()), data)
	case *eventsv1.RunStarted:
		if msg.GetRunId() == "" {
			return bus.Permanent(fmt.Errorf("run started %s: run_id is empty", ev.ID))
		}
		runID = msg.GetRunId()
		var r domain.Run
		if r, err = a.runOf(ctx, tenant, msg); err == nil {
			err = a.repo.RunStarted(ctx, r)
		}
		if err == nil && live {
			a.ctl.track(tenant, runID)
		}
	case *eventsv1.JobRequested:
		runID = msg.GetRunId()
		if runID == "" || msg.GetInstanceId() == "" {
			return bus.Permanent(fmt.Errorf("%s: run_id and instance_id are required", ev.ID))
		}
		if err = a.repo.AddRequested(ctx, tenant, runID, msg.GetInstanceId()); err == nil {
			a.ctl.released(tenant, runID, msg.GetInstanceId(), msg.GetIndex())
		}
	case *eventsv1.RunHalted:
		runID = msg.GetRunId()
		err = a.repo.RunControl(ctx, tenant, runID, domain.ControlHalted, ev.Sequence, ev.Time)
	case *eventsv1.RunCancelled:
		runID = msg.GetRunId()
		err = a.repo.RunControl(ctx, tenant, runID, domain.ControlCancelled, ev.Sequence, ev.Time)
	case *eventsv1.RunDispatchStopped:
		runID = msg.GetRunId()
		err = a.repo.RunControl(ctx, tenant, runID, domain.ControlStopped, ev.Sequence, ev.Time)
	case *eventsv1.RunPaused:
		runID = msg.GetRunId()
		err = a.repo.RunControl(ctx, tenant, runID, domain.ControlPaused, ev.Sequence, ev.Time)
	case *eventsv1.RunResumed:
		runID = msg.GetRunId()
		err = a.repo.RunControl(ctx, tenant, runID, domain.ControlResumed, ev.Sequence, ev.Time)
	case *eventsv1.RunCompleted:
		if msg.GetRunId() == "" {
			return bus.Permanent(fmt.Errorf("run completed %s: run_id is empty", ev.ID))
		}
		err = a.repo.RunCompleted(ctx, tenant, msg.GetRunId(), msg.GetState(), msg.GetCompletedAt().AsTime())
		if err == nil {
			a.ctl.untrack(tenant, msg.GetRunId())
		}
	case *eventsv1.SnapshotCreated:
		err = a.outcome(ctx, ev, msg.GetRunId(), msg.GetInstanceId(), domain.OutcomeSnapshotted)
	case *eventsv1.SnapshotFailed:
		runID = msg.GetRunId()
		err = a.outcome(ctx, ev, msg.GetRunId(), msg.GetInstanceId(), domain.OutcomeSnapshotFailed)
	case *eventsv1.InstallSucceeded:
		runID = msg.GetRunId()
		err = a.outcome(ctx, ev, msg.GetRunId(), msg.GetInstanceId(), domain.OutcomeSucceeded)
		if err == nil && (msg.GetJobState() == typesv1.JobState_JOB_STATE_SUCCEEDED_PENDING_REBOOT || msg.GetRebootPending()) {
			err = a.repo.PendingReboot(ctx, tenant, msg.GetRunId(), msg.GetInstanceId())
		}
	case *eventsv1.InstallFailed:
		runID = msg.GetRunId()
		o := domain.OutcomeFailed
		if msg.GetJobState() == typesv1.JobState_JOB_STATE_TIMED_OUT {
			o = domain.OutcomeTimedOut
		}
		err = a.outcome(ctx, ev, msg.GetRunId(), msg.GetInstanceId(), o)
	default:
		return bus.Permanent(fmt.Errorf("runs projection: unexpected event type %s", ev.Type))
	}
	if err != nil {
		return err
	}
	if live && runID != "" {
		a.ctl.touch(tenant, runID)
	}
	return a.repo.SetCheckpoint(ctx, ProjectionRuns, ev.Sequence)
}

// runOf reads a run's record from its RunStarted. A RunStarted from before membership chunks
// lists its instances itself: they become one chunk of eligible members under the id
// legacyMembership (older runs pinned one baseline for every instance).
func (a *Application) runOf(ctx context.Context, tenant string, msg *eventsv1.RunStarted) (domain.Run, error) {
	r := domain.Run{
		Tenant: tenant, ID: msg.GetRunId(), Wave: msg.GetWave(), BaselineID: msg.GetBaselineId(),
		StartedAt: msg.GetStartedAt().AsTime().UTC(),
		Detail: domain.RunDetail{
			MembershipID: msg.GetMembershipId(), Chunks: int(msg.GetMembership().GetChunks()),
			Eligible: int(msg.GetMembership().GetEligible()), Missed: int(msg.GetMembership().GetStopped()),
			NoAgent: int(msg.GetMembership().GetNoAgent()), NoBaseline: int(msg.GetMembership().GetNoBaseline()),
			Limits: limitsOf(msg.GetLimits()), Pins: pinsOf(msg.GetPins()), RerunOf: msg.GetRerunOf(),
		},
		Total: int(msg.GetMembership().GetTotal()),
	}
	var err error
	if r.Detail.Policy, err = protojson.Marshal(msg.GetPolicy()); err != nil {
		return domain.Run{}, bus.Permanent(fmt.Errorf("run started %s: policy: %w", r.ID, err))
	}
	if msg.GetMembership() != nil {
		return r, nil
	}
	// An older event: its instances, by location, as one chunk.
	legacy := &eventsv1.RunMembership{Tenant: tenant, RunId: r.ID, Wave: r.Wave, MembershipId: legacyMembership, Chunks: 1}
	seen := map[string]bool{}
	for _, g := range legacyGroups(msg) {
		for _, id := range g.GetInstanceIds() {
			if id == "" || seen[id] {
				continue
			}
			seen[id] = true
			legacy.Members = append(legacy.Members, &typesv1.Member{
				InstanceId: id, Location: g.GetLocation(), Status: typesv1.MemberStatus_MEMBER_STATUS_ELIGIBLE,
			})
		}
	}
	data, err := proto.Marshal(legacy)
	if err != nil {
		return domain.Run{}, err
	}
	if err := a.repo.PutChunk(ctx, tenant, r.ID, legacyMembership, 0, data); err != nil {
		return domain.Run{}, err
	}
	r.Total, r.Detail.Eligible, r.Detail.MembershipID, r.Detail.Chunks = len(legacy.Members), len(legacy.Members), legacyMembership, 1
	r.Detail.Limits.ErrorBudget = r.Total // older runs had no rollout control
	return r, nil
}

// legacyGroups returns an older run's instances by location: its groups, or one group without
// a location (whose jobs fail naming it) for the oldest events.
func legacyGroups(msg *eventsv1.RunStarted) []*typesv1.InstanceGroup {
	if len(msg.GetGroups()) > 0 {
		return msg.GetGroups()
	}
	ids := slices.Clone(msg.GetInstanceIds())
	slices.Sort(ids)
	return []*typesv1.InstanceGroup{{InstanceIds: slices.Compact(ids)}}
}

func (a *Application) outcome(ctx context.Context, ev *events.Event, runID, instanceID string, o domain.Outcome) error {
	if runID == "" || instanceID == "" {
		return bus.Permanent(fmt.Errorf("%s: run_id and instance_id are required", ev.ID))
	}
	return a.repo.AddOutcome(ctx, ev.Tenant, runID, instanceID, o)
}

func (a *Application) publishCompleted(ctx context.Context, evs ...*events.Event) error {
	pub := a.publisher()
	if pub == nil {
		return errors.New("publish run completed: not attached to a bus")
	}
	if err := pub.Publish(ctx, evs...); err != nil {
		return fmt.Errorf("publish run completed: %w", err)
	}
	for _, ev := range evs {
		msg := ev.Data.(*eventsv1.RunCompleted)
		a.log.InfoContext(ctx, "run completed", "tenant", msg.GetTenant(), "run_id", msg.GetRunId(),
			"state", msg.GetState().String(), "total", msg.GetTotal(), "succeeded", msg.GetSucceeded(), "failed", msg.GetFailed(),
			"skipped", msg.GetSkipped(), "missed", msg.GetMissed())
	}
	return nil
}

// RunsCaughtUp hands every open run to the controller (which completes those that finished
// while no replica was live, and releases what a crash left unreleased), then marks the runs
// read model ready.
func (a *Application) RunsCaughtUp(ctx context.Context) error {
	open, err := a.repo.OpenRuns(ctx)
	if err != nil {
		return err
	}
	for _, ref := range open {
		head, ok, err := a.repo.RunHeader(ctx, ref.Tenant, ref.RunID)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if head.CompletedAt.IsZero() {
			a.ctl.track(ref.Tenant, ref.RunID)
			continue
		}
		// Completed, but the index missed it (a crash between the two writes): tidy up.
		if err := a.repo.UnindexOpen(ctx, ref.Tenant, ref.RunID); err != nil {
			return err
		}
	}
	a.runsOnce.Do(func() { close(a.runsReady) })
	return nil
}
