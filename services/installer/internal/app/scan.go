package app

import (
	"context"
	"fmt"
	"time"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/idem"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/stage"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/installer/internal/domain"
)

// Scans are the marks of the scan stage, keyed tenant/scan/instance: scans the handler started
// or refused (scan.started, scan.failed), and scans with their outcome (scan.completed,
// scan.failed).
type Scans struct {
	Started  *idem.Marks
	Finished *idem.Marks
	// Timeout bounds one scan, from its start.
	Timeout time.Duration
}

// scanKey is the business key of one instance's scan.
func scanKey(tenant, scanID, instanceID string) string {
	return tenant + "/" + scanID + "/" + instanceID
}

// ScanKeyOf is the business key of a scan event: tenant/scan/instance.
func ScanKeyOf(ev *events.Event) string {
	type scan interface {
		GetScanId() string
		GetInstanceId() string
	}
	if m, ok := ev.Data.(scan); ok {
		return scanKey(ev.Tenant, m.GetScanId(), m.GetInstanceId())
	}
	return ev.Tenant + "/" + ev.Key
}

// ScanOnScanRequested starts the scans of a chunk (one location, at most 50 instances) with one
// Scan call (AWS-RunPatchBaseline Operation=Scan, one SSM command) and publishes a ScanStarted
// per instance; an instance the provider refuses (no agent, stopped) gets its ScanFailed.
// Nothing waits for a scan: TrackScans follows them.
func (a *Installer) ScanOnScanRequested(ctx context.Context, ev *events.Event, sr *eventsv1.ScanRequested) error {
	if sr.GetTenant() != ev.Tenant || sr.GetScanId() == "" || sr.GetBaselineId() == "" {
		return bus.Permanent(fmt.Errorf("scan requested %s: tenant must match the subject, scan_id and baseline_id are required", ev.ID))
	}
	t, err := stage.Target(ev.Tenant, sr.GetLocation())
	if err != nil {
		return bus.Permanent(fmt.Errorf("scan requested %s: %w", ev.ID, err))
	}
	reqs := make([]provider.ScanRequest, 0, len(sr.GetInstanceIds()))
	var keys []string
	for _, id := range dedup(sr.GetInstanceIds()) {
		// An instance whose scan this handler started (or refused) already: a redelivery.
		k := scanKey(ev.Tenant, sr.GetScanId(), id)
		if done, err := a.scans.Started.Done(ctx, k); err != nil || done {
			if err != nil {
				return err
			}
			continue
		}
		keys = append(keys, k)
		reqs = append(reqs, provider.ScanRequest{Tenant: ev.Tenant, ScanID: sr.GetScanId(), InstanceID: id,
			BaselineID: sr.GetBaselineId(), PatchIDs: sr.GetPatchIds()})
	}
	now := a.now()
	var outs []*events.Event
	for start := 0; start < len(reqs); start += 50 {
		batch := reqs[start:min(start+50, len(reqs))]
		res, err := a.d.Fleet.Scan(ctx, t, batch)
		if err != nil {
			if retry := stage.Retry(ctx, err); retry != nil {
				return fmt.Errorf("scan %s: %w", sr.GetScanId(), retry)
			}
			for _, r := range batch {
				outs = append(outs, a.scanFailed(ev, sr.GetScanId(), r.InstanceID, sr.GetOsFamily(), fmt.Sprintf("start scan: %v", err)))
			}
			continue
		}
		for i, r := range batch {
			if i >= len(res) || res[i].Err != nil {
				reason := "the provider returned no result"
				if i < len(res) {
					reason = fmt.Sprintf("start scan: %v", res[i].Err)
				}
				outs = append(outs, a.scanFailed(ev, sr.GetScanId(), r.InstanceID, sr.GetOsFamily(), reason))
				continue
			}
			in := res[i].Installation
			started := in.StartedAt
			if started.IsZero() {
				started = now
			}
			outs = append(outs, stage.Next(ev, sr.GetScanId()+"/"+r.InstanceID, &eventsv1.ScanStarted{
				Tenant: ev.Tenant, ScanId: sr.GetScanId(), InstanceId: r.InstanceID, Location: sr.GetLocation(),
				OsFamily: sr.GetOsFamily(), BaselineId: sr.GetBaselineId(), PatchIds: sr.GetPatchIds(),
				InstallationId: in.ID, CommandId: in.CommandID,
				StartedAt: stage.Timestamp(started), Deadline: stage.Timestamp(started.Add(a.scans.Timeout)),
			}, now))
		}
	}
	if err := a.publishAll(ctx, outs); err != nil {
		return err
	}
	return a.scans.Started.MarkAll(ctx, keys...)
}

func (a *Installer) scanFailed(in *events.Event, scanID, instanceID, family, reason string) *events.Event {
	return stage.Next(in, scanID+"/"+instanceID, &eventsv1.ScanFailed{
		Tenant: in.Tenant, ScanId: scanID, InstanceId: instanceID, OsFamily: family, Reason: reason,
		FailedAt: stage.Timestamp(a.now()),
	}, a.now())
}

type trackedScan = stage.Tracked[*eventsv1.ScanStarted]

// TrackScans follows the held scans, per target: one GetInstallations call, then for each
// finished scan its per-patch states and ScanCompleted (every patch INSTALLED where the
// instance's patch summary proves it, PatchSummaries for all finished scans of the target at
// once; else read with PatchStates, one DescribeInstancePatches per instance), or ScanFailed
// for a scan that failed or outlived its timeout (cancelled). Outcomes are published in one
// call and only then acknowledged.
func (a *Installer) TrackScans(ctx context.Context, held []trackedScan) error {
	key := func(h trackedScan) string { return scanKey(h.Event.Tenant, h.Msg.GetScanId(), h.Msg.GetInstanceId()) }
	live, err := stage.Unfinished(ctx, held, a.scans.Finished, key)
	if err != nil {
		return err
	}
	var outs stage.Outcomes
	invalid := func(h trackedScan, err error) {
		outs.Add(h.Held, key(h), a.scanFailed(h.Event, h.Msg.GetScanId(), h.Msg.GetInstanceId(), h.Msg.GetOsFamily(),
			fmt.Sprintf("the scan names no location: %v", err)))
	}
	stage.EachTarget(ctx, a.cfg.CheckConcurrency, live, invalid, func(ctx context.Context, t provider.Target, items []trackedScan) {
		ids := make([]string, len(items))
		for i, h := range items {
			ids[i] = h.Msg.GetInstallationId()
		}
		got, err := a.d.Fleet.GetInstallations(ctx, t, ids)
		if err != nil {
			a.log.WarnContext(ctx, "scan check failed", "target", t.String(), "scans", len(items), "error", err)
		}
		now := a.now()
		var done []string
		for _, h := range items {
			if in, ok := got[h.Msg.GetInstallationId()]; ok && in.State == provider.InstallSucceeded {
				done = append(done, h.Msg.GetInstanceId())
			}
		}
		var summaries map[string]provider.PatchSummary
		if len(done) > 0 {
			summaries = a.patchSummaries(ctx, t, done)
		}
		for _, h := range items {
			in, ok := got[h.Msg.GetInstallationId()]
			fail := func(reason string) {
				outs.Add(h.Held, key(h), a.scanFailed(h.Event, h.Msg.GetScanId(), h.Msg.GetInstanceId(), h.Msg.GetOsFamily(), reason))
			}
			switch {
			case (err != nil || (ok && !in.State.Terminal())) && now.Before(h.Msg.GetDeadline().AsTime()):
				// running: look again next check
			case err != nil || (ok && !in.State.Terminal()):
				if cerr := a.d.Fleet.CancelInstallation(ctx, t, h.Msg.GetInstallationId()); cerr != nil {
					continue // cancel again next check
				}
				fail(fmt.Sprintf("scan %s did not finish in time; cancelled", h.Msg.GetInstallationId()))
			case !ok:
				fail(fmt.Sprintf("the provider no longer knows scan %s", h.Msg.GetInstallationId()))
			case in.State != provider.InstallSucceeded:
				fail(fmt.Sprintf("scan %s %s: %s", in.ID, in.State, in.Error))
			default:
				var results []*typesv1.PatchResult
				if sum, found := summaries[h.Msg.GetInstanceId()]; domain.SettledBySummary(in, h.Msg.GetPatchIds(), sum, found) {
					results = domain.InstalledResults(h.Msg.GetPatchIds())
				} else {
					states, err := a.d.Fleet.PatchStates(ctx, t, h.Msg.GetInstanceId(), h.Msg.GetPatchIds())
					if err != nil {
						if stage.Retry(ctx, err) != nil {
							continue // read the results next check
						}
						fail(fmt.Sprintf("read the patch states: %v", err))
						continue
					}
					results, _, _ = domain.Results(h.Msg.GetPatchIds(), states)
				}
				outs.Add(h.Held, key(h), stage.Next(h.Event, h.Msg.GetScanId()+"/"+h.Msg.GetInstanceId(), &eventsv1.ScanCompleted{
					Tenant: h.Event.Tenant, ScanId: h.Msg.GetScanId(), InstanceId: h.Msg.GetInstanceId(), OsFamily: h.Msg.GetOsFamily(),
					BaselineId: h.Msg.GetBaselineId(), Results: results, ScannedAt: stage.Timestamp(now),
				}, now))
			}
		}
	})
	a.mu.Lock()
	pub := a.pub
	a.mu.Unlock()
	return outs.Settle(ctx, pub, a.scans.Finished)
}

// FailScanOnDeadLetter publishes the ScanFailed of a scan whose ScanStarted is about to be
// dead-lettered.
func (a *Installer) FailScanOnDeadLetter(ctx context.Context, ev *events.Event, m *eventsv1.ScanStarted, reason string) error {
	if done, err := a.scans.Finished.Done(ctx, scanKey(ev.Tenant, m.GetScanId(), m.GetInstanceId())); err != nil || done {
		return err
	}
	return a.publishAll(ctx, []*events.Event{a.scanFailed(ev, m.GetScanId(), m.GetInstanceId(), m.GetOsFamily(), reason)})
}
