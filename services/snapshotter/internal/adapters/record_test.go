package adapters

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/store"

	"github.com/patchwave/patchwave/services/snapshotter/internal/domain"
)

func sampleSnapshot() domain.Snapshot {
	return domain.Snapshot{
		Tenant: "acme", RunID: "run-9b5165268b9739d3", InstanceID: "i-0123456789abcdef0",
		SetID: "snapset-42", Account: "123456789012", Region: "eu-west-1",
		State: domain.SnapshotCompleted, Outcome: domain.OutcomeSucceeded,
		StartedAt: time.Date(2026, 12, 4, 18, 39, 50, 123456789, time.UTC),
		DueAt:     time.Date(2027, 1, 3, 18, 40, 0, 0, time.UTC),
	}
}

func TestSnapshotRecordsRoundTrip(t *testing.T) {
	full := sampleSnapshot()
	failed := sampleSnapshot()
	failed.State, failed.Outcome, failed.Error = domain.SnapshotFailed, domain.OutcomeNone, strings.Repeat("quota exceeded; ", 20)+"é"
	tests := []struct {
		name string
		s    domain.Snapshot
	}{
		{"a completed set with every field", full},
		{"a set just started: no outcome, no due time", domain.Snapshot{Tenant: "acme", RunID: "r", InstanceID: "i", State: domain.SnapshotStarted, StartedAt: full.StartedAt}},
		{"a failed set whose error is longer than a one-byte length", failed},
		{"the zero record", domain.Snapshot{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := encodeSnapshot(nil, tt.s)
			require.NoError(t, err)
			require.Equal(t, byte(recordV1), b[0])
			got, err := decodeSnapshot(b)
			require.NoError(t, err)
			require.Equal(t, tt.s, got)
		})
	}
}

func TestSnapshotRecordsKeepATimesOffset(t *testing.T) {
	s := sampleSnapshot()
	s.DueAt = time.Date(2027, 1, 3, 20, 40, 0, 0, time.FixedZone("", 2*3600))
	b, err := encodeSnapshot(nil, s)
	require.NoError(t, err)
	got, err := decodeSnapshot(b)
	require.NoError(t, err)
	require.True(t, s.DueAt.Equal(got.DueAt), "%s != %s", s.DueAt, got.DueAt)
	_, offset := got.DueAt.Zone()
	require.Equal(t, 2*3600, offset)
}

func TestSnapshotRecordsAreSmallerThanTheirJSON(t *testing.T) {
	s := sampleSnapshot()
	b, err := encodeSnapshot(nil, s)
	require.NoError(t, err)
	j, err := json.Marshal(s)
	require.NoError(t, err)
	require.Less(t, len(b), len(j)/2, "binary %d bytes, JSON %d", len(b), len(j))
}

func TestSnapshotRecordsWrittenAsJSONStillRead(t *testing.T) {
	s := sampleSnapshot()
	j, err := json.Marshal(s)
	require.NoError(t, err)
	got, err := decodeSnapshot(j)
	require.NoError(t, err)
	require.Equal(t, s, got)
}

func TestTruncatedOrUnknownSnapshotRecordsFail(t *testing.T) {
	b, err := encodeSnapshot(nil, sampleSnapshot())
	require.NoError(t, err)
	for n := range len(b) {
		_, err := decodeSnapshot(b[:n])
		require.Error(t, err, "the first %d of %d bytes", n, len(b))
	}
	_, err = decodeSnapshot(append(b, 0))
	require.ErrorContains(t, err, "1 bytes after the last field")
	_, err = decodeSnapshot([]byte{0x7f, 1, 2})
	require.ErrorContains(t, err, "unknown form")
}

func TestRepoReadsTheRecordsItWritesAndOlderJSONOnes(t *testing.T) {
	ctx := t.Context()
	st := store.NewMemory()
	t.Cleanup(func() { _ = st.Close() })
	r := New(st)

	s := sampleSnapshot()
	require.NoError(t, r.PutSnapshot(ctx, s))
	raw, found, err := st.Get(ctx, keySnapshot+RecordKey(s.Tenant, s.RunID, s.InstanceID))
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, byte(recordV1), raw[0], "written in the binary form")

	older := sampleSnapshot()
	older.RunID, older.State, older.Outcome, older.DueAt = "run-older", domain.SnapshotCompleted, domain.OutcomeFailed, time.Time{}
	j, err := json.Marshal(older)
	require.NoError(t, err)
	require.NoError(t, st.Set(ctx, keySnapshot+RecordKey(older.Tenant, older.RunID, older.InstanceID), j))
	_, err = st.SAdd(ctx, keyInstance+older.Tenant+"/"+older.InstanceID, older.RunID)
	require.NoError(t, err)

	got, found, err := r.Snapshot(ctx, s.Tenant, s.RunID, s.InstanceID)
	require.NoError(t, err)
	require.True(t, found)
	require.Equal(t, s, got)
	all, err := r.InstanceSnapshots(ctx, s.Tenant, s.InstanceID)
	require.NoError(t, err)
	require.Equal(t, []domain.Snapshot{s, older}, all, "both runs of the instance (in run id order), the JSON one too")
	keys, recs, err := r.Due(ctx, HourOf(s.DueAt))
	require.NoError(t, err)
	require.Equal(t, []string{RecordKey(s.Tenant, s.RunID, s.InstanceID)}, keys)
	require.Equal(t, s, recs[keys[0]])

	require.NoError(t, st.Set(ctx, keySnapshot+RecordKey("acme", "run-bad", "i-1"), []byte{recordV1, 5, 'a'}))
	_, _, err = r.Snapshot(ctx, "acme", "run-bad", "i-1")
	require.ErrorContains(t, err, "decode snapshot acme/run-bad/i-1")
}

// The binary form lists domain.Snapshot's fields by hand (JSON took every field by itself): a
// field added to the record and not to encodeSnapshot would be dropped without a word. This
// test sets every field through reflection and fails for one the form does not carry.
func TestSnapshotRecordsCarryEveryField(t *testing.T) {
	var s domain.Snapshot
	v := reflect.ValueOf(&s).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("value of " + v.Type().Field(i).Name)
		case reflect.Struct:
			require.IsType(t, time.Time{}, f.Interface(), "field %s: teach this test and encodeSnapshot its type", v.Type().Field(i).Name)
			f.Set(reflect.ValueOf(time.Date(2026, 12, 4, 10, 0, i, 0, time.UTC)))
		default:
			require.Failf(t, "a field of a kind the record form does not carry", "field %s is a %s: add it to encodeSnapshot and decodeSnapshot", v.Type().Field(i).Name, f.Kind())
		}
	}
	b, err := encodeSnapshot(nil, s)
	require.NoError(t, err)
	got, err := decodeSnapshot(b)
	require.NoError(t, err)
	gv := reflect.ValueOf(got)
	for i := range v.NumField() {
		require.Equal(t, v.Field(i).Interface(), gv.Field(i).Interface(), "field %s does not survive the record form", v.Type().Field(i).Name)
	}
}
