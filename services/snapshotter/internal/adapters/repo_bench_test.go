package adapters

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/patchwave/patchwave/libs/store"

	"github.com/patchwave/patchwave/services/snapshotter/internal/domain"
)

// BenchmarkRecordUpdate is the records projection's work for one event: read a job's record,
// change it, write it back (with its instance index and retention bucket).
func BenchmarkRecordUpdate(b *testing.B) {
	ctx := context.Background()
	st := store.NewMemory()
	defer func() { _ = st.Close() }()
	r := New(st)
	started := time.Date(2026, 12, 4, 18, 39, 50, 123456789, time.UTC)
	const jobs = 1000
	for i := range jobs {
		s := domain.Snapshot{Tenant: "bench", RunID: "run-9b5165268b9739d3", InstanceID: fmt.Sprintf("i-%017x", i),
			SetID: fmt.Sprintf("snapset-%d", i), Account: "123456789012", Region: "eu-west-1",
			State: domain.SnapshotStarted, StartedAt: started}
		if err := r.PutSnapshot(ctx, s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		s, found, err := r.Snapshot(ctx, "bench", "run-9b5165268b9739d3", fmt.Sprintf("i-%017x", i%jobs))
		if err != nil || !found {
			b.Fatal(found, err)
		}
		s.State, s.Outcome, s.DueAt = domain.SnapshotCompleted, domain.OutcomeSucceeded, started.Add(720*time.Hour)
		if err := r.PutSnapshot(ctx, s); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
