package domain

import "context"

// Repository keeps the compliance read model. Writes are idempotent; SaveInstance is the last
// write of each event, so an event whose writes were cut short by a crash is applied again in
// full (its sequence was not recorded).
type Repository interface {
	// Checkpoint returns the last stream sequence the projection applied, 0 if none.
	Checkpoint(ctx context.Context) (uint64, error)
	// SetCheckpoint records the last stream sequence the projection applied.
	SetCheckpoint(ctx context.Context, seq uint64) error
	// Instance returns an instance's record; false if the instance was never seen.
	Instance(ctx context.Context, tenant, id string) (Instance, bool, error)
	// SaveInstance stores next, moving the instance from prev's coverage bucket to next's.
	SaveInstance(ctx context.Context, prev Instance, prevFound bool, next Instance) error
	// ReplaceFailedPatches sets an instance's failed patches (none clears them).
	ReplaceFailedPatches(ctx context.Context, tenant, instanceID string, fps []FailedPatch) error
	// Coverage returns the tenant's coverage per wave.
	Coverage(ctx context.Context, tenant string) ([]WaveCoverage, error)
	// FailedPatches returns the tenant's failed patches, in no particular order.
	FailedPatches(ctx context.Context, tenant string) ([]FailedPatch, error)
}
