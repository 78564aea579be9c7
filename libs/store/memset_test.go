package store

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestMemorySetsAreSlicesUntilTheyGrow checks the form Memory keeps a set in: a sorted slice
// up to smallSetMax members, a map beyond, and a map from the start when created larger.
// The contract suite checks that both forms behave as Redis does.
func TestMemorySetsAreSlicesUntilTheyGrow(t *testing.T) {
	ctx := t.Context()
	m := NewMemory()
	t.Cleanup(func() { _ = m.Close() })

	for i := smallSetMax; i > 0; i-- {
		_, err := m.SAdd(ctx, "s", fmt.Sprintf("m%d", i))
		require.NoError(t, err)
	}
	set := m.sets["s"]
	require.Nil(t, set.big, "a set of %d members is a slice", smallSetMax)
	require.Equal(t, []string{"m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8"}, set.small, "kept sorted")

	added, err := m.SAdd(ctx, "s", "m9", "m1")
	require.NoError(t, err)
	require.Equal(t, 1, added)
	require.Nil(t, set.small, "one more member makes it a map")
	require.Len(t, set.big, smallSetMax+1)

	removed, err := m.SRem(ctx, "s", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "m8")
	require.NoError(t, err)
	require.Equal(t, smallSetMax, removed)
	require.NotNil(t, set.big, "a map stays a map as it shrinks")
	members, err := m.SMembers(ctx, "s")
	require.NoError(t, err)
	require.Equal(t, []string{"m9"}, members)

	many := make([]string, smallSetMax+1)
	for i := range many {
		many[i] = fmt.Sprintf("x%d", i)
	}
	applied, err := m.Update(ctx, "guard", nil, SAddW("bulk", many...))
	require.NoError(t, err)
	require.True(t, applied)
	require.Len(t, m.sets["bulk"].big, len(many), "created larger than a slice holds: a map at once")

	_, err = m.SRem(ctx, "s", "m9")
	require.NoError(t, err)
	require.NotContains(t, m.sets, "s", "an emptied set is deleted")
}
