package bench

import (
	"bytes"
	"context"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"sync"
	"time"
)

// heapWatch samples the live heap (what the last GC left) every second during the waves,
// keeping the largest and, if asked, a heap profile taken when it was reached.
type heapWatch struct {
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	peak   uint64
	prof   []byte
}

const liveMetric = "/gc/heap/live:bytes"

func watchHeap(ctx context.Context, profile bool) *heapWatch {
	ctx, cancel := context.WithCancel(ctx)
	h := &heapWatch{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(h.done)
		t := time.NewTicker(time.Second)
		defer t.Stop()
		var profiledAt uint64
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			live := liveHeap()
			h.mu.Lock()
			h.peak = max(h.peak, live)
			h.mu.Unlock()
			// A new profile when the live heap grew by a tenth since the last one.
			if profile && live > profiledAt+profiledAt/10 {
				var buf bytes.Buffer
				if pprof.Lookup("heap").WriteTo(&buf, 0) == nil {
					profiledAt = live
					h.mu.Lock()
					h.prof = buf.Bytes()
					h.mu.Unlock()
				}
			}
		}
	}()
	return h
}

func liveHeap() uint64 {
	s := []metrics.Sample{{Name: liveMetric}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// allocs are the runtime's cumulative heap allocation counters and its count of finished GC
// cycles.
type allocs struct{ bytes, objects, cycles uint64 }

func readAllocs() allocs {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/gc/heap/allocs:objects"}, {Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	var v [3]uint64
	for i := range s {
		if s[i].Value.Kind() == metrics.KindUint64 {
			v[i] = s[i].Value.Uint64()
		}
	}
	return allocs{bytes: v[0], objects: v[1], cycles: v[2]}
}

// stop ends the sampling and returns the peak and, after a GC, the current live heap in MiB.
func (h *heapWatch) stop() (peak, end float64) {
	h.cancel()
	<-h.done
	runtime.GC()
	live := liveHeap()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.peak = max(h.peak, live)
	return float64(h.peak) / (1 << 20), float64(live) / (1 << 20)
}

// profile is the heap profile taken at the largest live heap.
func (h *heapWatch) profile() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.prof
}
