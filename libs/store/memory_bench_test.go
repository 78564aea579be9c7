package store_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/patchwave/patchwave/libs/store"
)

// BenchmarkMemorySmallSets reports the heap a Memory keeps per set of one and of three
// members (the runs of an instance, say): live bytes after a GC, divided by the sets. The keys'
// and members' strings are the caller's and are not counted, so the figure is the store's own
// cost of a set (its slot in the map of sets and the set itself).
func BenchmarkMemorySmallSets(b *testing.B) {
	for _, members := range []int{1, 3} {
		b.Run(fmt.Sprintf("members=%d", members), func(b *testing.B) {
			const sets = 20_000
			ctx := context.Background()
			keys := make([]string, sets)
			names := make([]string, members)
			for i := range keys {
				keys[i] = fmt.Sprintf("snapinst:bench/i-%017x", i)
			}
			for i := range names {
				names[i] = fmt.Sprintf("run-%016x", i)
			}
			var perSet float64
			for b.Loop() {
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				m := store.NewMemory()
				for _, k := range keys {
					if _, err := m.SAdd(ctx, k, names...); err != nil {
						b.Fatal(err)
					}
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				perSet = float64(after.HeapAlloc-before.HeapAlloc) / sets
				runtime.KeepAlive(m)
			}
			b.ReportMetric(perSet, "heap-B/set")
		})
	}
}
