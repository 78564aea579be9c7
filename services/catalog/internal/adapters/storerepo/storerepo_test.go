package storerepo_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/adapters/storerepo"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
)

// stores returns the store implementations the repository runs on.
func stores(t *testing.T) map[string]func(t *testing.T) store.Store {
	return map[string]func(t *testing.T) store.Store{
		"memory": func(t *testing.T) store.Store {
			s := store.NewMemory()
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
		"redis": func(t *testing.T) store.Store {
			r := testkit.StartRedis(t)
			s, err := store.NewRedis(store.RedisConfig{Addr: r.Addr(), Prefix: "test:"})
			require.NoError(t, err)
			t.Cleanup(func() { _ = s.Close() })
			return s
		},
	}
}

func baseline(id string, version int32, at time.Time) domain.Baseline {
	return domain.Baseline{
		ID: id, OSFamily: "amazon-linux-2023", Version: version, PublishedAt: at,
		Patches: []domain.Patch{{
			ID: "ALAS2023-2026-1001", Vendor: "Amazon Linux", Title: "openssl", OSFamily: "amazon-linux-2023",
			Severity: typesv1.Severity_SEVERITY_CRITICAL, Classification: typesv1.Classification_CLASSIFICATION_SECURITY,
			CVEs: []string{"CVE-2026-21430"}, RebootRequired: true,
		}},
	}
}

func TestRepo(t *testing.T) {
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("a stored baseline reads back unchanged", func(t *testing.T) {
				r := storerepo.New(open(t))
				want := baseline("al2023-2026.11", 1, t0)
				require.NoError(t, r.Put(t.Context(), want))
				got, err := r.Get(t.Context(), want.ID)
				require.NoError(t, err)
				require.Equal(t, want, got)
			})
			t.Run("an unknown baseline is not found", func(t *testing.T) {
				r := storerepo.New(open(t))
				_, err := r.Get(t.Context(), "nope")
				require.ErrorIs(t, err, domain.ErrNotFound)
			})
			t.Run("storing a baseline twice keeps one", func(t *testing.T) {
				r := storerepo.New(open(t))
				b := baseline("al2023-2026.11", 1, t0)
				require.NoError(t, r.Put(t.Context(), b))
				require.NoError(t, r.Put(t.Context(), b))
				list, err := r.List(t.Context())
				require.NoError(t, err)
				require.Len(t, list, 1)
			})
			t.Run("the list is newest first, then by version, then by id", func(t *testing.T) {
				r := storerepo.New(open(t))
				for _, b := range []domain.Baseline{
					baseline("old", 1, t0),
					baseline("new-b", 2, t0.Add(time.Hour)),
					baseline("new-a", 2, t0.Add(time.Hour)),
					baseline("new-v3", 3, t0.Add(time.Hour)),
					baseline("newest", 1, t0.Add(2*time.Hour)),
				} {
					require.NoError(t, r.Put(t.Context(), b))
				}
				list, err := r.List(t.Context())
				require.NoError(t, err)
				var ids []string
				for _, b := range list {
					ids = append(ids, b.ID)
				}
				require.Equal(t, []string{"newest", "new-v3", "new-a", "new-b", "old"}, ids)
			})
			t.Run("the checkpoint starts at zero and reads back", func(t *testing.T) {
				r := storerepo.New(open(t))
				seq, err := r.Checkpoint(t.Context())
				require.NoError(t, err)
				require.Zero(t, seq)
				require.NoError(t, r.SetCheckpoint(t.Context(), 42))
				seq, err = r.Checkpoint(t.Context())
				require.NoError(t, err)
				require.Equal(t, uint64(42), seq)
			})
		})
	}
}
