package provider

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// WaitSnapshot polls GetSnapshot every poll until the snapshot is terminal (completed or error)
// or ctx ends. A terminal error snapshot is returned without error: the caller reads its State.
// Retryable errors (IsRetryable) are polled through; others are returned at once. When ctx ends,
// it returns the last snapshot seen and an error wrapping ctx.Err().
func WaitSnapshot(ctx context.Context, f Fleet, tenant, id string, poll time.Duration) (Snapshot, error) {
	s, err := wait(ctx, poll, func(ctx context.Context) (Snapshot, error) {
		return f.GetSnapshot(ctx, tenant, id)
	}, func(s Snapshot) bool { return s.State.Terminal() })
	if err != nil {
		return s, fmt.Errorf("wait snapshot %s: %w", id, err)
	}
	return s, nil
}

// WaitInstallation polls GetInstallation every poll until the installation is terminal or ctx
// ends, with the same rules as WaitSnapshot.
func WaitInstallation(ctx context.Context, f Fleet, tenant, id string, poll time.Duration) (Installation, error) {
	in, err := wait(ctx, poll, func(ctx context.Context) (Installation, error) {
		return f.GetInstallation(ctx, tenant, id)
	}, func(in Installation) bool { return in.State.Terminal() })
	if err != nil {
		return in, fmt.Errorf("wait installation %s: %w", id, err)
	}
	return in, nil
}

// WaitRestore polls GetRestore every poll until the restore is terminal or ctx ends, with the
// same rules as WaitSnapshot.
func WaitRestore(ctx context.Context, f Fleet, tenant, id string, poll time.Duration) (Restore, error) {
	r, err := wait(ctx, poll, func(ctx context.Context) (Restore, error) {
		return f.GetRestore(ctx, tenant, id)
	}, func(r Restore) bool { return r.State.Terminal() })
	if err != nil {
		return r, fmt.Errorf("wait restore %s: %w", id, err)
	}
	return r, nil
}

// wait reads at once, then on every tick, until done says so, a non-retryable error, or ctx ends.
func wait[T any](ctx context.Context, poll time.Duration, get func(context.Context) (T, error), done func(T) bool) (T, error) {
	var last T
	if poll <= 0 {
		return last, fmt.Errorf("%w: poll must be > 0, got %s", ErrInvalidArgument, poll)
	}
	ticker := time.NewTicker(poll)
	defer ticker.Stop()
	for {
		v, err := get(ctx)
		switch {
		case err == nil:
			last = v
			if done(v) {
				return v, nil
			}
		case ctx.Err() != nil:
			return last, errors.Join(ctx.Err(), err)
		case !IsRetryable(err):
			return last, err
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-ticker.C:
		}
	}
}
