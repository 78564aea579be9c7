package baseline_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/baseline"
)

func self(r baseline.Ref) baseline.Ref { return r }

func TestNewest(t *testing.T) {
	al1 := baseline.Ref{ID: "al2023-2026.10", OSFamily: "amazon-linux-2023", Version: 1}
	al2 := baseline.Ref{ID: "al2023-2026.11", OSFamily: "amazon-linux-2023", Version: 2}
	alEmergency := baseline.Ref{ID: "al2023-emergency-cve-2026-1", OSFamily: "amazon-linux-2023", Version: 3}
	ws1 := baseline.Ref{ID: "ws2022-2026.11", OSFamily: "windows-server-2022", Version: 1}
	tests := []struct {
		name   string
		refs   []baseline.Ref
		family string
		want   string
		err    error
	}{
		{"the highest version of the family wins", []baseline.Ref{al2, al1}, "amazon-linux-2023", "al2023-2026.11", nil},
		{"the order of the listing does not matter", []baseline.Ref{al1, alEmergency, al2}, "amazon-linux-2023", "al2023-emergency-cve-2026-1", nil},
		{"other families are ignored", []baseline.Ref{ws1, al1}, "amazon-linux-2023", "al2023-2026.10", nil},
		{"no family means the only one published", []baseline.Ref{al1, al2}, "", "al2023-2026.11", nil},
		{"no family with several published is refused", []baseline.Ref{al1, ws1}, "", "", baseline.ErrFamilyRequired},
		{"a family with nothing published is refused", []baseline.Ref{ws1}, "amazon-linux-2023", "", baseline.ErrNoBaseline},
		{"nothing published is refused", nil, "", "", baseline.ErrNoBaseline},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			i, err := baseline.Newest(tt.refs, self, tt.family)
			if tt.err != nil {
				require.ErrorIs(t, err, tt.err)
				require.Equal(t, -1, i)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, tt.refs[i].ID)
		})
	}
}

func TestSortNewestFirst(t *testing.T) {
	refs := []baseline.Ref{
		{ID: "ws-1", OSFamily: "windows-server-2022", Version: 1},
		{ID: "al-1", OSFamily: "amazon-linux-2023", Version: 1},
		{ID: "al-3", OSFamily: "amazon-linux-2023", Version: 3},
		{ID: "al-2", OSFamily: "amazon-linux-2023", Version: 2},
	}
	baseline.SortNewestFirst(refs, self)
	var ids []string
	for _, r := range refs {
		ids = append(ids, r.ID)
	}
	require.Equal(t, []string{"al-3", "al-2", "al-1", "ws-1"}, ids)
}
