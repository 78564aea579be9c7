package app

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/stage"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/installer/internal/domain"
)

type tracked = stage.Tracked[*eventsv1.InstallStarted]

// TrackInstallations follows the held installations, per target: one GetInstallations call
// (one ListCommandInvocations per command), then for each installation:
//
//   - still running past its deadline (the job policy's per-instance timeout from its start):
//     CancelInstallation and an InstallFailed with job state TIMED_OUT;
//   - failed at the cloud: its per-patch results and an InstallFailed naming the failed patches;
//   - succeeded: the reboot policy (always: one Reboot call for the target's instances; the
//     document rebooted already under if-required; never: pending patches stay pending), then the
//     post-install health check (one CheckHealth call), waited through a reboot within the
//     health grace, then the per-patch results and InstallSucceeded. The per-patch results
//     come from the instances' patch summaries (PatchSummaries, one call per 50 instances)
//     where they prove every listed patch installed (each is then INSTALLED), else from
//     PatchStates (one call per instance): see domain.SettledBySummary.
//
// The held installations are decided CheckChunk at a time; the outcomes of a chunk are
// published in one call and only then acknowledged.
func (a *Installer) TrackInstallations(ctx context.Context, held []tracked) error {
	key := func(h tracked) string { return stage.EventKey(h.Event) }
	live, err := stage.Unfinished(ctx, held, a.d.Finished, key)
	if err != nil {
		return err
	}
	// The held set is decided a chunk at a time and each chunk's outcomes are settled at once,
	// so a check of thousands of finished installations (each needs its per-patch results)
	// releases outcomes as it goes instead of all at its end.
	chunk := a.cfg.CheckChunk
	if chunk <= 0 {
		chunk = max(1, len(live))
	}
	for start := 0; start < len(live); start += chunk {
		part := live[start:min(len(live), start+chunk)]
		var outs stage.Outcomes
		invalid := func(h tracked, err error) {
			outs.Add(h.Held, key(h), a.failed(h.Event, h.Msg, h.Msg.GetInstallationId(),
				fmt.Sprintf("the job names no location: %v", err), nil, typesv1.JobState_JOB_STATE_FAILED))
		}
		stage.EachTarget(ctx, a.cfg.CheckConcurrency, part, invalid, func(ctx context.Context, t provider.Target, items []tracked) {
			a.checkTarget(ctx, t, items, &outs)
		})
		a.mu.Lock()
		pub := a.pub
		a.mu.Unlock()
		if err := outs.Settle(ctx, pub, a.d.Finished); err != nil {
			return err
		}
	}
	a.forgetDone(held)
	return nil
}

// checkTarget decides about the installations of one target.
func (a *Installer) checkTarget(ctx context.Context, t provider.Target, items []tracked, outs *stage.Outcomes) {
	ids := make([]string, len(items))
	for i, h := range items {
		ids[i] = h.Msg.GetInstallationId()
	}
	got, err := a.d.Fleet.GetInstallations(ctx, t, ids)
	if err != nil {
		a.log.WarnContext(ctx, "installation check failed", "target", t.String(), "installations", len(items), "error", err)
	}
	now := a.now()
	var succeeded, failedAt []tracked
	for _, h := range items {
		in, ok := got[h.Msg.GetInstallationId()]
		deadline := h.Msg.GetDeadline().AsTime()
		switch {
		case (err != nil || (ok && !in.State.Terminal())) && now.Before(deadline):
			// running: look again next check
		case err != nil || (ok && !in.State.Terminal()):
			a.timedOut(ctx, t, h, outs)
		case !ok:
			outs.Add(h.Held, stage.EventKey(h.Event), a.failed(h.Event, h.Msg, h.Msg.GetInstallationId(),
				fmt.Sprintf("the provider no longer knows installation %s", h.Msg.GetInstallationId()), nil, typesv1.JobState_JOB_STATE_FAILED))
		case in.State != provider.InstallSucceeded:
			failedAt = append(failedAt, h)
		default:
			succeeded = append(succeeded, h)
		}
	}
	a.eachResult(ctx, len(failedAt), func(ctx context.Context, i int) {
		a.installFailed(ctx, t, failedAt[i], got[failedAt[i].Msg.GetInstallationId()], outs)
	})
	if len(succeeded) > 0 {
		a.afterSuccess(ctx, t, succeeded, got, outs)
	}
}

// eachResult runs fn for 0..n-1, ResultsConcurrency at a time: the per-patch results that the
// patch summaries do not settle are one DescribeInstancePatches per instance (AWS has no
// batched form), so a check that finishes thousands of such installations reads them side by
// side rather than one after the other.
func (a *Installer) eachResult(ctx context.Context, n int, fn func(ctx context.Context, i int)) {
	if n == 0 {
		return
	}
	limit := min(n, max(1, a.cfg.ResultsConcurrency))
	next := make(chan int)
	var wg sync.WaitGroup
	for range limit {
		wg.Go(func() {
			for i := range next {
				fn(ctx, i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
}

// timedOut cancels an installation that outlived the job's per-instance timeout.
func (a *Installer) timedOut(ctx context.Context, t provider.Target, h tracked, outs *stage.Outcomes) {
	if err := a.d.Fleet.CancelInstallation(ctx, t, h.Msg.GetInstallationId()); err != nil {
		a.log.WarnContext(ctx, "cancel failed, will retry", "installation", h.Msg.GetInstallationId(), "error", err)
		return // cancel again next check; the outcome waits for the cancel
	}
	timeout := h.Msg.GetDeadline().AsTime().Sub(h.Msg.GetStartedAt().AsTime())
	outs.Add(h.Held, stage.EventKey(h.Event), a.failed(h.Event, h.Msg, h.Msg.GetInstallationId(),
		fmt.Sprintf("installation %s did not finish within the per-instance timeout of %s; cancelled", h.Msg.GetInstallationId(), timeout),
		nil, typesv1.JobState_JOB_STATE_TIMED_OUT))
}

// installFailed publishes the failure of an installation with its per-patch results.
func (a *Installer) installFailed(ctx context.Context, t provider.Target, h tracked, in provider.Installation, outs *stage.Outcomes) {
	states, err := a.d.Fleet.PatchStates(ctx, t, h.Msg.GetInstanceId(), h.Msg.GetPatchIds())
	if err != nil && stage.Retry(ctx, err) != nil {
		return // read the results next check
	}
	results, _, failed := domain.Results(h.Msg.GetPatchIds(), states)
	outs.Add(h.Held, stage.EventKey(h.Event), a.failed(h.Event, h.Msg, in.ID, domain.FailureReason(in, failed), results, domain.JobStateOf(in.State)))
}

// afterSuccess applies the reboot policy and the health check to the target's succeeded
// installations.
func (a *Installer) afterSuccess(ctx context.Context, t provider.Target, items []tracked, got map[string]provider.Installation, outs *stage.Outcomes) {
	now := a.now()
	var reboot []tracked
	check := make([]tracked, 0, len(items))
	for _, h := range items {
		st := a.postState(h)
		if stage.RebootPolicy(h.Msg.GetPolicy().GetRebootPolicy()) == provider.RebootAlways && st.rebootAskedAt.IsZero() {
			reboot = append(reboot, h)
			continue
		}
		check = append(check, h)
	}
	if len(reboot) > 0 {
		a.rebootOnce(ctx, t, reboot, now)
		// Their health is checked from the next check on, once the reboot has begun.
	}
	if len(check) == 0 {
		return
	}
	ids := make([]string, len(check))
	var online []string
	for i, h := range check {
		ids[i] = h.Msg.GetInstanceId()
		// The agent reported the installation's success (after the document's own reboot,
		// under if-required) and no reboot was asked since: it is online, no need to ask.
		if got[h.Msg.GetInstallationId()].State == provider.InstallSucceeded && a.postState(h).rebootAskedAt.IsZero() {
			online = append(online, ids[i])
		}
	}
	health, err := a.d.Fleet.CheckHealth(ctx, t, ids, provider.WithAgentOnline(online...))
	if err != nil {
		a.log.WarnContext(ctx, "health check failed", "target", t.String(), "instances", len(ids), "error", err)
		return // check again next time
	}
	type ready struct {
		h     tracked
		in    provider.Installation
		hl    provider.Health
		found bool
		st    *postInstall
	}
	todo := make([]ready, 0, len(check))
	for _, h := range check {
		in := got[h.Msg.GetInstallationId()]
		st := a.postState(h)
		hl, found := health[h.Msg.GetInstanceId()]
		if found && domain.Rebooting(hl) {
			st.sawReboot = true
		}
		since := in.FinishedAt
		if since.IsZero() || st.rebootAskedAt.After(since) {
			since = st.rebootAskedAt
		}
		if since.IsZero() {
			since = now
		}
		switch domain.Judge(hl, found, now, since.Add(a.cfg.HealthGrace)) {
		case domain.Wait:
			continue
		case domain.Unhealthy:
			outs.Add(h.Held, stage.EventKey(h.Event), a.failed(h.Event, h.Msg, in.ID,
				fmt.Sprintf("post-install health check failed %s after the installation: %s", a.cfg.HealthGrace, domain.HealthDetail(hl, found)),
				nil, typesv1.JobState_JOB_STATE_FAILED))
			continue
		}
		todo = append(todo, ready{h: h, in: in, hl: hl, found: found, st: st})
	}
	if len(todo) == 0 {
		return
	}
	ids = make([]string, 0, len(todo))
	for _, r := range todo {
		ids = append(ids, r.h.Msg.GetInstanceId())
	}
	summaries := a.patchSummaries(ctx, t, ids)
	a.eachResult(ctx, len(todo), func(ctx context.Context, i int) {
		h, in, hl, found, st := todo[i].h, todo[i].in, todo[i].hl, todo[i].found, todo[i].st
		var (
			results []*typesv1.PatchResult
			pending bool
			failed  []string
		)
		if sum, ok := summaries[h.Msg.GetInstanceId()]; domain.SettledBySummary(in, h.Msg.GetPatchIds(), sum, ok) {
			results = domain.InstalledResults(h.Msg.GetPatchIds())
		} else {
			states, err := a.d.Fleet.PatchStates(ctx, t, h.Msg.GetInstanceId(), h.Msg.GetPatchIds())
			if err != nil {
				if stage.Retry(ctx, err) != nil {
					return
				}
				a.log.WarnContext(ctx, "per-patch results unavailable", "instance", h.Msg.GetInstanceId(), "error", err)
			}
			results, pending, failed = domain.Results(h.Msg.GetPatchIds(), states)
		}
		if len(failed) > 0 {
			outs.Add(h.Held, stage.EventKey(h.Event), a.failed(h.Event, h.Msg, in.ID, domain.FailureReason(in, failed), results, typesv1.JobState_JOB_STATE_FAILED))
			return
		}
		pending = pending || in.RebootPending
		state := typesv1.JobState_JOB_STATE_SUCCEEDED
		if pending {
			state = typesv1.JobState_JOB_STATE_SUCCEEDED_PENDING_REBOOT
		}
		outs.Add(h.Held, stage.EventKey(h.Event), stage.Next(h.Event, h.Event.Key, &eventsv1.InstallSucceeded{
			Tenant: h.Event.Tenant, RunId: h.Msg.GetRunId(), Wave: h.Msg.GetWave(), InstanceId: h.Msg.GetInstanceId(),
			SnapshotId: h.Msg.GetSnapshotId(), InstallationId: in.ID, RebootPending: pending, Results: results,
			Location: h.Msg.GetLocation(), JobState: state, Rebooted: st.sawReboot || !st.rebootAskedAt.IsZero(),
			Healthy: true, HealthDetail: domain.HealthDetail(hl, found),
		}, a.now()))
	})
}

// patchSummaries reads the patch summaries of the instances (one DescribeInstancePatchStates
// per 50). On an error it returns none: every instance's results are then read one by one.
func (a *Installer) patchSummaries(ctx context.Context, t provider.Target, instanceIDs []string) map[string]provider.PatchSummary {
	got, err := a.d.Fleet.PatchSummaries(ctx, t, dedup(instanceIDs))
	if err != nil {
		a.log.WarnContext(ctx, "patch summaries unavailable, reading per-patch results", "target", t.String(), "instances", len(instanceIDs), "error", err)
		return nil
	}
	return got
}

// rebootOnce reboots, in one call, the instances of policy always that no replica rebooted yet
// for this job.
func (a *Installer) rebootOnce(ctx context.Context, t provider.Target, items []tracked, now time.Time) {
	var ids []string
	var asked []tracked
	for _, h := range items {
		first, err := a.d.Reboots.MarkNew(ctx, stage.EventKey(h.Event))
		if err != nil {
			a.log.WarnContext(ctx, "reboot mark failed", "instance", h.Msg.GetInstanceId(), "error", err)
			continue
		}
		asked = append(asked, h)
		if first {
			ids = append(ids, h.Msg.GetInstanceId())
		}
	}
	if len(ids) > 0 {
		if err := a.d.Fleet.Reboot(ctx, t, ids); err != nil {
			// Not running: the health check says so after the grace. Anything else: the
			// health check waits through the grace period as well.
			a.log.WarnContext(ctx, "reboot failed", "target", t.String(), "instances", len(ids), "error", err)
		}
	}
	for _, h := range asked {
		a.postState(h).rebootAskedAt = now
	}
}

func (a *Installer) postState(h tracked) *postInstall {
	a.postMu.Lock()
	defer a.postMu.Unlock()
	st := a.post[h.Event.ID]
	if st == nil {
		st = &postInstall{}
		a.post[h.Event.ID] = st
	}
	return st
}

// forgetDone drops the post-install state of jobs this check finished.
func (a *Installer) forgetDone(held []tracked) {
	a.postMu.Lock()
	defer a.postMu.Unlock()
	for _, h := range held {
		if h.Decided() {
			delete(a.post, h.Event.ID)
		}
	}
}

// FailInstallationOnDeadLetter publishes the InstallFailed of a held installation whose event is
// about to be dead-lettered.
func (a *Installer) FailInstallationOnDeadLetter(ctx context.Context, ev *events.Event, m *eventsv1.InstallStarted, reason string) error {
	if done, err := a.d.Finished.Done(ctx, stage.EventKey(ev)); err != nil || done {
		return err
	}
	return a.publishAll(ctx, []*events.Event{a.failed(ev, m, m.GetInstallationId(), reason, nil, typesv1.JobState_JOB_STATE_FAILED)})
}
