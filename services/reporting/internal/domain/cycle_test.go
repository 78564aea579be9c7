package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

func TestTheCycleInForceAndItsPin(t *testing.T) {
	dec := domain.Cycle{Key: "2026-12"}
	require.Equal(t, dec, dec.At(time.Date(2026, 12, 31, 23, 59, 0, 0, time.UTC)), "same month")
	require.Equal(t, domain.Cycle{Key: "2027-01"}, dec.At(time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC)), "a later month, not pinned")
	require.Equal(t, dec, dec.At(time.Date(2026, 11, 30, 0, 0, 0, 0, time.UTC)), "an older event changes nothing")

	pins := []domain.Pin{{OSFamily: "win2022", BaselineID: "win-3", Version: 3}, {OSFamily: "al2023", BaselineID: "al-2", Version: 2}}
	pinned, changed := dec.WithPin("2026-12", pins, "r1", time.Date(2026, 12, 10, 1, 0, 0, 0, time.UTC))
	require.True(t, changed)
	require.Equal(t, "al2023", pinned.Pins[0].OSFamily, "sorted by family")
	require.Equal(t, "al-2", pinned.ApplicableFamily("al2023", "al-3"), "the pin, not a later approval")
	require.Equal(t, "rhel-1", pinned.ApplicableFamily("rhel9", "rhel-1"), "a family the pin does not name: its approval")
	_, changed = pinned.WithPin("2026-12", pins, "r1", time.Date(2026, 12, 10, 1, 0, 0, 0, time.UTC))
	require.False(t, changed, "a repeat")
	_, changed = pinned.WithPin("2026-11", pins, "r0", time.Date(2026, 11, 10, 1, 0, 0, 0, time.UTC))
	require.False(t, changed, "a pin of an earlier cycle")
	next, changed := pinned.WithPin("2027-01", pins[:1], "r2", time.Date(2026, 12, 28, 1, 0, 0, 0, time.UTC))
	require.True(t, changed, "an early pin of the next cycle starts it")
	require.Equal(t, "2027-01", next.Key)
	require.Equal(t, "al-3", next.ApplicableFamily("al2023", "al-3"))
	require.Empty(t, domain.Cycle{Key: "2027-01"}.ApplicableFamily("al2023", ""), "nothing approved, nothing pinned")
}

func TestScanConcurrency(t *testing.T) {
	count := func(n int32) *typesv1.Amount { return &typesv1.Amount{Value: &typesv1.Amount_Count{Count: n}} }
	pct := func(n int32) *typesv1.Amount { return &typesv1.Amount{Value: &typesv1.Amount_Percent{Percent: n}} }
	for _, c := range []struct {
		a    *typesv1.Amount
		n    int
		want int
	}{
		{count(5), 40, 5}, {count(100), 40, 40}, {count(0), 40, 1},
		{pct(25), 40, 10}, {pct(25), 41, 11}, {pct(1), 40, 1}, {pct(100), 3, 3},
		{nil, 100, 10}, {nil, 5, 1},
	} {
		require.Equal(t, c.want, domain.ScanConcurrency(c.a, c.n), "%v of %d", c.a, c.n)
	}
	ref := domain.ScanChunk{ScanID: "scan-a/b", N: 7, Order: 42}.Ref()
	scan, n, err := domain.ParseScanRef(ref)
	require.NoError(t, err)
	require.Equal(t, "scan-a/b", scan)
	require.Equal(t, 7, n)
	require.Less(t, domain.ScanChunk{ScanID: "z", N: 2, Order: 42}.Ref(), domain.ScanChunk{ScanID: "a", N: 10, Order: 42}.Ref(), "chunk order, not scan id")
	_, _, err = domain.ParseScanRef("nope")
	require.ErrorContains(t, err, "want <order>/<n>/<scan>")
}
