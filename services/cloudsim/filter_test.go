package cloudsim

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestFilterMatchesAsValueByValue: a filter matches a string when a value equals it or, for a
// value with a wildcard, matches it as a pattern, whether its values are few (compared one by
// one) or many (looked up in a set).
func TestFilterMatchesAsValueByValue(t *testing.T) {
	many := []string{"web-*"}
	for i := range 3 * manyValues {
		many = append(many, "set-"+strconv.Itoa(i))
	}
	for _, tc := range []struct {
		name   string
		values []string
		yes    []string
		no     []string
	}{
		{"few exact values", []string{"a", "b"}, []string{"a", "b"}, []string{"", "c", "ab"}},
		{"few values with patterns", []string{"x", "db-?", "web-*"}, []string{"x", "db-1", "web-", "web-eu/1"}, []string{"db-12", "we", "X"}},
		{"a pattern that is also the string", []string{"a*"}, []string{"a*", "abc"}, []string{"b"}},
		{"many values with a pattern", many, []string{"set-0", "set-23", "web-1"}, []string{"set-24", "set-", "web"}},
		{"no values", nil, nil, []string{"", "a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFilter("tag:x", tc.values)
			require.Equal(t, len(tc.values) > manyValues, f.set != nil)
			for _, s := range tc.yes {
				require.True(t, f.match(s), s)
			}
			for _, s := range tc.no {
				require.False(t, f.match(s), s)
			}
		})
	}
	require.True(t, newFilter("n", []string{"a", "b"}).exact())
	require.False(t, newFilter("n", []string{"a", "b*"}).exact())
}
