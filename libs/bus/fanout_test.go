package bus

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestMergeFiltersKeepsThemApart(t *testing.T) {
	tests := []struct {
		have, add []string
		want      []string
		ok        bool
	}{
		{nil, []string{"patch.*.run.started"}, []string{"patch.*.run.started"}, true},
		{[]string{"patch.*.run.started"}, []string{"patch.*.run.started", "patch.*.job.requested"}, []string{"patch.*.run.started", "patch.*.job.requested"}, true},
		{[]string{"patch.acme.run.started"}, []string{"patch.*.run.started"}, []string{"patch.*.run.started"}, true},
		{[]string{"patch.*.run.started", "patch.*.run.completed"}, []string{"patch.*.run.>"}, []string{"patch.*.run.>"}, true},
		{[]string{"catalog.patch.>"}, []string{"catalog.patch.certified"}, []string{"catalog.patch.>"}, true},
		{[]string{"patch.*.run.started"}, []string{"patch.acme.>"}, nil, false},
		{[]string{"patch.*.run"}, []string{"patch.*.run.>"}, []string{"patch.*.run", "patch.*.run.>"}, true},
	}
	for _, tt := range tests {
		got, ok := mergeFilters(tt.have, tt.add)
		require.Equal(t, tt.ok, ok, "%v + %v", tt.have, tt.add)
		if ok {
			require.Equal(t, tt.want, got, "%v + %v", tt.have, tt.add)
		}
	}
}

func TestSubjectMatch(t *testing.T) {
	for _, tt := range []struct {
		filter, subject string
		want            bool
	}{
		{"patch.*.run.started", "patch.acme.run.started", true},
		{"patch.*.run.started", "patch.acme.run.completed", false},
		{"patch.acme.>", "patch.acme.run.started", true},
		{"patch.acme.>", "patch.acme", false},
		{"patch.*", "patch.acme.run", false},
		{"catalog.patch.certified", "catalog.patch.certified", true},
	} {
		require.Equal(t, tt.want, subjectMatch(strings.Split(tt.filter, "."), strings.Split(tt.subject, ".")), "%s ~ %s", tt.filter, tt.subject)
	}
}
