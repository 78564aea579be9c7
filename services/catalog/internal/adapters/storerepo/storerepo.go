// Package storerepo keeps the catalog's baseline read model in a store.Store (in memory or in
// Redis). Each baseline is the protobuf JSON of its BaselinePublished payload under
// "catalog:baseline:<id>"; the set "catalog:baselines" lists the ids; "catalog:checkpoint" is the
// stream sequence applied up to.
package storerepo

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/patchwave/patchwave/libs/store"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
	"github.com/patchwave/patchwave/services/catalog/internal/pb"
)

const (
	keyIDs        = "catalog:baselines"
	keyBaseline   = "catalog:baseline:"
	keyCheckpoint = "catalog:checkpoint"
)

// Repo is a domain.Repository over a store.Store.
type Repo struct {
	s store.Store
}

var _ domain.Repository = (*Repo)(nil)

// New returns a repository over s.
func New(s store.Store) *Repo { return &Repo{s: s} }

// Put stores b and adds its id to the index.
func (r *Repo) Put(ctx context.Context, b domain.Baseline) error {
	data, err := protojson.Marshal(pb.Published(b))
	if err != nil {
		return fmt.Errorf("encode baseline %s: %w", b.ID, err)
	}
	if err := r.s.Set(ctx, keyBaseline+b.ID, data); err != nil {
		return fmt.Errorf("store baseline %s: %w", b.ID, err)
	}
	if _, err := r.s.SAdd(ctx, keyIDs, b.ID); err != nil {
		return fmt.Errorf("index baseline %s: %w", b.ID, err)
	}
	return nil
}

// Get returns one baseline, or domain.ErrNotFound.
func (r *Repo) Get(ctx context.Context, id string) (domain.Baseline, error) {
	data, found, err := r.s.Get(ctx, keyBaseline+id)
	if err != nil {
		return domain.Baseline{}, fmt.Errorf("load baseline %s: %w", id, err)
	}
	if !found {
		return domain.Baseline{}, fmt.Errorf("baseline %q: %w", id, domain.ErrNotFound)
	}
	var e eventsv1.BaselinePublished
	if err := protojson.Unmarshal(data, &e); err != nil {
		return domain.Baseline{}, fmt.Errorf("decode baseline %s: %w", id, err)
	}
	return pb.FromPublished(&e), nil
}

// List returns every baseline, newest first.
func (r *Repo) List(ctx context.Context) ([]domain.Baseline, error) {
	ids, err := r.s.SMembers(ctx, keyIDs)
	if err != nil {
		return nil, fmt.Errorf("list baselines: %w", err)
	}
	out := make([]domain.Baseline, 0, len(ids))
	for _, id := range ids {
		b, err := r.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	slices.SortFunc(out, func(a, b domain.Baseline) int {
		switch {
		case domain.Newer(a, b):
			return -1
		case domain.Newer(b, a):
			return 1
		default:
			return 0
		}
	})
	return out, nil
}

// Checkpoint returns the stream sequence applied up to, 0 when none.
func (r *Repo) Checkpoint(ctx context.Context) (uint64, error) {
	data, found, err := r.s.Get(ctx, keyCheckpoint)
	if err != nil {
		return 0, fmt.Errorf("load checkpoint: %w", err)
	}
	if !found {
		return 0, nil
	}
	seq, err := strconv.ParseUint(string(data), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("checkpoint %q: %w", data, err)
	}
	return seq, nil
}

// SetCheckpoint records the stream sequence applied up to.
func (r *Repo) SetCheckpoint(ctx context.Context, seq uint64) error {
	if err := r.s.Set(ctx, keyCheckpoint, []byte(strconv.FormatUint(seq, 10))); err != nil {
		return fmt.Errorf("store checkpoint: %w", err)
	}
	return nil
}
