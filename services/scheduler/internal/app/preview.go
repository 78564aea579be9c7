package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/calendar"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/scheduler/internal/domain/design"
)

// PreviewWave lists a stored wave's next occurrences whose window ends after from (zero: now),
// with its tenant's and the provider's freezes, pause, skipped keys and overrides applied. It
// returns the tenant document's revision too (the preview's ETag).
func (a *Designs) PreviewWave(ctx context.Context, tenant string, wave int32, from time.Time, count int32) ([]calendar.Occurrence, uint64, error) {
	n, err := design.PreviewCount(count)
	if err != nil {
		return nil, 0, err
	}
	_, rev, _, s, o, err := a.waveCalendar(ctx, tenant, wave)
	if err != nil {
		return nil, 0, err
	}
	if from.IsZero() {
		from = a.now()
	}
	occs, err := calendar.Occurrences(s, o, from, n)
	if err != nil {
		return nil, 0, fmt.Errorf("preview wave %d of tenant %s: %w", wave, tenant, err)
	}
	return occs, rev, nil
}

// waveCalendar reads a wave and what the calendar needs to list its occurrences.
func (a *Designs) waveCalendar(ctx context.Context, tenant string, wave int32) (*typesv1.TenantDesign, uint64, *typesv1.Wave, calendar.Schedule, calendar.Options, error) {
	doc, rev, err := a.TenantDesign(ctx, tenant)
	if err != nil {
		return nil, 0, nil, calendar.Schedule{}, calendar.Options{}, err
	}
	i := slices.IndexFunc(doc.GetWaves(), func(w *typesv1.Wave) bool { return w.GetNumber() == wave })
	if i < 0 {
		return nil, 0, nil, calendar.Schedule{}, calendar.Options{}, fmt.Errorf("%w: wave %d of tenant %s", apierr.ErrNotFound, wave, tenant)
	}
	global, _, err := a.GlobalDesign(ctx)
	if err != nil {
		return nil, 0, nil, calendar.Schedule{}, calendar.Options{}, err
	}
	s, o, err := design.WaveCalendar(doc, global, doc.GetWaves()[i])
	if err != nil {
		return nil, 0, nil, calendar.Schedule{}, calendar.Options{}, err
	}
	return doc, rev, doc.GetWaves()[i], s, o, nil
}

// PreviewSchedule lists the occurrences of a schedule that is not stored, with the given
// freezes applied.
func (a *Designs) PreviewSchedule(_ context.Context, s *typesv1.Schedule, freezes []*typesv1.Freeze, from time.Time, count int32) ([]calendar.Occurrence, error) {
	n, err := design.PreviewCount(count)
	s2, o, perr := design.PreviewCalendar(s, freezes)
	if err = firstValidation(errors.Join(err, perr)); err != nil {
		return nil, err
	}
	if from.IsZero() {
		from = a.now()
	}
	return calendar.Occurrences(s2, o, from, n)
}

// SkipNext adds the key of the wave's next occurrence that is not skipped yet (from now) to
// its skipped keys, dropping keys of occurrences already past, as one write; it returns the
// wave as stored and the occurrence it skips.
func (a *Designs) SkipNext(ctx context.Context, tenant string, wave int32, w Write) (*typesv1.Wave, calendar.Occurrence, uint64, error) {
	if err := w.validate(false); err != nil {
		return nil, calendar.Occurrence{}, 0, err
	}
	for attempt := 1; ; attempt++ {
		_, rev, stored, s, o, err := a.waveCalendar(ctx, tenant, wave)
		if err != nil {
			return nil, calendar.Occurrence{}, 0, err
		}
		if w.IfMatch != 0 && w.IfMatch != rev {
			return nil, calendar.Occurrence{}, 0, &design.StaleError{What: "tenant " + tenant, Expected: w.IfMatch, Current: rev}
		}
		occs, err := calendar.Occurrences(s, o, a.now(), design.MaxSkipKeys)
		if err != nil {
			return nil, calendar.Occurrence{}, 0, err
		}
		i := slices.IndexFunc(occs, func(x calendar.Occurrence) bool { return x.Status != calendar.StatusSkippedByRequest })
		if i < 0 {
			return nil, calendar.Occurrence{}, 0, fmt.Errorf("%w: wave %d of tenant %s has no upcoming occurrence left to skip",
				apierr.ErrFailedPrecondition, wave, tenant)
		}
		next := occs[i]
		changed := proto.Clone(stored).(*typesv1.Wave)
		changed.SkipKeys = slices.DeleteFunc(changed.SkipKeys, func(k string) bool { return len(occs) > 0 && k < occs[0].Key })
		changed.SkipKeys = append(changed.SkipKeys, next.Key)
		op := &typesv1.Operation{Kind: &typesv1.Operation_PutWave{PutWave: changed}}
		doc, newRev, err := a.ChangeTenant(ctx, tenant, Write{Actor: w.Actor, Reason: w.Reason, IfMatch: rev}, []*typesv1.Operation{op})
		var stale *design.StaleError
		if errors.As(err, &stale) && w.IfMatch == 0 && attempt < casAttempts {
			continue
		}
		if err != nil {
			return nil, calendar.Occurrence{}, 0, err
		}
		j := slices.IndexFunc(doc.GetWaves(), func(x *typesv1.Wave) bool { return x.GetNumber() == wave })
		next.Status, next.Reason = calendar.StatusSkippedByRequest, "skipped on request (skip next occurrence)"
		return doc.GetWaves()[j], next, newRev, nil
	}
}

// FreezeInstances lists when a freeze of a tenant (or with tenant "" a provider-wide one)
// blocks, from from (zero: now) to to, and the revision of its document.
func (a *Designs) FreezeInstances(ctx context.Context, tenant, id string, from, to time.Time) ([]calendar.Interval, uint64, error) {
	var freezes []*typesv1.Freeze
	var rev uint64
	if tenant == "" {
		doc, r, err := a.GlobalDesign(ctx)
		if err != nil {
			return nil, 0, err
		}
		freezes, rev = doc.GetFreezes(), r
	} else {
		doc, r, err := a.TenantDesign(ctx, tenant)
		if err != nil {
			return nil, 0, err
		}
		freezes, rev = doc.GetFreezes(), r
	}
	i := slices.IndexFunc(freezes, func(f *typesv1.Freeze) bool { return f.GetId() == id })
	if i < 0 {
		return nil, 0, fmt.Errorf("%w: freeze %q", apierr.ErrNotFound, id)
	}
	if from.IsZero() {
		from = a.now()
	}
	ins, err := design.FreezeInstances(freezes[i], from, to)
	return ins, rev, err
}
