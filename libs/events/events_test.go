package events

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

func TestValidateTenant(t *testing.T) {
	tests := []struct {
		name   string
		tenant string
		ok     bool
	}{
		{"a lower-case name is a tenant", "acme", true},
		{"digits and dashes are allowed", "acme-42", true},
		{"a single digit is a tenant", "7", true},
		{"63 characters is the longest tenant", strings.Repeat("a", 63), true},
		{"64 characters is too long", strings.Repeat("a", 64), false},
		{"an empty id is refused", "", false},
		{"a leading dash is refused", "-acme", false},
		{"upper case is refused", "Acme", false},
		{"a dot would split the subject", "ac.me", false},
		{"a wildcard would match other tenants", "*", false},
		{"a full wildcard is refused", ">", false},
		{"white space is refused", "ac me", false},
		{"an underscore is refused", "ac_me", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateTenant(tt.tenant)
			if tt.ok {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
			require.Contains(t, err.Error(), "tenant")
		})
	}
}

func TestSubjects(t *testing.T) {
	require.Equal(t, "patch.acme.install.failed", TenantSubject("acme", "install", "failed"))
	require.Equal(t, "catalog.baseline.published", CatalogSubject("baseline", "published"))
	require.Equal(t, "patch.*.install.failed", Pattern[*eventsv1.InstallFailed]())
	require.Equal(t, "catalog.baseline.published", Pattern[*eventsv1.BaselinePublished]())
	require.Equal(t, "patch.acme.run.started", DefFor[*eventsv1.RunStarted]().PatternFor("acme"))

	dlq, err := DLQSubject("snapshotter", "TakeSnapshotOnJobRequested")
	require.NoError(t, err)
	require.Equal(t, "dlq.snapshotter.TakeSnapshotOnJobRequested", dlq)

	tests := []struct {
		name             string
		service, handler string
	}{
		{"a dotted service name is refused", "snap.shotter", "H"},
		{"an empty service name is refused", "", "H"},
		{"a wildcard handler name is refused", "snapshotter", "*"},
		{"a handler name with a space is refused", "snapshotter", "Take Snapshot"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := DLQSubject(tt.service, tt.handler)
			require.Error(t, err)
		})
	}
}

func TestTenantOfAndStreamFor(t *testing.T) {
	tests := []struct {
		name    string
		subject string
		tenant  string
		stream  string
	}{
		{"a tenant subject names its tenant and PATCH_EVENTS", "patch.acme.run.started", "acme", StreamTenant},
		{"a tenant pattern belongs to PATCH_EVENTS", "patch.*.install.failed", "*", StreamTenant},
		{"a catalog subject has no tenant", "catalog.baseline.published", "", StreamCatalog},
		{"a dead-letter subject has no tenant", "dlq.svc.Handler", "", StreamDLQ},
		{"the whole tenant root belongs to PATCH_EVENTS and names no tenant", "patch.>", "", StreamTenant},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.Equal(t, tt.tenant, TenantOf(tt.subject))
			stream, err := StreamFor(tt.subject)
			require.NoError(t, err)
			require.Equal(t, tt.stream, stream)
		})
	}
	_, err := StreamFor("orders.created")
	require.ErrorContains(t, err, `root "orders"`)
	require.Empty(t, TenantOf("patch"))
}

func TestNewBuildsDeterministicIDs(t *testing.T) {
	a, err := New("acme", "run-1/i-0abc", &eventsv1.InstallFailed{RunId: "run-1", InstanceId: "i-0abc"})
	require.NoError(t, err)
	b, err := New("acme", "run-1/i-0abc", &eventsv1.InstallFailed{RunId: "run-1", InstanceId: "i-0abc", Reason: "other"})
	require.NoError(t, err)
	require.Equal(t, "patch.acme.install.failed/run-1/i-0abc", a.ID)
	require.Equal(t, a.ID, b.ID, "the id depends on kind, tenant and key only")
	require.Equal(t, "patch.acme.install.failed", a.Subject)
	require.Equal(t, "patchwave.events.v1.InstallFailed", a.Type)
	require.Equal(t, "acme", a.Tenant)
	require.Equal(t, "run-1/i-0abc", a.Key)

	other, err := New("globex", "run-1/i-0abc", &eventsv1.InstallFailed{})
	require.NoError(t, err)
	require.NotEqual(t, a.ID, other.ID, "another tenant is another event")

	cat, err := New("", "base-1", &eventsv1.BaselinePublished{BaselineId: "base-1"})
	require.NoError(t, err)
	require.Equal(t, "catalog.baseline.published/base-1", cat.ID)
	require.Empty(t, cat.Tenant)
}

func TestNewRefusesBadInput(t *testing.T) {
	tests := []struct {
		name    string
		tenant  string
		key     string
		data    proto.Message
		message string
	}{
		{"a tenant event needs a valid tenant", "Acme", "k", &eventsv1.RunStarted{}, "tenant"},
		{"a tenant event needs a tenant", "", "k", &eventsv1.RunStarted{}, "tenant"},
		{"a catalog event has no tenant", "acme", "k", &eventsv1.BaselinePublished{}, "catalog event"},
		{"the key is required", "acme", "", &eventsv1.RunStarted{}, "key"},
		{"the key has no white space", "acme", "run 1", &eventsv1.RunStarted{}, "key"},
		{"a payload is required", "acme", "k", nil, "payload"},
		{"the payload must be a registered event", "acme", "k", &typesv1.Patch{}, "not a registered event type"},
		{"a timestamp is not an event", "acme", "k", timestamppb.Now(), "not a registered event type"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.tenant, tt.key, tt.data)
			require.ErrorContains(t, err, tt.message)
			require.Panics(t, func() { MustNew(tt.tenant, tt.key, tt.data) })
		})
	}
}

func TestDefsCoverEveryEventMessage(t *testing.T) {
	defs := Defs()
	fd := eventsv1.File_patchwave_events_v1_events_proto
	require.Len(t, defs, fd.Messages().Len(), "every message of events.proto is registered")
	seen := map[string]bool{}
	for _, d := range defs {
		require.False(t, seen[d.Pattern()], "subject %s used twice", d.Pattern())
		seen[d.Pattern()] = true
		require.NotNil(t, fd.Messages().ByName(d.Message.Name()), "%s is in events.proto", d.Message)
		require.NoError(t, validateToken("producer", d.Producer), "%s names the service that publishes it", d.Message)
	}
	require.Negative(t, strings.Compare(string(defs[0].Message), string(defs[1].Message)), "sorted")
}

// fill sets every field of m to a non-zero value.
func fill(m protoreflect.Message, tenant string) {
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.Name() == "tenant" {
			m.Set(f, protoreflect.ValueOfString(tenant))
			continue
		}
		// Maps and the recursive JSON well-known types (Value, ListValue) stay empty.
		if f.IsMap() || (f.Kind() == protoreflect.MessageKind &&
			(f.Message().FullName() == "google.protobuf.Value" || f.Message().FullName() == "google.protobuf.ListValue")) {
			continue
		}
		scalar := func() protoreflect.Value {
			switch f.Kind() {
			case protoreflect.StringKind:
				return protoreflect.ValueOfString(fmt.Sprintf("%s-1", f.Name()))
			case protoreflect.Int32Kind:
				return protoreflect.ValueOfInt32(int32(f.Number()) + 2)
			case protoreflect.Int64Kind:
				return protoreflect.ValueOfInt64(int64(f.Number()) + 2)
			case protoreflect.Uint64Kind:
				return protoreflect.ValueOfUint64(uint64(f.Number()) + 2)
			case protoreflect.DoubleKind:
				return protoreflect.ValueOfFloat64(float64(f.Number()) + 0.5)
			case protoreflect.BoolKind:
				return protoreflect.ValueOfBool(true)
			case protoreflect.EnumKind:
				return protoreflect.ValueOfEnum(f.Enum().Values().Get(f.Enum().Values().Len() - 1).Number())
			}
			panic(fmt.Sprintf("fill: kind %s of %s", f.Kind(), f.FullName()))
		}
		switch {
		case f.IsList() && f.Kind() == protoreflect.MessageKind:
			l := m.Mutable(f).List()
			e := l.NewElement()
			fill(e.Message(), tenant)
			l.Append(e)
		case f.IsList():
			l := m.Mutable(f).List()
			l.Append(scalar())
			l.Append(scalar())
		case f.Kind() == protoreflect.MessageKind && f.Message().FullName() == "google.protobuf.Duration":
			m.Set(f, protoreflect.ValueOfMessage(durationpb.New(90*time.Minute).ProtoReflect()))
		case f.Kind() == protoreflect.MessageKind && f.Message().FullName() == "google.protobuf.Struct":
			st, err := structpb.NewStruct(map[string]any{string(f.Name()): "value", "n": 2.0})
			if err != nil {
				panic(err)
			}
			m.Set(f, protoreflect.ValueOfMessage(st.ProtoReflect()))
		case f.Kind() == protoreflect.MessageKind && f.Message().FullName() == "google.protobuf.Timestamp":
			m.Set(f, protoreflect.ValueOfMessage(timestamppb.New(time.Date(2025, 3, 4, 5, 6, 7, 8000, time.UTC)).ProtoReflect()))
		case f.Kind() == protoreflect.MessageKind:
			fill(m.Mutable(f).Message(), tenant)
		default:
			m.Set(f, scalar())
		}
	}
}

func TestMarshalUnmarshalRoundTripsEveryEventType(t *testing.T) {
	for _, d := range Defs() {
		t.Run(string(d.Message.Name()), func(t *testing.T) {
			tenant := "acme"
			if d.Scope == ScopeCatalog {
				tenant = ""
			}
			data := d.new()
			fill(data.ProtoReflect(), tenant)
			e, err := New(tenant, "run-1/i-1", data)
			require.NoError(t, err)
			require.Equal(t, SourcePrefix+d.Producer, e.Source, "New sets the producer's source")
			e.Time = time.Date(2025, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
			e.CorrelationID = "corr-1"
			e.TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

			b, err := Marshal(e)
			require.NoError(t, err)
			got, err := Unmarshal(e.Subject, b)
			require.NoError(t, err)

			require.True(t, proto.Equal(data, got.Data), "payload: want %v, got %v", data, got.Data)
			require.Equal(t, e.ID, got.ID)
			require.Equal(t, e.Source, got.Source)
			require.Equal(t, e.Type, got.Type)
			require.Equal(t, e.Key, got.Key)
			require.Equal(t, e.Tenant, got.Tenant)
			require.Equal(t, e.Subject, got.Subject)
			require.Equal(t, e.CorrelationID, got.CorrelationID)
			require.Equal(t, e.TraceParent, got.TraceParent)
			require.True(t, e.Time.Equal(got.Time), "time: want %s, got %s", e.Time, got.Time)
		})
	}
}

func TestMarshalAppendWritesMarshalsBytesAfterWhatTheBufferHolds(t *testing.T) {
	fast := MustNew("acme", "run-1/i-1", &eventsv1.InstallFailed{Tenant: "acme", RunId: "run-1", InstanceId: "i-1", Reason: "boom"})
	// An attribute that needs escaping takes encoding/json's path.
	slow := MustNew("acme", "run-1/i-2", &eventsv1.InstallFailed{Tenant: "acme", RunId: "run-1", InstanceId: "i-2"})
	slow.CorrelationID = `a"<b>`
	for _, tt := range []struct {
		name string
		e    *Event
	}{{"the fast encoder", fast}, {"encoding/json", slow}} {
		t.Run(tt.name, func(t *testing.T) {
			want, err := Marshal(tt.e)
			require.NoError(t, err)
			for _, dst := range [][]byte{nil, []byte("prefix "), make([]byte, 3, 4096)} {
				got, err := MarshalAppend(dst, tt.e)
				require.NoError(t, err)
				require.Equal(t, string(dst), string(got[:len(dst)]), "what dst held is kept")
				require.Equal(t, string(want), string(got[len(dst):]))
			}
			room := make([]byte, 0, 4096)
			got, err := MarshalAppend(room, tt.e)
			require.NoError(t, err)
			require.Same(t, &room[:1][0], &got[0], "a buffer with room is written in place")
		})
	}
	_, err := MarshalAppend([]byte("x"), nil)
	require.Error(t, err)
}

func TestUnmarshalToOverwritesTheEventAndLeavesItOnAnError(t *testing.T) {
	e := MustNew("acme", "run-1/i-1", &eventsv1.InstallFailed{Tenant: "acme", RunId: "run-1", InstanceId: "i-1", Reason: "boom"})
	e.CorrelationID = "corr-1"
	b, err := Marshal(e)
	require.NoError(t, err)
	want, err := Unmarshal(e.Subject, b)
	require.NoError(t, err)

	got := Event{ID: "old", Sequence: 7, Delivered: 2, Key: "old-key"}
	require.NoError(t, UnmarshalTo(&got, e.Subject, b))
	require.True(t, proto.Equal(want.Data, got.Data))
	got.Data, want.Data = nil, nil
	require.Equal(t, *want, got, "every attribute is the document's, Sequence and Delivered zero")

	kept := got
	require.ErrorIs(t, UnmarshalTo(&got, "patch.globex.install.failed", b), ErrMalformed)
	require.Equal(t, kept, got, "a refused document changes nothing")
}

func TestDefSourceIsTheProducersAndBuiltOnce(t *testing.T) {
	for _, d := range Defs() {
		require.Equal(t, SourcePrefix+d.Producer, d.Source(), d.Message)
		require.Zero(t, testing.AllocsPerRun(10, func() { _ = d.Source() }), "%s: the source is not built per call", d.Message)
	}
}

func TestCloudEventsJSONIsReadableWithoutPatchwave(t *testing.T) {
	e := MustNew("acme", "run-1/i-1", &eventsv1.InstallFailed{Tenant: "acme", RunId: "run-1", InstanceId: "i-1", Wave: 2, Reason: "boom"})
	e.Time = time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	b, err := Marshal(e)
	require.NoError(t, err)

	var doc map[string]any
	require.NoError(t, json.Unmarshal(b, &doc))
	require.Equal(t, "1.0", doc["specversion"])
	require.Equal(t, "patch.acme.install.failed/run-1/i-1", doc["id"])
	require.Equal(t, "/patchwave/installer", doc["source"])
	require.Equal(t, "patchwave.events.v1.InstallFailed", doc["type"])
	require.Equal(t, "application/json", doc["datacontenttype"])
	require.Equal(t, "run-1/i-1", doc["subject"])
	require.Equal(t, "2025-01-02T03:04:05Z", doc["time"])
	require.Equal(t, "acme", doc["tenant"])
	data, ok := doc["data"].(map[string]any)
	require.True(t, ok, "data is a JSON object, got %T", doc["data"])
	require.Equal(t, "run-1", data["runId"])
	require.Equal(t, "i-1", data["instanceId"])
	require.InDelta(t, 2.0, data["wave"], 0)
	require.Equal(t, "boom", data["reason"])
	_, hasCorr := doc["correlationid"]
	require.False(t, hasCorr, "empty optional attributes are left out")
}

func TestMarshalRefusesIncompleteEvents(t *testing.T) {
	e := MustNew("acme", "k", &eventsv1.RunStarted{})
	e.Source = ""
	_, err := Marshal(e)
	require.ErrorContains(t, err, "source")
	_, err = Marshal(nil)
	require.Error(t, err)
	e.Source, e.Data = "/patchwave/x", nil
	_, err = Marshal(e)
	require.ErrorContains(t, err, "no payload")
}

func TestUnmarshalRejectsMalformedEvents(t *testing.T) {
	good := func() map[string]any {
		return map[string]any{
			"specversion": "1.0", "id": "patch.acme.run.started/run-1", "source": "/patchwave/scheduler",
			"type": "patchwave.events.v1.RunStarted", "subject": "run-1", "datacontenttype": "application/json",
			"tenant": "acme", "data": map[string]any{"runId": "run-1", "wave": 1},
		}
	}
	encode := func(change func(map[string]any)) []byte {
		doc := good()
		change(doc)
		b, err := json.Marshal(doc)
		if err != nil {
			panic(err)
		}
		return b
	}
	const subject = "patch.acme.run.started"
	ev, err := Unmarshal(subject, encode(func(map[string]any) {}))
	require.NoError(t, err, "the baseline document is valid")
	require.Equal(t, "run-1", ev.Data.(*eventsv1.RunStarted).GetRunId())

	tests := []struct {
		name    string
		subject string
		body    []byte
		reason  string
	}{
		{"bad JSON", subject, []byte(`{"specversion":`), "not CloudEvents JSON"},
		{"JSON that is not an object", subject, []byte(`[1,2]`), "not CloudEvents JSON"},
		{"trailing garbage after the document", subject, append(encode(func(map[string]any) {}), []byte("garbage")...), "not CloudEvents JSON"},
		{"an empty body", subject, nil, "not CloudEvents JSON"},
		{"a wrong specversion", subject, encode(func(d map[string]any) { d["specversion"] = "0.3" }), "specversion"},
		{"a missing specversion", subject, encode(func(d map[string]any) { delete(d, "specversion") }), "specversion"},
		{"a missing id", subject, encode(func(d map[string]any) { delete(d, "id") }), "required"},
		{"a missing source", subject, encode(func(d map[string]any) { delete(d, "source") }), "required"},
		{"another content type", subject, encode(func(d map[string]any) { d["datacontenttype"] = "application/protobuf" }), "datacontenttype"},
		{"no data", subject, encode(func(d map[string]any) { delete(d, "data") }), "no data"},
		{"an unknown type", subject, encode(func(d map[string]any) { d["type"] = "patchwave.events.v1.Nope" }), "unknown type"},
		{"data of the wrong shape", subject, encode(func(d map[string]any) { d["data"] = []int{1, 2} }), "data of"},
		{"a field of the wrong type", subject, encode(func(d map[string]any) { d["data"] = map[string]any{"wave": "one"} }), "data of"},
		{"a string as data", subject, encode(func(d map[string]any) { d["data"] = "hello" }), "data of"},
		{"a type that belongs on another subject", subject, encode(func(d map[string]any) { d["type"] = "patchwave.events.v1.RunCompleted" }), "belongs on"},
		{"a tenant that does not match the subject", subject, encode(func(d map[string]any) { d["tenant"] = "globex" }), "belongs on"},
		{"a tenant event without a tenant", subject, encode(func(d map[string]any) { delete(d, "tenant") }), "tenant"},
		{"a catalog event with a tenant", "catalog.baseline.published", encode(func(d map[string]any) {
			d["type"] = "patchwave.events.v1.BaselinePublished"
			d["source"] = "/patchwave/catalog"
			d["data"] = map[string]any{}
		}), "catalog event"},
		{"a run started from a service that is not its producer", subject, encode(func(d map[string]any) { d["source"] = "/patchwave/notifier" }),
			`source "/patchwave/notifier" is not the producer of patchwave.events.v1.RunStarted (want "/patchwave/scheduler")`},
		{"a baseline published by the scheduler", "catalog.baseline.published", encode(func(d map[string]any) {
			d["type"] = "patchwave.events.v1.BaselinePublished"
			d["id"] = "catalog.baseline.published/b-1"
			delete(d, "tenant")
			d["data"] = map[string]any{}
		}), "not the producer"},
		{"an invalid tenant without a subject to compare", "", encode(func(d map[string]any) { d["tenant"] = "Acme.x" }), "tenant"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is malformed", func(t *testing.T) {
			_, err := Unmarshal(tt.subject, tt.body)
			require.ErrorIs(t, err, ErrMalformed)
			require.ErrorContains(t, err, tt.reason)
		})
	}
}

func TestUnmarshalIgnoresUnknownDataFields(t *testing.T) {
	b := []byte(`{"specversion":"1.0","id":"catalog.baseline.published/b1","source":"/patchwave/catalog",
		"type":"patchwave.events.v1.BaselinePublished","datacontenttype":"application/json",
		"data":{"baselineId":"b1","addedLater":true}}`)
	ev, err := Unmarshal("catalog.baseline.published", b)
	require.NoError(t, err, "a newer producer may add fields")
	require.Equal(t, "b1", ev.Data.(*eventsv1.BaselinePublished).GetBaselineId())
	require.Empty(t, ev.Tenant)
}

func TestHasSubjectIsSubject(t *testing.T) {
	for _, d := range registry {
		tenant := ""
		if d.Scope == ScopeTenant {
			tenant = "acme"
		}
		subject := d.Subject(tenant)
		require.True(t, d.HasSubject(tenant, subject), "%s on %s", d.Message, subject)
		for _, other := range []string{"", subject + ".x", subject[:len(subject)-1], strings.Replace(subject, ".", "-", 1),
			"x" + subject, d.Pattern()} {
			require.Equal(t, other == subject, d.HasSubject(tenant, other), "%s on %q", d.Message, other)
		}
		if d.Scope == ScopeTenant {
			require.False(t, d.HasSubject("acm", subject), "%s with another tenant", d.Message)
			require.False(t, d.HasSubject("acme.x", subject), "%s with another tenant", d.Message)
		}
	}
}

// validTenant matches what tenantPattern matches.
func TestValidTenantIsTheTenantPattern(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	alphabet := "az09-_.A *>é"
	cases := []string{"", "a", "-", "-a", "a-", "acme", "acme-2", strings.Repeat("a", 63), strings.Repeat("a", 64), "Acme", "a.b", "a b", "a\n"}
	for range 2000 {
		n := r.IntN(66)
		var sb strings.Builder
		for range n {
			sb.WriteByte(alphabet[r.IntN(len(alphabet))])
		}
		cases = append(cases, sb.String())
	}
	for _, c := range cases {
		require.Equal(t, tenantPattern.MatchString(c), validTenant(c), "%q", c)
	}
}
