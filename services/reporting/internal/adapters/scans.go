package adapters

import (
	"context"
	"fmt"
	"slices"
	"strconv"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

// Scan keys (see the key layout in store.go):
//
//	reporting:scan-plan:<tenant>:<scan>              string, JSON domain.ScanPlan
//	reporting:scan-chunk:<tenant>:<scan>:<n>         string, JSON domain.ScanChunk
//	reporting:scan-waves:<tenant>                    set of waves with scan chunks
//	reporting:scan-pending:<tenant>:<wave>           set of chunk refs not released yet
//	reporting:scan-inflight:<tenant>:<wave>          set of "<scan>/<instance>" released, no outcome yet

func scanPlanKey(tenant, scanID string) string { return root + "scan-plan:" + tenant + ":" + scanID }

func scanChunkKey(tenant, scanID string, n int) string {
	return root + "scan-chunk:" + tenant + ":" + scanID + ":" + strconv.Itoa(n)
}

func scanWavesKey(tenant string) string { return root + "scan-waves:" + tenant }

func scanPendingKey(tenant string, wave int32) string {
	return root + "scan-pending:" + tenant + ":" + strconv.Itoa(int(wave))
}

func scanInFlightKey(tenant string, wave int32) string {
	return root + "scan-inflight:" + tenant + ":" + strconv.Itoa(int(wave))
}

// ScanPlan implements domain.Repository.
func (s *Store) ScanPlan(ctx context.Context, tenant, scanID string) (domain.ScanPlan, bool, error) {
	var p domain.ScanPlan
	found, err := s.getJSON(ctx, scanPlanKey(tenant, scanID), &p)
	return p, found, err
}

// PutScanPlan implements domain.Repository.
func (s *Store) PutScanPlan(ctx context.Context, tenant string, p domain.ScanPlan) error {
	return s.setJSON(ctx, scanPlanKey(tenant, p.ScanID), p)
}

// PutScanChunk implements domain.Repository: the chunk, pending in its wave.
func (s *Store) PutScanChunk(ctx context.Context, tenant string, c domain.ScanChunk) error {
	if err := s.setJSON(ctx, scanChunkKey(tenant, c.ScanID, c.N), c); err != nil {
		return err
	}
	if _, err := s.st.SAdd(ctx, scanWavesKey(tenant), strconv.Itoa(int(c.Wave))); err != nil {
		return fmt.Errorf("index scan wave: %w", err)
	}
	if _, err := s.st.SAdd(ctx, scanPendingKey(tenant, c.Wave), c.Ref()); err != nil {
		return fmt.Errorf("queue scan chunk: %w", err)
	}
	return nil
}

// ScanChunk implements domain.Repository.
func (s *Store) ScanChunk(ctx context.Context, tenant, scanID string, n int) (domain.ScanChunk, bool, error) {
	var c domain.ScanChunk
	found, err := s.getJSON(ctx, scanChunkKey(tenant, scanID, n), &c)
	return c, found, err
}

// ScanReleased implements domain.Repository: the chunk leaves its wave's pending set and its
// instances are in flight.
func (s *Store) ScanReleased(ctx context.Context, tenant string, c domain.ScanChunk) error {
	if _, err := s.st.SRem(ctx, scanPendingKey(tenant, c.Wave), c.Ref()); err != nil {
		return fmt.Errorf("release scan chunk: %w", err)
	}
	if len(c.InstanceIDs) == 0 {
		return nil
	}
	members := make([]string, len(c.InstanceIDs))
	for i, id := range c.InstanceIDs {
		members[i] = domain.ScanInFlight(c.ScanID, id)
	}
	if _, err := s.st.SAdd(ctx, scanInFlightKey(tenant, c.Wave), members...); err != nil {
		return fmt.Errorf("release scan chunk: %w", err)
	}
	return nil
}

// ScanWaves implements domain.Repository.
func (s *Store) ScanWaves(ctx context.Context, tenant string) ([]int32, error) {
	ms, err := s.st.SMembers(ctx, scanWavesKey(tenant))
	if err != nil {
		return nil, err
	}
	out := make([]int32, 0, len(ms))
	for _, m := range ms {
		n, err := strconv.ParseInt(m, 10, 32)
		if err != nil {
			return nil, fmt.Errorf("decode scan wave %q of %s", m, tenant)
		}
		out = append(out, int32(n))
	}
	slices.Sort(out)
	return out, nil
}

// ScanDone implements domain.Repository: the instance's scan leaves every wave's in-flight set.
func (s *Store) ScanDone(ctx context.Context, tenant, scanID, instanceID string) error {
	waves, err := s.ScanWaves(ctx, tenant)
	if err != nil {
		return err
	}
	for _, w := range waves {
		if _, err := s.st.SRem(ctx, scanInFlightKey(tenant, w), domain.ScanInFlight(scanID, instanceID)); err != nil {
			return fmt.Errorf("scan outcome: %w", err)
		}
	}
	return nil
}

// PendingScanChunks implements domain.Repository: sorted, so in release order.
func (s *Store) PendingScanChunks(ctx context.Context, tenant string, wave int32) ([]string, error) {
	refs, err := s.st.SMembers(ctx, scanPendingKey(tenant, wave))
	if err != nil {
		return nil, err
	}
	slices.Sort(refs)
	return refs, nil
}

// ScansInFlight implements domain.Repository.
func (s *Store) ScansInFlight(ctx context.Context, tenant string, wave int32) (int, error) {
	return s.st.SCard(ctx, scanInFlightKey(tenant, wave))
}
