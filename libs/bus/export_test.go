package bus

import "time"

// SetPullExpiry shortens how long b's pull requests wait, so tests notice a deleted consumer
// quickly.
func SetPullExpiry(b *Bus, d time.Duration) { b.pullExpiry = d }

// ShortenEnsureBackoff makes EnsureStreams retry a transient refusal at once, for the tests of
// its attempts; the previous waits come back when the test ends.
func ShortenEnsureBackoff(t interface{ Cleanup(func()) }) {
	b, m := ensureBackoff, ensureBackoffMax
	ensureBackoff, ensureBackoffMax = time.Millisecond, time.Millisecond
	t.Cleanup(func() { ensureBackoff, ensureBackoffMax = b, m })
}
