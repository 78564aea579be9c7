package simfleet_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider/simfleet"
)

// fakeClock is a clock the test moves by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 3, 10, 9, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newFleet builds a fleet, failing the test if the config is rejected.
func newFleet(t *testing.T, cfg simfleet.Config) *simfleet.Fleet {
	t.Helper()
	f, err := simfleet.New(cfg)
	require.NoError(t, err)
	return f
}

// populated builds a fleet with n instances of tenant "acme" in 3 waves.
func populated(t *testing.T, cfg simfleet.Config, n int) *simfleet.Fleet {
	t.Helper()
	f := newFleet(t, cfg)
	require.NoError(t, f.Populate("acme", n, 3))
	return f
}
