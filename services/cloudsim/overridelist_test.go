package cloudsim

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestParseOverrideList(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []overridePatch
		err  string
	}{
		{"AWS's block style", "patches:\n    -\n        id: 'KB5031364'\n        title: 'Cumulative Update, ''2023-10'''\n    -\n        id: \"openssl.x86_64\"\n",
			[]overridePatch{{"KB5031364", "Cumulative Update, '2023-10'"}, {"openssl.x86_64", ""}}, ""},
		{"compact items and comments", "# generated\npatches:\n  - id: kernel # the kernel\n    title: Linux kernel\n  - id: 'a#b'\nother: x\n",
			[]overridePatch{{"kernel", "Linux kernel"}, {"a#b", ""}}, ""},
		{"a flow sequence", "patches: [{id: a, title: 'x, y'}, {id: b}]\n", []overridePatch{{"a", "x, y"}, {"b", ""}}, ""},
		{"no patches key", "baseline: x\n", nil, "no top-level 'patches'"},
		{"an item without an id", "patches:\n  - title: t\n", nil, "patch 1 has no id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseOverrideList([]byte(tt.doc))
			if tt.err != "" {
				require.ErrorContains(t, err, tt.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
		})
	}
}
