package cloudsim

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"regexp"
	"strconv"
)

// hashBytes is the one source of determinism: every id, credential and per-instance outcome is
// a hash of the seed and a few labels. It runs on every id a call allocates (under the world's
// lock) and on every response's request id, so short inputs are hashed from a stack buffer.
func hashBytes(seed int64, parts ...string) [32]byte {
	var stack [192]byte
	buf := binary.BigEndian.AppendUint64(stack[:0], uint64(seed))
	for _, p := range parts {
		buf = append(buf, p...)
		buf = append(buf, 0)
	}
	return sha256.Sum256(buf) // the same bytes as the seed and each part with a zero after it
}

// hashHex is n lowercase hex digits of the hash (n <= 64).
func hashHex(seed int64, n int, parts ...string) string {
	sum := hashBytes(seed, parts...)
	var out [64]byte
	hex.Encode(out[:], sum[:])
	return string(out[:n])
}

// hashUnit maps the hash onto [0, 1): compared with a rate it decides an outcome.
func hashUnit(seed int64, parts ...string) float64 {
	sum := hashBytes(seed, parts...)
	return float64(binary.BigEndian.Uint64(sum[:8])>>11) / float64(1<<53)
}

// hashAlnum is n characters of [A-Z0-9] (access key ids).
func hashAlnum(seed int64, n int, parts ...string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
	sum := hashBytes(seed, parts...)
	out := make([]byte, n)
	for i := range out {
		out[i] = alphabet[int(sum[i%32]+byte(i/32))%len(alphabet)]
	}
	return string(out)
}

// newID allocates the next id of a kind ("i", "snap", "vol", ...): prefix, dash, 17 hex digits.
func (w *world) newID(prefix string) string {
	w.meta.Seq++
	w.markMeta()
	return prefix + "-" + hashHex(w.seed, 17, prefix, strconv.FormatUint(w.meta.Seq, 10))
}

// newUUID allocates the next UUID-shaped id (SSM command ids).
func (w *world) newUUID() string {
	w.meta.Seq++
	w.markMeta()
	h := hashHex(w.seed, 32, "uuid", strconv.FormatUint(w.meta.Seq, 10))
	return fmt.Sprintf("%s-%s-4%s-a%s-%s", h[0:8], h[8:12], h[13:16], h[17:20], h[20:32])
}

// nextOrd is the next position in creation order (used by indexes and page tokens).
func (w *world) nextOrd() uint64 {
	w.meta.Ord++
	w.markMeta()
	return w.meta.Ord
}

var (
	instanceIDPattern = regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`)
	snapshotIDPattern = regexp.MustCompile(`^snap-([0-9a-f]{8}|[0-9a-f]{17})$`)
)

// pct formats a progress fraction the way EC2 does ("42%").
func pct(f float64) string {
	return strconv.Itoa(int(math.Floor(math.Max(0, math.Min(1, f))*100))) + "%"
}

func itoa(n int) string { return strconv.Itoa(n) }
