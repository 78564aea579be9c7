package cloudsim

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestIDChecksAreTheirPatterns: the written-out id checks accept exactly what the regexps
// they replace accept, over hand-picked edge cases and random strings made of the ids'
// alphabet.
func TestIDChecksAreTheirPatterns(t *testing.T) {
	checks := []struct {
		name    string
		pattern *regexp.Regexp
		check   func(string) bool
	}{
		{"instance", regexp.MustCompile(`^i-([0-9a-f]{8}|[0-9a-f]{17})$`), func(s string) bool { return validEC2ID(s, "i") }},
		{"snapshot", regexp.MustCompile(`^snap-([0-9a-f]{8}|[0-9a-f]{17})$`), func(s string) bool { return validEC2ID(s, "snap") }},
		{"ssm instance", regexp.MustCompile(`^(i|mi)-[0-9a-f]{8,17}$`), validSSMInstanceID},
		{"command", regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`), validCommandID},
	}
	cases := []string{"", "i", "i-", "i-0123456", "i-01234567", "i-012345678", "i-0123456789abcdef0", "i-0123456789abcdef",
		"i-0123456789abcdef01", "i-0123456789ABCDEF0", "i-01234567\n", "I-01234567", "mi-01234567", "mi-0123456789abcdef0",
		"mi-0123456789abcdef01", "snap-01234567", "snap-0123456789abcdef0", "snap-0123456789abcdeg0", "snap01234567",
		"sna-01234567", "xi-01234567", "0123abcd-0123-4567-89ab-0123456789ab", "0123abcd-0123-4567-89ab-0123456789a",
		"0123abcd_0123-4567-89ab-0123456789ab", "0123ABCD-0123-4567-89ab-0123456789ab", "0123abcd-0123-4567-89ab-0123456789abc",
		"0123abcd-01234-567-89ab-0123456789ab", "i-0123456\u00e9"}
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "0123456789abcdefgAi-mnsp_"
	prefixes := []string{"", "i-", "mi-", "snap-"}
	for range 20000 {
		var b strings.Builder
		b.WriteString(prefixes[rng.IntN(len(prefixes))])
		for range rng.IntN(40) {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		cases = append(cases, b.String())
	}
	for range 2000 { // well-formed UUIDs, some with one character changed
		u := []byte("00000000-0000-0000-0000-000000000000")
		for i := range u {
			if u[i] != '-' {
				u[i] = "0123456789abcdef"[rng.IntN(16)]
			}
		}
		if rng.IntN(2) == 0 {
			u[rng.IntN(len(u))] = alphabet[rng.IntN(len(alphabet))]
		}
		cases = append(cases, string(u))
	}
	for _, c := range checks {
		matched := 0
		for _, s := range cases {
			want := c.pattern.MatchString(s)
			require.Equal(t, want, c.check(s), "%s check of %q", c.name, s)
			if want {
				matched++
			}
		}
		require.Positive(t, matched, "%s: some cases are valid ids", c.name)
	}
}
