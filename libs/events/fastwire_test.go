package events

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
)

// The fast paths write and read exactly what encoding/json does, and leave to it whatever they
// do not handle.
func TestFastWireMatchesEncodingJSON(t *testing.T) {
	for _, d := range Defs() {
		tenant := "acme"
		if d.Scope == ScopeCatalog {
			tenant = ""
		}
		data := d.new()
		fill(data.ProtoReflect(), tenant)
		e, err := New(tenant, "run-1/i-1", data)
		require.NoError(t, err)
		e.Time = time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
		e.CorrelationID = "corr-1"
		got, err := Marshal(e)
		require.NoError(t, err)
		payload, err := dataMarshal.Marshal(data)
		require.NoError(t, err)
		w := wire{SpecVersion: SpecVersion, ID: e.ID, Source: e.Source, Type: e.Type, Subject: e.Key,
			Time: e.Time, DataContentType: DataContentType, Tenant: e.Tenant, CorrelationID: e.CorrelationID, Data: payload}
		want, err := json.Marshal(w)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "%s: the document encoding/json writes", d.Message)

		var fast, slow wire
		require.True(t, decodeWireFast(got, &fast), "%s: Marshal's document takes the fast path", d.Message)
		require.NoError(t, json.Unmarshal(got, &slow))
		require.Equal(t, slow, fast, "%s", d.Message)
	}
}

func TestFastWireLeavesTheUnusualToEncodingJSON(t *testing.T) {
	const data = `{"tenant":"acme","runId":"r\"1"}`
	for _, tt := range []struct {
		name, doc string
		fast      bool
	}{
		{"spaces and an extension", " {\n\"specversion\" : \"1.0\", \"id\":\"a\",\"ext\":\"x\", \"data\": " + data + " } ", true},
		{"an escape in an attribute", `{"specversion":"1.0","id":"a\u0041","data":{}}`, false},
		{"a key encoding/json folds", `{"specversion":"1.0","ID":"a","data":{}}`, false},
		{"a number", `{"specversion":"1.0","ext":1,"data":{}}`, false},
		{"null data", `{"specversion":"1.0","data":null}`, false},
		{"trailing garbage", `{"specversion":"1.0","data":{}} x`, false},
		{"an unclosed data object", `{"specversion":"1.0","data":{"a":[1}}`, false},
		{"not an object", `[]`, false},
	} {
		var fast wire
		require.Equal(t, tt.fast, decodeWireFast([]byte(tt.doc), &fast), tt.name)
		if tt.fast {
			var slow wire
			require.NoError(t, json.Unmarshal([]byte(tt.doc), &slow))
			require.Equal(t, slow, fast, tt.name)
		}
	}
	// An attribute that needs escaping is written by encoding/json.
	e := MustNew("acme", "run-1/i-1", DefFor[*eventsv1.JobRequested]().new())
	e.CorrelationID = `a"<b>`
	b, err := Marshal(e)
	require.NoError(t, err)
	require.Contains(t, string(b), `"correlationid":"a\"\u003cb\u003e"`)
	got, err := Unmarshal(e.Subject, b)
	require.NoError(t, err)
	require.Equal(t, e.CorrelationID, got.CorrelationID)
}

// A payload string with what encoding/json escapes for HTML (<, >, &, U+2028, U+2029) is
// written as encoding/json writes the document, escapes and all.
func TestFastWireEscapesThePayloadAsEncodingJSON(t *testing.T) {
	for _, reason := range []string{"a < b & c > d", "line\u2028sep\u2029para", "plain", "é<"} {
		data := &eventsv1.InstallFailed{Tenant: "acme", RunId: "run-1", InstanceId: "i-1", Reason: reason}
		e, err := New("acme", "run-1/i-1", data)
		require.NoError(t, err)
		e.Time = time.Date(2025, 1, 2, 3, 4, 5, 6, time.UTC)
		got, err := Marshal(e)
		require.NoError(t, err)
		payload, err := dataMarshal.Marshal(data)
		require.NoError(t, err)
		w := wire{SpecVersion: SpecVersion, ID: e.ID, Source: e.Source, Type: e.Type, Subject: e.Key,
			Time: e.Time, DataContentType: DataContentType, Tenant: e.Tenant, Data: payload}
		want, err := json.Marshal(w)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), reason)
		back, err := Unmarshal(e.Subject, got)
		require.NoError(t, err)
		require.Equal(t, reason, back.Data.(*eventsv1.InstallFailed).GetReason())
	}
}

// skipObject ends an object at its closing brace, past strings with escaped quotes and
// backslashes and past nesting deeper than its fixed room.
func TestSkipObjectFindsTheObjectsEnd(t *testing.T) {
	deep := strings.Repeat(`{"a":[`, 40) + strings.Repeat(`]}`, 40)
	for _, c := range []struct {
		doc string
		end int // -1: not an object
	}{
		{`{}`, 2},
		{`{} x`, 2},
		{`{"a":"}"}`, 9},
		{`{"a":"\"}"}`, 11},
		{`{"a":"\\"}`, 10},
		{`{"a":"\\\"}"}`, 13},
		{`{"a":"x\\\\"} `, 13},
		{`{"a":["]",{"b":"{"}]}`, 21},
		{deep + ` `, len(deep)},
		{`{"a":"\"}`, -1},
		{`{"a":"}`, -1},
		{`{"a":[}`, -1},
		{`{"a":1]`, -1},
		{`[]`, -1},
	} {
		end, ok := skipObject([]byte(c.doc), 0)
		if c.end < 0 {
			require.False(t, ok, c.doc)
			continue
		}
		require.True(t, ok, c.doc)
		require.Equal(t, c.end, end, c.doc)
	}
}
