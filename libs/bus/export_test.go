package bus

import "time"

// SetPullExpiry shortens how long b's pull requests wait, so tests notice a deleted consumer
// quickly.
func SetPullExpiry(b *Bus, d time.Duration) { b.pullExpiry = d }
