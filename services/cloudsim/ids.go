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
// a hash of the seed and a few labels.
func hashBytes(seed int64, parts ...string) [32]byte {
	h := sha256.New()
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(seed))
	h.Write(b[:])
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// hashHex is n lowercase hex digits of the hash.
func hashHex(seed int64, n int, parts ...string) string {
	sum := hashBytes(seed, parts...)
	return hex.EncodeToString(sum[:])[:n]
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
