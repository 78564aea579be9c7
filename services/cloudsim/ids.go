package cloudsim

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"strconv"
	"strings"
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
	// prefix + "-" + hashHex(seed, 17, prefix, seq), built on the stack: one allocation, the id.
	var seq [20]byte
	sum := hashBytes(w.seed, prefix, string(strconv.AppendUint(seq[:0], w.meta.Seq, 10)))
	var hexSum [64]byte
	hex.Encode(hexSum[:], sum[:])
	var out [48]byte
	id := append(out[:0], prefix...)
	id = append(id, '-')
	id = append(id, hexSum[:17]...)
	return string(id)
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

// The id checks are written out rather than matched with regexps: a call checks every id it
// names (50 per batch), and a regexp match cost more than the look-up it guards. Each is tested
// against its regexp (TestIDChecksAreTheirPatterns).

// validEC2ID tells whether id is prefix, a dash and 8 or 17 lowercase hex digits
// (^prefix-([0-9a-f]{8}|[0-9a-f]{17})$): an instance id ("i") or a snapshot id ("snap").
func validEC2ID(id, prefix string) bool {
	rest, ok := strings.CutPrefix(id, prefix)
	if !ok || len(rest) == 0 || rest[0] != '-' {
		return false
	}
	rest = rest[1:]
	return (len(rest) == 8 || len(rest) == 17) && lowerHex(rest)
}

// validSSMInstanceID tells whether id is an SSM target: ^(i|mi)-[0-9a-f]{8,17}$.
func validSSMInstanceID(id string) bool {
	rest, ok := strings.CutPrefix(id, "i-")
	if !ok {
		if rest, ok = strings.CutPrefix(id, "mi-"); !ok {
			return false
		}
	}
	return len(rest) >= 8 && len(rest) <= 17 && lowerHex(rest)
}

// validCommandID tells whether id is a command id, a UUID in lowercase hex:
// ^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$.
func validCommandID(id string) bool {
	if len(id) != 36 {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch i {
		case 8, 13, 18, 23:
			if id[i] != '-' {
				return false
			}
		default:
			if !lowerHex(id[i : i+1]) {
				return false
			}
		}
	}
	return true
}

func lowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// percents are "0%" to "100%", made once: a snapshot's progress is written in every answer.
var percents = func() (p [101]string) {
	for i := range p {
		p[i] = strconv.Itoa(i) + "%"
	}
	return p
}()

// pct formats a progress fraction the way EC2 does ("42%").
func pct(f float64) string {
	return percents[int(math.Floor(math.Max(0, math.Min(1, f))*100))]
}

func itoa(n int) string { return strconv.Itoa(n) }
