package adapters

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/reporting/internal/domain"
)

func fullInstance() domain.Instance {
	at := time.Date(2026, 11, 10, 3, 4, 5, 6, time.UTC)
	return domain.Instance{Tenant: "acme", ID: "i-1", Wave: -2, OSFamily: "al2023", RunBaseline: "b-1", Account: "111111111111",
		Region: "eu-central-1", LastRun: "run-1", Outcome: domain.OutcomeInstallFailed, AssessedAt: at, Reason: "1 patch failed",
		Patches: map[string]domain.PatchStatus{
			"p1": {State: typesv1.PatchState_PATCH_STATE_FAILED, Error: "conflict", RunID: "run-1", Since: at.Add(-time.Hour)},
			"p2": {State: typesv1.PatchState_PATCH_STATE_INSTALLED, RunID: "run-1", Since: at},
		},
		Seq: 1 << 40, State: typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT, Baseline: "b-2", Missing: []string{"p1", "p3"}}
}

// Every field of domain.Instance survives the packed record: a field added to the domain and
// not to the record fails here.
func TestRecordKeepsEveryField(t *testing.T) {
	in := fullInstance()
	v := reflect.ValueOf(in)
	for i := range v.NumField() {
		require.False(t, v.Field(i).IsZero(), "fullInstance leaves %s unset: set it, and add it to the record", v.Type().Field(i).Name)
	}
	b, err := encodeInstance(in)
	require.NoError(t, err)
	require.Equal(t, recordV1, b[0])
	out := domain.Instance{Tenant: in.Tenant, ID: in.ID}
	require.NoError(t, decodeInstance(b, &out))
	require.Equal(t, in, out)

	// The zero instance (a never-assessed one) too.
	zero := domain.Instance{Tenant: "acme", ID: "i-2"}
	b, err = encodeInstance(zero)
	require.NoError(t, err)
	out = domain.Instance{Tenant: "acme", ID: "i-2"}
	require.NoError(t, decodeInstance(b, &out))
	require.Equal(t, zero, out)
}

func TestRecordReadsTheJSONOfEarlierVersions(t *testing.T) {
	in := fullInstance()
	r := recordJSON{W: in.Wave, F: in.OSFamily, RB: in.RunBaseline, AC: in.Account, RG: in.Region, R: in.LastRun, O: in.Outcome,
		A: nanos(in.AssessedAt), X: in.Reason, Q: in.Seq, C: in.State, B: in.Baseline, M: in.Missing, P: map[string]patchRecordJSON{}}
	for id, p := range in.Patches {
		r.P[id] = patchRecordJSON{S: p.State, E: p.Error, R: p.RunID, T: nanos(p.Since)}
	}
	b, err := json.Marshal(r)
	require.NoError(t, err)
	out := domain.Instance{Tenant: in.Tenant, ID: in.ID}
	require.NoError(t, decodeInstance(b, &out))
	require.Equal(t, in, out)
}

func TestRecordRejectsDamagedRecords(t *testing.T) {
	b, err := encodeInstance(fullInstance())
	require.NoError(t, err)
	for _, bad := range [][]byte{nil, {}, {9, 1, 2}, b[:len(b)-1], append(append([]byte{}, b...), 0), b[:5]} {
		var out domain.Instance
		require.Error(t, decodeInstance(bad, &out), "%x", bad)
	}
}

func BenchmarkRecord(b *testing.B) {
	in := fullInstance()
	b.Run("packed", func(b *testing.B) {
		for range b.N {
			buf, _ := encodeInstance(in)
			var out domain.Instance
			if err := decodeInstance(buf, &out); err != nil {
				b.Fatal(err)
			}
		}
	})
}
