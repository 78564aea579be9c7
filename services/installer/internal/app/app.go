// Package app installs patch sets. InstallOnSnapshotCreated checks each job's pre-patch
// snapshot at the provider (in batches) and starts installations in batches, publishing
// InstallStarted; the TrackInstallations tracker follows them with one read per command, reboots
// by policy, checks health, reads per-patch results, and publishes exactly one InstallSucceeded
// or InstallFailed per job. It never installs on an instance whose pre-patch snapshot of the
// run is not complete.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/idem"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/stage"
)

// Config tunes the installer; the service's public Config has set the defaults.
type Config struct {
	// InstallTimeout is the per-instance timeout of a job whose policy names none.
	InstallTimeout time.Duration
	// HealthGrace is how long after an installation ends (or the installer's reboot) an
	// instance may stay short of healthy before the job fails.
	HealthGrace time.Duration
	// Install tunes the batched Install calls (Size at most 50 per SSM command).
	Install stage.BatcherConfig
	// Check tunes the batched snapshot checks and installation look-ups.
	Check stage.BatcherConfig
	// Publish tunes the batched publishing of the handler's events.
	Publish stage.BatcherConfig
	// CheckConcurrency bounds the targets a tracker check reads at once.
	CheckConcurrency int
	// CheckChunk is how many held installations a check decides before it settles their
	// outcomes. Optional, default 0: the whole held set.
	CheckChunk int
	// ResultsConcurrency bounds the per-instance result reads (DescribeInstancePatches) one
	// target's check makes at once. Optional, default 1.
	ResultsConcurrency int
}

// Deps are the application's collaborators.
type Deps struct {
	Fleet provider.Fleet
	// Started marks jobs whose installation the handler started or refused.
	Started *idem.Marks
	// Finished marks jobs with an install outcome.
	Finished *idem.Marks
	// Reboots marks jobs the installer rebooted (policy always), so a reboot is asked once.
	Reboots *idem.Marks
	// Scans are the marks and timeout of the scan stage.
	Scans  Scans
	Logger *slog.Logger
	Clock  func() time.Time
}

// findKey groups installation look-ups: one FindInstallations per target and run.
type findKey struct {
	target provider.Target
	runID  string
}

// Installer runs the installer's handler and tracker.
type Installer struct {
	cfg Config
	d   Deps
	log *slog.Logger
	now func() time.Time

	snapshots *stage.Batcher[provider.Target, string, snapshotLookup]
	finds     *stage.Batcher[findKey, string, installLookup]
	installs  *stage.Batcher[provider.Target, provider.InstallRequest, provider.InstallResult]

	scans Scans

	mu   sync.Mutex
	pub  stage.EventPublisher
	bpub *stage.Publisher

	// post holds what this replica knows of jobs past their installation (reboot asked,
	// reboot seen), by InstallStarted event id. A replica that takes over starts afresh.
	postMu sync.Mutex
	post   map[string]*postInstall
}

type snapshotLookup struct {
	snap  provider.Snapshot
	found bool
}

type installLookup struct {
	in    provider.Installation
	found bool
}

type postInstall struct {
	rebootAskedAt time.Time
	sawReboot     bool
}

// New returns an Installer.
func New(cfg Config, d Deps) (*Installer, error) {
	a := &Installer{cfg: cfg, d: d, log: d.Logger, now: d.Clock, post: map[string]*postInstall{}, scans: d.Scans}
	var err error
	if a.snapshots, err = stage.NewBatcher(cfg.Check, a.getSnapshots); err != nil {
		return nil, err
	}
	if a.finds, err = stage.NewBatcher(cfg.Check, a.findInstallations); err != nil {
		return nil, err
	}
	if a.installs, err = stage.NewBatcher(cfg.Install, a.install); err != nil {
		return nil, err
	}
	return a, nil
}

// Attach sets the publisher (the bus).
func (a *Installer) Attach(p stage.EventPublisher) error {
	bp, err := stage.NewPublisher(p, a.cfg.Publish)
	if err != nil {
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pub, a.bpub = p, bp
	return nil
}

func (a *Installer) publishAll(ctx context.Context, evs []*events.Event) error {
	if len(evs) == 0 {
		return nil
	}
	a.mu.Lock()
	pub := a.pub
	a.mu.Unlock()
	if pub == nil {
		return errors.New("installer: not attached to a bus")
	}
	if err := pub.Publish(ctx, evs...); err != nil {
		return fmt.Errorf("publish %d events: %w", len(evs), err)
	}
	return nil
}

func (a *Installer) publishBatched(ctx context.Context, evs ...*events.Event) error {
	a.mu.Lock()
	bp := a.bpub
	a.mu.Unlock()
	if bp == nil {
		return errors.New("installer: not attached to a bus")
	}
	return bp.Publish(ctx, evs...)
}

func (a *Installer) getSnapshots(ctx context.Context, t provider.Target, ids []string) ([]snapshotLookup, error) {
	got, err := a.d.Fleet.GetSnapshots(ctx, t, dedup(ids))
	if err != nil {
		return nil, err
	}
	out := make([]snapshotLookup, len(ids))
	for i, id := range ids {
		s, ok := got[id]
		out[i] = snapshotLookup{snap: s, found: ok}
	}
	return out, nil
}

func (a *Installer) findInstallations(ctx context.Context, k findKey, instanceIDs []string) ([]installLookup, error) {
	got, err := a.d.Fleet.FindInstallations(ctx, k.target, k.runID, dedup(instanceIDs))
	if err != nil {
		return nil, err
	}
	out := make([]installLookup, len(instanceIDs))
	for i, id := range instanceIDs {
		in, ok := got[id]
		out[i] = installLookup{in: in, found: ok}
	}
	return out, nil
}

func (a *Installer) install(ctx context.Context, t provider.Target, reqs []provider.InstallRequest) ([]provider.InstallResult, error) {
	return a.d.Fleet.Install(ctx, t, reqs)
}

// dedup drops repeated ids (two deliveries of one job in one batch), keeping the order.
func dedup(ids []string) []string {
	seen := make(map[string]bool, len(ids))
	out := make([]string, 0, len(ids))
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}
