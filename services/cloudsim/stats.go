package cloudsim

import (
	"container/heap"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"
)

// Stats are the call counters of the emulator since start or the last reset.
type Stats struct {
	// Operations maps "service:Operation" (for example "ec2:DescribeInstances") to its counters.
	Operations map[string]OperationStats `json:"operations"`
	// Busy counts the instances with a patching operation in progress: a snapshot being taken
	// (CreateSnapshots, until its snapshots end) or a command running (SendCommand, from the
	// request until the invocation ends), each instance once however many it has.
	Busy BusyStats `json:"busy"`
}

// BusyStats count the instances with an operation in progress, now and at most at once.
type BusyStats struct {
	InFlight    int64 `json:"in_flight"`
	MaxInFlight int64 `json:"max_in_flight"`
}

// OperationStats are the counters of one operation.
type OperationStats struct {
	// Calls is every call, answered or refused.
	Calls int64 `json:"calls"`
	// OK is the calls answered without an error.
	OK int64 `json:"ok"`
	// Errors counts the refused calls by error code.
	Errors map[string]int64 `json:"errors,omitempty"`
	// InFlight is the calls executing now.
	InFlight int64 `json:"in_flight"`
	// MaxInFlight is the highest number of calls of this operation executing at once. A call is
	// executing from the moment its operation is known (before latency injection and
	// authentication) until its response is written.
	MaxInFlight int64 `json:"max_in_flight"`
}

type opCounter struct {
	name                             string // the operation, interned once for the per-instance counts
	calls, ok, inFlight, maxInFlight atomic.Int64
	mu                               sync.Mutex
	errors                           map[string]int64
}

// statsRecorder keeps the counters; it has its own locks so that counting never waits on the
// world's lock.
type statsRecorder struct {
	mu  sync.RWMutex
	ops map[string]*opCounter

	instMu sync.Mutex
	inst   map[instOp]int64  // (instance, operation) -> calls; one flat map, not one per instance
	ids    map[string]string // instance id -> the one copy of it the keys of inst share

	busyMu  sync.Mutex
	busy    map[string]time.Time // instance -> end of its operations in progress
	ends    endHeap              // the busy ends, lazily pruned
	busyMax int64
}

// instOp is a key of the per-instance counts; both strings are shared, so the counts of
// 100,000 instances neither copy the operation's name or an instance's id per operation nor
// keep the request that named the instance alive: the operation's name is interned once per
// operation (opCounter.name), the instance's id once per instance (statsRecorder.ids, a plain
// map under instMu, cheaper per call than unique.Make's concurrent one).
type instOp struct{ instance, op string }

// busyEnd is one instance's busy end in the heap; stale when the instance's end moved.
type busyEnd struct {
	at       time.Time
	instance string
}

type endHeap []busyEnd

func (h endHeap) Len() int           { return len(h) }
func (h endHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h endHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *endHeap) Push(x any)        { *h = append(*h, x.(busyEnd)) }
func (h *endHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// prune drops the instances whose operations ended by now.
func (s *statsRecorder) prune(now time.Time) {
	for len(s.ends) > 0 && !s.ends[0].at.After(now) {
		e := heap.Pop(&s.ends).(busyEnd)
		if end, ok := s.busy[e.instance]; ok && !end.After(now) {
			delete(s.busy, e.instance)
		}
	}
}

// operation records that instance is busy from start (now, on the emulator's clock, which
// only moves forward) until end; the maximum is exact because every operation starts when it
// is recorded.
func (s *statsRecorder) operation(instance string, start, end time.Time) {
	if !end.After(start) {
		return
	}
	s.busyMu.Lock()
	defer s.busyMu.Unlock()
	s.prune(start)
	if cur, ok := s.busy[instance]; !ok || end.After(cur) {
		s.busy[instance] = end
		heap.Push(&s.ends, busyEnd{at: end, instance: instance})
	}
	s.busyMax = max(s.busyMax, int64(len(s.busy)))
}

func (s *statsRecorder) busyStats(now time.Time) BusyStats {
	s.busyMu.Lock()
	defer s.busyMu.Unlock()
	s.prune(now)
	return BusyStats{InFlight: int64(len(s.busy)), MaxInFlight: s.busyMax}
}

func newStatsRecorder() *statsRecorder {
	return &statsRecorder{ops: map[string]*opCounter{}, inst: map[instOp]int64{}, ids: map[string]string{},
		busy: map[string]time.Time{}}
}

func (s *statsRecorder) counter(op string) *opCounter {
	s.mu.RLock()
	c := s.ops[op]
	s.mu.RUnlock()
	if c != nil {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = s.ops[op]; c == nil {
		c = &opCounter{name: unique.Make(op).Value(), errors: map[string]int64{}}
		s.ops[op] = c
	}
	return c
}

// begin counts a call as executing and keeps the highest concurrency seen exact: the maximum is
// raised with compare-and-swap from the value this call's increment produced.
func (s *statsRecorder) begin(op string) *opCounter {
	c := s.counter(op)
	c.calls.Add(1)
	n := c.inFlight.Add(1)
	for {
		m := c.maxInFlight.Load()
		if n <= m || c.maxInFlight.CompareAndSwap(m, n) {
			break
		}
	}
	return c
}

// end counts the call's outcome ("" is success) and the instances it named.
func (s *statsRecorder) end(c *opCounter, code string, instances []string) {
	if code == "" {
		c.ok.Add(1)
	} else {
		c.mu.Lock()
		c.errors[code]++
		c.mu.Unlock()
	}
	c.inFlight.Add(-1)
	if len(instances) == 0 {
		return
	}
	s.instMu.Lock()
	op := c.name
	for _, id := range instances {
		k := instOp{instance: id, op: op}
		if _, ok := s.inst[k]; !ok {
			own, ok := s.ids[id]
			if !ok {
				own = strings.Clone(id)
				s.ids[own] = own
			}
			k.instance = own
		}
		s.inst[k]++
	}
	s.instMu.Unlock()
}

func (s *statsRecorder) snapshot() Stats {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := Stats{Operations: make(map[string]OperationStats, len(s.ops))}
	for op, c := range s.ops {
		c.mu.Lock()
		errs := maps.Clone(c.errors)
		c.mu.Unlock()
		if len(errs) == 0 {
			errs = nil
		}
		out.Operations[op] = OperationStats{Calls: c.calls.Load(), OK: c.ok.Load(), Errors: errs,
			InFlight: c.inFlight.Load(), MaxInFlight: c.maxInFlight.Load()}
	}
	return out
}

func (s *statsRecorder) instance(id string) map[string]int64 {
	s.mu.RLock()
	ops := make([]string, 0, len(s.ops))
	for op := range s.ops {
		ops = append(ops, op)
	}
	s.mu.RUnlock()
	s.instMu.Lock()
	defer s.instMu.Unlock()
	out := map[string]int64{}
	for _, op := range ops {
		if n, ok := s.inst[instOp{instance: id, op: op}]; ok {
			out[op] = n
		}
	}
	return out
}

// reset zeroes the counters; calls executing now stay counted in InFlight and MaxInFlight.
func (s *statsRecorder) reset() {
	s.mu.Lock()
	for _, c := range s.ops {
		c.calls.Store(0)
		c.ok.Store(0)
		c.maxInFlight.Store(c.inFlight.Load())
		c.mu.Lock()
		c.errors = map[string]int64{}
		c.mu.Unlock()
	}
	s.mu.Unlock()
	s.instMu.Lock()
	s.inst = map[instOp]int64{}
	s.ids = map[string]string{}
	s.instMu.Unlock()
	s.busyMu.Lock()
	s.busyMax = int64(len(s.busy))
	s.busyMu.Unlock()
}
