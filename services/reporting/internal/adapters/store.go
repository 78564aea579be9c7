// Package adapters keeps reporting's compliance read model in a store.Store (Redis or memory).
// Coverage is counted with one set of instance ids per (tenant, wave, state), so a query is a
// few SCARDs however large the fleet, and moving an instance between sets (SREM, SADD) is
// idempotent.
package adapters

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/patchwave/patchwave/libs/store"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// Key layout. Every key starts with "reporting:" so the service can share a store.
//
//	reporting:checkpoint                          string, last applied stream sequence
//	reporting:inst:<tenant>:<instance>            hash: wave, state, run, seq
//	reporting:waves:<tenant>                      set of wave numbers seen
//	reporting:bucket:<tenant>:<wave>:<state>      set of instance ids (state as a number)
//	reporting:failed:<tenant>:<instance>          hash: patch id -> JSON {wave, run_id, error}
//	reporting:failed-instances:<tenant>           set of instance ids with failed patches
const root = "reporting:"

// Store is the compliance repository over a store.Store.
type Store struct {
	st store.Store
}

// New returns the repository over st.
func New(st store.Store) *Store { return &Store{st: st} }

var _ domain.Repository = (*Store)(nil)

// Checkpoint implements domain.Repository.
func (s *Store) Checkpoint(ctx context.Context) (uint64, error) {
	v, found, err := s.st.Get(ctx, root+"checkpoint")
	if err != nil || !found {
		return 0, err
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("compliance checkpoint: %w", err)
	}
	return n, nil
}

// SetCheckpoint implements domain.Repository.
func (s *Store) SetCheckpoint(ctx context.Context, seq uint64) error {
	return s.st.Set(ctx, root+"checkpoint", []byte(strconv.FormatUint(seq, 10)))
}

func instKey(tenant, id string) string { return root + "inst:" + tenant + ":" + id }

func bucketKey(tenant string, wave int32, state typesv1.ComplianceState) string {
	return root + "bucket:" + tenant + ":" + strconv.Itoa(int(wave)) + ":" + strconv.Itoa(int(state))
}

// Instance implements domain.Repository.
func (s *Store) Instance(ctx context.Context, tenant, id string) (domain.Instance, bool, error) {
	h, err := s.st.HGetAll(ctx, instKey(tenant, id))
	if err != nil {
		return domain.Instance{}, false, fmt.Errorf("read instance %s: %w", id, err)
	}
	if len(h) == 0 {
		return domain.Instance{Tenant: tenant, ID: id}, false, nil
	}
	in := domain.Instance{Tenant: tenant, ID: id, LastRun: string(h["run"])}
	wave, err1 := strconv.ParseInt(string(h["wave"]), 10, 32)
	state, err2 := strconv.ParseInt(string(h["state"]), 10, 32)
	seq, err3 := strconv.ParseUint(string(h["seq"]), 10, 64)
	for _, err := range []error{err1, err2, err3} {
		if err != nil {
			return domain.Instance{}, false, fmt.Errorf("decode instance %s: %w", id, err)
		}
	}
	in.Wave, in.State, in.Seq = int32(wave), typesv1.ComplianceState(state), seq
	return in, true, nil
}

// SaveInstance implements domain.Repository.
func (s *Store) SaveInstance(ctx context.Context, prev domain.Instance, prevFound bool, next domain.Instance) error {
	newBucket := bucketKey(next.Tenant, next.Wave, next.State)
	if prevFound {
		if old := bucketKey(prev.Tenant, prev.Wave, prev.State); old != newBucket {
			if _, err := s.st.SRem(ctx, old, prev.ID); err != nil {
				return fmt.Errorf("move instance %s: %w", prev.ID, err)
			}
		}
	}
	if _, err := s.st.SAdd(ctx, newBucket, next.ID); err != nil {
		return fmt.Errorf("move instance %s: %w", next.ID, err)
	}
	if _, err := s.st.SAdd(ctx, root+"waves:"+next.Tenant, strconv.Itoa(int(next.Wave))); err != nil {
		return fmt.Errorf("index wave %d: %w", next.Wave, err)
	}
	err := s.st.HSet(ctx, instKey(next.Tenant, next.ID), map[string][]byte{
		"wave":  []byte(strconv.Itoa(int(next.Wave))),
		"state": []byte(strconv.Itoa(int(next.State))),
		"run":   []byte(next.LastRun),
		"seq":   []byte(strconv.FormatUint(next.Seq, 10)),
	})
	if err != nil {
		return fmt.Errorf("save instance %s: %w", next.ID, err)
	}
	return nil
}

func failedKey(tenant, instanceID string) string { return root + "failed:" + tenant + ":" + instanceID }

// ReplaceFailedPatches implements domain.Repository.
func (s *Store) ReplaceFailedPatches(ctx context.Context, tenant, instanceID string, fps []domain.FailedPatch) error {
	key := failedKey(tenant, instanceID)
	if err := s.st.Delete(ctx, key); err != nil {
		return fmt.Errorf("clear failed patches of %s: %w", instanceID, err)
	}
	index := root + "failed-instances:" + tenant
	if len(fps) == 0 {
		if _, err := s.st.SRem(ctx, index, instanceID); err != nil {
			return fmt.Errorf("unindex failed patches of %s: %w", instanceID, err)
		}
		return nil
	}
	fields := make(map[string][]byte, len(fps))
	for _, fp := range fps {
		v, err := json.Marshal(fp)
		if err != nil {
			return fmt.Errorf("encode failed patch %s: %w", fp.PatchID, err)
		}
		fields[fp.PatchID] = v
	}
	if err := s.st.HSet(ctx, key, fields); err != nil {
		return fmt.Errorf("record failed patches of %s: %w", instanceID, err)
	}
	if _, err := s.st.SAdd(ctx, index, instanceID); err != nil {
		return fmt.Errorf("index failed patches of %s: %w", instanceID, err)
	}
	return nil
}

// Coverage implements domain.Repository.
func (s *Store) Coverage(ctx context.Context, tenant string) ([]domain.WaveCoverage, error) {
	waves, err := s.st.SMembers(ctx, root+"waves:"+tenant)
	if err != nil {
		return nil, fmt.Errorf("list waves of %s: %w", tenant, err)
	}
	out := make([]domain.WaveCoverage, 0, len(waves))
	for _, w := range waves {
		n, err := strconv.ParseInt(w, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("decode wave %q: %w", w, err)
		}
		wc := domain.WaveCoverage{Wave: int32(n)}
		for _, state := range domain.States {
			c, err := s.st.SCard(ctx, bucketKey(tenant, wc.Wave, state))
			if err != nil {
				return nil, fmt.Errorf("count wave %d: %w", n, err)
			}
			wc.Coverage.Add(state, c)
		}
		out = append(out, wc)
	}
	return out, nil
}

// FailedPatches implements domain.Repository.
func (s *Store) FailedPatches(ctx context.Context, tenant string) ([]domain.FailedPatch, error) {
	ids, err := s.st.SMembers(ctx, root+"failed-instances:"+tenant)
	if err != nil {
		return nil, fmt.Errorf("list failed patches of %s: %w", tenant, err)
	}
	var out []domain.FailedPatch
	for _, id := range ids {
		h, err := s.st.HGetAll(ctx, failedKey(tenant, id))
		if err != nil {
			return nil, fmt.Errorf("read failed patches of %s: %w", id, err)
		}
		for patch, v := range h {
			fp := domain.FailedPatch{PatchID: patch, InstanceID: id}
			if err := json.Unmarshal(v, &fp); err != nil {
				return nil, fmt.Errorf("decode failed patch %s of %s: %w", patch, id, err)
			}
			out = append(out, fp)
		}
	}
	return out, nil
}
