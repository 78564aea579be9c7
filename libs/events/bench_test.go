package events

import (
	"testing"
	"time"

	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// benchEvent is an install.succeeded as the installer publishes it: a location and a few
// per-patch results, about 1 KB on the wire.
func benchEvent(b *testing.B) *Event {
	b.Helper()
	msg := &eventsv1.InstallSucceeded{
		Tenant: "acme", RunId: "run-20261202-abcdef", Wave: 2, InstanceId: "i-0123456789abcdef0",
		SnapshotId: "snapset-0123456789", InstallationId: "cmd-0123456789abcdef", Healthy: true,
		HealthDetail: "instance status ok, agent online",
		JobState:     typesv1.JobState_JOB_STATE_SUCCEEDED,
		Location:     &typesv1.Location{Account: "123456789012", Region: "eu-west-1"},
	}
	for _, p := range []string{"KB5034441", "KB5034439", "KB5034763", "KB5035845"} {
		msg.Results = append(msg.Results, &typesv1.PatchResult{PatchId: p, State: typesv1.PatchState_PATCH_STATE_INSTALLED})
	}
	e, err := New("acme", "run-20261202-abcdef/i-0123456789abcdef0", msg)
	if err != nil {
		b.Fatal(err)
	}
	e.Time = time.Date(2026, 12, 2, 15, 4, 5, 123456789, time.UTC)
	e.CorrelationID = "0af7651916cd43dd8448eb211c80319c"
	e.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	return e
}

// BenchmarkUnmarshal decodes one event as every consumer does (go test -bench . ./events/).
func BenchmarkUnmarshal(b *testing.B) {
	e := benchEvent(b)
	raw, err := Marshal(e)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(e.Subject, raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMarshal encodes one event as a publish does.
func BenchmarkMarshal(b *testing.B) {
	e := benchEvent(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Marshal(e); err != nil {
			b.Fatal(err)
		}
	}
}
