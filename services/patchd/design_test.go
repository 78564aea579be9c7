package patchd_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/ratelimit"
	"github.com/patchwave/patchwave/services/gateway"
	"github.com/patchwave/patchwave/services/patchd"
)

// api is a REST client of a patchd started in-process: the real gateway in front of the real
// scheduler, reporting and catalog, on an embedded NATS. It calls with patchd's operator key
// unless a call names its own Authorization.
type api struct {
	t    *testing.T
	base string
	key  string
	d    *patchd.Daemon
}

// jwtKey is the HS256 key of the patchd the tests start, so they can mint tokens.
var jwtKey = []byte("patchd-test-key-0123456789abcdefgh")

func startAPI(t *testing.T) *api {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	d, err := patchd.New(ctx, patchd.Config{DataDir: t.TempDir(), NATSPort: -1, HTTPAddr: "127.0.0.1:0", OpsAddr: "-",
		LocalJWT: gateway.LocalJWT{Key: jwtKey}, RateLimit: ratelimit.Limit{Rate: 10000, Burst: 10000}})
	require.NoError(t, err)
	runErr := make(chan error, 1)
	go func() { runErr <- d.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-runErr)
	})
	require.NoError(t, d.Ready(ctx))
	return &api{t: t, base: d.URL(), key: d.OperatorKey(), d: d}
}

// reply is an HTTP answer with its JSON body.
type reply struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

// call sends a request; headers alternate names and values. Without an Authorization header
// it calls with the operator key; an empty one sends none.
func (a *api) call(method, path, contentType, body string, headers ...string) reply {
	a.t.Helper()
	req, err := http.NewRequestWithContext(a.t.Context(), method, a.base+path, strings.NewReader(body))
	require.NoError(a.t, err)
	if body != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set("Authorization", "Bearer "+a.key)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if req.Header.Get("Authorization") == "" {
		req.Header.Del("Authorization")
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(a.t, err)
	defer func() { _ = resp.Body.Close() }()
	b, err := io.ReadAll(resp.Body)
	require.NoError(a.t, err)
	r := reply{status: resp.StatusCode, header: resp.Header, raw: string(b)}
	if len(b) > 0 {
		require.NoError(a.t, json.Unmarshal(b, &r.body), "a JSON body: %s", b)
	}
	return r
}

// bearer is the Authorization header pair of a credential, for call.
func bearer(cred string) []string { return []string{"Authorization", "Bearer " + cred} }

// newKey creates an API key as the operator and returns it; its subject is <name>@<tenant>.
func (a *api) newKey(tenant, name string, roles ...string) string {
	a.t.Helper()
	b, err := json.Marshal(map[string]any{"name": name, "roles": roles})
	require.NoError(a.t, err)
	path := "/v1/api-keys"
	if tenant != "" {
		path = "/v1/tenants/" + tenant + "/api-keys"
	}
	r := a.ok(a.write(http.MethodPost, path, string(b)))
	return r.body["secret"].(string)
}

// write is a JSON write as the operator (plus headers).
func (a *api) write(method, path, body string, headers ...string) reply {
	a.t.Helper()
	return a.call(method, path, "application/json", body, headers...)
}

func (a *api) get(path string) reply {
	a.t.Helper()
	return a.call(http.MethodGet, path, "", "")
}

func (a *api) ok(r reply) reply {
	a.t.Helper()
	require.Equal(a.t, http.StatusOK, r.status, r.raw)
	return r
}

// etag is the revision an answer's ETag names.
func etag(t *testing.T, r reply) uint64 {
	t.Helper()
	v := r.header.Get("ETag")
	require.NotEmpty(t, v, "an ETag on %s", r.raw)
	rev, err := strconv.ParseUint(strings.Trim(v, `"`), 10, 64)
	require.NoError(t, err, v)
	return rev
}

// fields lists the fields of an error's BadRequest details.
func fields(r reply) map[string]string {
	out := map[string]string{}
	details, _ := r.body["details"].([]any)
	for _, d := range details {
		m, _ := d.(map[string]any)
		vs, _ := m["fieldViolations"].([]any)
		for _, v := range vs {
			fv, _ := v.(map[string]any)
			out[fmt.Sprint(fv["field"])] = fmt.Sprint(fv["description"])
		}
	}
	return out
}

// badRequest asserts a 400 that names field with a rule containing rule.
func badRequest(t *testing.T, r reply, field, rule string) {
	t.Helper()
	require.Equal(t, http.StatusBadRequest, r.status, r.raw)
	f := fields(r)
	require.Contains(t, f, field, "the error names the field: %s", r.raw)
	require.Contains(t, f[field], rule)
	require.Contains(t, r.body["message"], field)
}

const acmeTenant = `{"displayName":"Acme Corp","waveLimit":3}`

func berlinWave(offset int) string {
	return fmt.Sprintf(`{"name":"Berlin","schedule":{"weekOfMonth":2,"dayOfWeek":"TUESDAY","offsetDays":%d,"startTime":"02:00","endTime":"06:00","timeZone":"Europe/Berlin"}}`, offset)
}

func TestDesignOverRESTETagAndIfMatch(t *testing.T) {
	a := startAPI(t)
	created := a.ok(a.write(http.MethodPut, "/v1/tenants/acme", acmeTenant))
	require.Equal(t, "acme", created.body["tenant"].(map[string]any)["tenantId"])
	r1 := etag(t, created)
	require.Equal(t, r1, etag(t, a.ok(a.get("/v1/tenants/acme"))), "a read answers the revision it read")

	put := a.ok(a.write(http.MethodPut, "/v1/tenants/acme/waves/1", berlinWave(4), "If-Match", fmt.Sprintf(`"%d"`, r1)))
	r2 := etag(t, put)
	require.Greater(t, r2, r1)
	for _, path := range []string{"/v1/tenants/acme/waves/1", "/v1/tenants/acme/waves", "/v1/tenants/acme/design", "/v1/tenants/acme/freezes", "/v1/tenants/acme/accounts"} {
		require.Equal(t, r2, etag(t, a.ok(a.get(path))), "every resource of the tenant has the document's revision: %s", path)
	}

	stale := a.write(http.MethodPut, "/v1/tenants/acme/waves/1", berlinWave(5), "If-Match", fmt.Sprintf(`"%d"`, r1))
	require.Equal(t, http.StatusPreconditionFailed, stale.status, stale.raw)
	require.Contains(t, stale.body["message"], fmt.Sprintf("revision %d is stale: the current revision is %d", r1, r2))
	require.Equal(t, r2, etag(t, stale), "a 412 answers the current revision as its ETag")
	require.EqualValues(t, 4, a.ok(a.get("/v1/tenants/acme/waves/1")).body["wave"].(map[string]any)["schedule"].(map[string]any)["offsetDays"], "the stale write changed nothing")

	bad := a.write(http.MethodPut, "/v1/tenants/acme/waves/1", berlinWave(5), "If-Match", "yesterday")
	badRequest(t, bad, "If-Match", "must be an ETag this API returned")
	a.ok(a.write(http.MethodPut, "/v1/tenants/acme/waves/1", berlinWave(5), "If-Match", "*"))

	del := a.write(http.MethodDelete, "/v1/tenants/acme/waves/1?reason=retired", "", "If-Match", fmt.Sprintf(`"%d"`, r2))
	require.Equal(t, http.StatusPreconditionFailed, del.status, "a delete with a stale If-Match is refused too")
}

func TestDesignOverRESTRefusesBadInputNamingTheField(t *testing.T) {
	a := startAPI(t)
	a.ok(a.write(http.MethodPut, "/v1/tenants/acme", acmeTenant))
	a.ok(a.write(http.MethodPut, "/v1/tenants/acme/waves/1", berlinWave(4)))
	a.ok(a.write(http.MethodPost, "/v1/tenants/acme/freezes", `{"id":"xmas","start":"2027-12-20T00:00:00Z","end":"2028-01-03T00:00:00Z"}`))
	a.ok(a.write(http.MethodPut, "/v1/tenants/acme/freezes/weekend", `{"rrule":"FREQ=WEEKLY;BYDAY=SA","dtStart":"2027-01-02T00:00","timeZone":"Europe/Berlin","days":2}`))
	withSchedule := func(field, value string) string {
		return strings.Replace(berlinWave(4), field, value, 1)
	}
	tests := []struct {
		name         string
		method, path string
		body         string
		field, rule  string
	}{
		{"an unknown time zone", http.MethodPut, "/v1/tenants/acme/waves/1", withSchedule(`"timeZone":"Europe/Berlin"`, `"timeZone":"Europe/Atlantis"`), "schedule.timeZone", "must be an IANA time zone name"},
		{"week 0", http.MethodPut, "/v1/tenants/acme/waves/1", withSchedule(`"weekOfMonth":2`, `"weekOfMonth":0`), "schedule.weekOfMonth", "must be 1, 2, 3, 4 or -1 (last), got 0"},
		{"week 5", http.MethodPut, "/v1/tenants/acme/waves/1", withSchedule(`"weekOfMonth":2`, `"weekOfMonth":5`), "schedule.weekOfMonth", "got 5"},
		{"offset 31", http.MethodPut, "/v1/tenants/acme/waves/1", withSchedule(`"offsetDays":4`, `"offsetDays":31`), "schedule.offsetDays", "must be from -30 to +30 days, got 31"},
		{"a start at 25:00", http.MethodPut, "/v1/tenants/acme/waves/1", withSchedule(`"startTime":"02:00"`, `"startTime":"25:00"`), "schedule.startTime", `got "25:00"`},
		{"a window over 24 hours", http.MethodPut, "/v1/tenants/acme/waves/1", withSchedule(`"endTime":"06:00"`, `"duration":"25h"`), "schedule.duration", "a window lasts from 1m to 24h"},
		{"a day that is not one", http.MethodPut, "/v1/tenants/acme/waves/1", withSchedule(`"TUESDAY"`, `"TUESDAYS"`), "schedule.dayOfWeek", "must be MONDAY, TUESDAY"},
		{"a wave above the tenant's limit", http.MethodPut, "/v1/tenants/acme/waves/4", berlinWave(4), "wave", "must be from 1 to 3 (the tenant's wave limit), got 4"},
		{"a cutoff as long as the window", http.MethodPut, "/v1/tenants/acme/waves/1", strings.Replace(berlinWave(4), `}}`, `},"policy":{"cutoff":"4h"}}`, 1), "policy.cutoff", "must be shorter than the window (4h)"},
		{"an RRULE that does not parse", http.MethodPut, "/v1/tenants/acme/freezes/weekend", `{"rrule":"FREQ=SOMETIMES","dtStart":"2027-01-02T00:00","timeZone":"Europe/Berlin","days":2}`, "rrule", "must be an RFC 5545 recurrence rule"},
		{"an RRULE that never ends where an end is required", http.MethodGet, "/v1/tenants/acme/freezes/weekend:instances?from=2027-01-01T00:00:00Z", "", "to", "never ends"},
		{"a duplicate wave", http.MethodPut, "/v1/tenants/acme/waves/2", berlinWave(4), "name", `wave 1 is already named "Berlin"`},
		{"a duplicate freeze", http.MethodPost, "/v1/tenants/acme/freezes", `{"id":"xmas","start":"2027-12-20T00:00:00Z","end":"2028-01-03T00:00:00Z"}`, "id", `freeze "xmas" already exists`},
		{"an .ics file that is not one", http.MethodPost, "/v1/tenants/acme/freezes:import", `{"ics":"BEGIN:VCALENDAR\nthis is not a calendar\n"}`, "ics", "line 2"},
		{"a malformed account id", http.MethodPut, "/v1/tenants/acme/accounts/12345", `{"roleArn":"arn:aws:iam::12345:role/x","regions":["eu-central-1"]}`, "accountId", "must be a 12-digit AWS account id"},
		{"a malformed role ARN", http.MethodPut, "/v1/tenants/acme/accounts/111111111111", `{"roleArn":"patchwave-role","regions":["eu-central-1"]}`, "roleArn", "must be an IAM role ARN"},
		{"a reserved tenant id", http.MethodPut, "/v1/tenants/provider", acmeTenant, "tenant", "reserved for provider-wide resources"},
		{"a wave limit of 11", http.MethodPut, "/v1/tenants/acme", `{"displayName":"Acme","waveLimit":11}`, "waveLimit", "must be from 1 to 10 waves, got 11"},
		{"a preview of 101 occurrences", http.MethodPost, "/v1/schedules:preview", `{"schedule":{"weekOfMonth":2,"dayOfWeek":"TUESDAY","startTime":"02:00","endTime":"06:00","timeZone":"Europe/Berlin"},"count":101}`, "count", "must be from 1 to 100"},
		{"a service request without operations", http.MethodPost, "/v1/tenants/acme/service-requests", `{"reason":"x"}`, "operations", "at least one operation"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := a.write(tt.method, tt.path, tt.body)
			badRequest(t, r, tt.field, tt.rule)
		})
	}

	noCredential := a.call(http.MethodPut, "/v1/tenants/acme/waves/1", "application/json", berlinWave(6), "Authorization", "")
	require.Equal(t, http.StatusUnauthorized, noCredential.status, "a write without a credential: %s", noCredential.raw)
	instances := a.ok(a.get("/v1/tenants/acme/freezes/weekend:instances?from=2027-01-01T00:00:00Z&to=2027-01-16T00:00:00Z"))
	require.Equal(t, []any{
		map[string]any{"start": "2027-01-01T23:00:00Z", "end": "2027-01-03T23:00:00Z"},
		map[string]any{"start": "2027-01-08T23:00:00Z", "end": "2027-01-10T23:00:00Z"},
		map[string]any{"start": "2027-01-15T23:00:00Z", "end": "2027-01-17T23:00:00Z"},
	}, instances.body["instances"], "with a horizon the instances are listed")
	unknownField := a.write(http.MethodPut, "/v1/tenants/acme/waves/1", `{"schedule":{"weekOfMonth":2},"colour":"blue"}`)
	require.Equal(t, http.StatusBadRequest, unknownField.status, "unknown fields are refused: %s", unknownField.raw)
	require.EqualValues(t, 4, a.ok(a.get("/v1/tenants/acme/waves/1")).body["wave"].(map[string]any)["schedule"].(map[string]any)["offsetDays"], "no bad write changed anything")

	for _, path := range []string{"/v1/tenants/nobody", "/v1/tenants/nobody/waves", "/v1/tenants/nobody/waves/1:preview", "/v1/tenants/nobody/runs",
		"/v1/tenants/nobody/compliance", "/v1/tenants/nobody/failed-patches", "/v1/tenants/nobody/service-requests", "/v1/tenants/acme/waves/3",
		"/v1/tenants/acme/freezes/easter"} {
		r := a.get(path)
		require.Equal(t, http.StatusNotFound, r.status, "%s: %s", path, r.raw)
	}
	r := a.write(http.MethodPost, "/v1/tenants/nobody/waves/1/runs", `{}`)
	require.Equal(t, http.StatusNotFound, r.status, r.raw)
	r = a.write(http.MethodPost, "/v1/tenants/acme/waves/2/runs", `{}`)
	require.Equal(t, http.StatusPreconditionFailed, r.status, "a wave the design does not define: %s", r.raw)
	r = a.write(http.MethodPost, "/v1/tenants/acme/waves/4/runs", `{}`)
	badRequest(t, r, "wave", "must be from 1 to 3 (the tenant's wave limit), got 4")
}

const weekendICS = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//patchwave test//EN\r\n" +
	"BEGIN:VEVENT\r\nUID:weekend\r\nSUMMARY:Weekend freeze\r\n" +
	"DTSTART;TZID=Europe/Berlin:20270102T000000\r\nDTEND;TZID=Europe/Berlin:20270104T000000\r\n" +
	"RRULE:FREQ=WEEKLY;BYDAY=SA\r\nEXDATE;TZID=Europe/Berlin:20270109T000000\r\nEND:VEVENT\r\n" +
	"BEGIN:VEVENT\r\nUID:audit-week@acme.example\r\nSUMMARY:Audit\r\nDTSTART;VALUE=DATE:20270301\r\nDTEND;VALUE=DATE:20270306\r\nEND:VEVENT\r\n" +
	"END:VCALENDAR\r\n"

func TestDesignOverRESTImportsICSRawAndAsJSON(t *testing.T) {
	a := startAPI(t)
	a.ok(a.write(http.MethodPut, "/v1/tenants/acme", acmeTenant))
	dana := a.newKey("acme", "dana", "tenant-admin")

	raw := a.ok(a.call(http.MethodPost, "/v1/tenants/acme/freezes:import?timeZone=Europe/Berlin&policy=FREEZE_POLICY_DEFER&deferDays=3&reason=CAB%20calendar",
		"text/calendar", weekendICS, bearer(dana)...))
	imported := raw.body["freezes"].([]any)
	require.Len(t, imported, 2, raw.raw)
	ids := map[string]map[string]any{}
	for _, f := range imported {
		m := f.(map[string]any)
		ids[m["id"].(string)] = m
		require.Equal(t, "ics", m["source"])
		require.Equal(t, "FREEZE_POLICY_DEFER", m["policy"])
		require.EqualValues(t, 3, m["deferDays"])
	}
	require.Contains(t, ids, "weekend")
	require.Equal(t, "Europe/Berlin", ids["weekend"]["timeZone"])
	require.Contains(t, ids["weekend"]["rrule"], "FREQ=WEEKLY")
	rev := etag(t, raw)

	// The same file as JSON (to the provider-wide freezes this time), and again to the
	// tenant: nothing changes the second time.
	body, err := json.Marshal(map[string]any{"ics": weekendICS, "timeZone": "Europe/Berlin"})
	require.NoError(t, err)
	global := a.ok(a.write(http.MethodPost, "/v1/freezes:import", string(body)))
	require.Len(t, global.body["freezes"], 2)
	require.Len(t, a.ok(a.get("/v1/freezes")).body["freezes"], 2)
	again := a.ok(a.write(http.MethodPost, "/v1/tenants/acme/freezes:import", strings.Replace(string(body), `}`, `,"policy":"FREEZE_POLICY_DEFER","deferDays":3}`, 1)))
	require.Equal(t, rev, etag(t, again), "importing the same file again changes nothing")

	list := a.ok(a.get("/v1/tenants/acme/freezes?pageSize=1"))
	require.Len(t, list.body["freezes"], 1)
	next := list.body["nextPageToken"].(string)
	require.NotEmpty(t, next)
	rest := a.ok(a.get("/v1/tenants/acme/freezes?pageSize=1&pageToken=" + next))
	require.Len(t, rest.body["freezes"], 1)
	require.Empty(t, rest.body["nextPageToken"])

	broken := a.call(http.MethodPost, "/v1/tenants/acme/freezes:import", "text/calendar", "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nBEGIN:VEVENT\r\nDTSTART:tomorrow\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n",
		bearer(dana)...)
	badRequest(t, broken, "ics", "line 4")
	badRequest(t, a.call(http.MethodPost, "/v1/tenants/acme/freezes:import?deferDays=soon", "text/calendar", weekendICS, bearer(dana)...),
		"deferDays", "must be a whole number of days")
}

// occ is the part of a preview's occurrence a test checks.
type occ struct {
	key, start, end, status, duration string
}

func occurrences(t *testing.T, r reply) []occ {
	t.Helper()
	var out []occ
	for _, o := range r.body["occurrences"].([]any) {
		m := o.(map[string]any)
		out = append(out, occ{m["key"].(string), m["start"].(string), m["end"].(string), m["status"].(string), m["duration"].(string)})
	}
	return out
}

// TestSchedulePreviewOverREST posts exactly the body and checks every occurrence
// against instants computed by hand: the second Tuesday of each month of 2027 plus 4 days
// (Saturdays: 16 Jan, 13 Feb, 13 Mar, 17 Apr, 15 May, 12 Jun, 17 Jul, 14 Aug, 18 Sep, 16 Oct,
// 13 Nov, 18 Dec), 02:00-06:00 in Berlin: CET (UTC+1) until 28 March and from 31 October,
// CEST (UTC+2) between.
func TestSchedulePreviewOverREST(t *testing.T) {
	a := startAPI(t)
	body := `{"schedule":{"weekOfMonth":2,"dayOfWeek":"TUESDAY","offsetDays":4,"startTime":"02:00","endTime":"06:00","timeZone":"Europe/Berlin"},"from":"2027-01-01T00:00:00Z","count":12}`
	r := a.ok(a.call(http.MethodPost, "/v1/schedules:preview", "application/json", body))
	cet := func(day string) occ {
		return occ{day[:7], day + "T01:00:00Z", day + "T05:00:00Z", "OCCURRENCE_STATUS_SCHEDULED", "4h"}
	}
	cest := func(day string) occ {
		return occ{day[:7], day + "T00:00:00Z", day + "T04:00:00Z", "OCCURRENCE_STATUS_SCHEDULED", "4h"}
	}
	require.Equal(t, []occ{
		cet("2027-01-16"), cet("2027-02-13"), cet("2027-03-13"),
		cest("2027-04-17"), cest("2027-05-15"), cest("2027-06-12"), cest("2027-07-17"), cest("2027-08-14"), cest("2027-09-18"), cest("2027-10-16"),
		cet("2027-11-13"), cet("2027-12-18"),
	}, occurrences(t, r))
	first := r.body["occurrences"].([]any)[0].(map[string]any)
	require.Equal(t, "4h", first["nominalDuration"])
	require.Empty(t, first["note"])

	// Across both Berlin DST nights: the last Sunday of the month, 02:30-06:00. On 28 March 2027
	// 02:30 does not exist: it is read with the offset before the gap (UTC+1), 01:30Z, and the
	// window is an hour shorter; on 31 October 02:30 happens twice: the first (UTC+2) counts,
	// 00:30Z, and the window ends at 06:00 CET, 05:00Z, an hour longer.
	dst := `{"schedule":{"weekOfMonth":-1,"dayOfWeek":"SUNDAY","startTime":"02:30","endTime":"06:00","timeZone":"Europe/Berlin"},"from":"2027-03-01T00:00:00Z","count":8}`
	r = a.ok(a.call(http.MethodPost, "/v1/schedules:preview", "application/json", dst))
	got := occurrences(t, r)
	require.Equal(t, occ{"2027-03", "2027-03-28T01:30:00Z", "2027-03-28T04:00:00Z", "OCCURRENCE_STATUS_SCHEDULED", "2h30m"}, got[0])
	require.Equal(t, occ{"2027-04", "2027-04-25T00:30:00Z", "2027-04-25T04:00:00Z", "OCCURRENCE_STATUS_SCHEDULED", "3h30m"}, got[1])
	require.Equal(t, occ{"2027-10", "2027-10-31T00:30:00Z", "2027-10-31T05:00:00Z", "OCCURRENCE_STATUS_SCHEDULED", "4h30m"}, got[7])
	occs := r.body["occurrences"].([]any)
	require.Equal(t, "3h30m", occs[0].(map[string]any)["nominalDuration"])
	require.Contains(t, occs[0].(map[string]any)["note"], "1h shorter")
	require.Contains(t, occs[7].(map[string]any)["note"], "1h longer")

	// With a freeze in the body: the January occurrence is deferred by a day.
	frozen := strings.Replace(body, `"count":12}`, `"count":2,"freezes":[{"id":"jan","start":"2027-01-15T00:00:00Z","end":"2027-01-16T12:00:00Z","policy":"FREEZE_POLICY_DEFER","deferDays":3}]}`, 1)
	r = a.ok(a.call(http.MethodPost, "/v1/schedules:preview", "application/json", frozen))
	deferred := r.body["occurrences"].([]any)[0].(map[string]any)
	require.Equal(t, "OCCURRENCE_STATUS_DEFERRED", deferred["status"])
	require.Equal(t, "2027-01-17T01:00:00Z", deferred["start"])
	require.Equal(t, "2027-01-16T01:00:00Z", deferred["originalStart"])
	require.Equal(t, []any{"jan"}, deferred["freezes"])
}

// TestWavePreviewsAcrossDSTZonesOverREST checks stored waves' previews against hand-checked
// instants in New York (DST from 14 March 2027 02:00 EST, until 7 November 02:00 EDT) and on
// Lord Howe Island, whose clocks move by 30 minutes (back from 02:00 UTC+11 to 01:30 UTC+10:30
// on 4 April 2027, forward from 02:00 to 02:30 on 3 October), with the tenant's and the
// provider's freezes, a skipped occurrence and an override applied.
func TestWavePreviewsAcrossDSTZonesOverREST(t *testing.T) {
	a := startAPI(t)
	a.ok(a.write(http.MethodPut, "/v1/tenants/acme", `{"displayName":"Acme","waveLimit":4}`))
	waves := map[int]string{
		1: `{"schedule":{"weekOfMonth":2,"dayOfWeek":"SUNDAY","startTime":"01:30","endTime":"03:30","timeZone":"America/New_York"}}`,
		2: `{"schedule":{"weekOfMonth":1,"dayOfWeek":"SUNDAY","startTime":"01:30","endTime":"03:30","timeZone":"America/New_York"}}`,
		3: `{"schedule":{"weekOfMonth":1,"dayOfWeek":"SUNDAY","startTime":"01:00","endTime":"04:00","timeZone":"Australia/Lord_Howe"}}`,
	}
	for n, body := range waves {
		a.ok(a.write(http.MethodPut, fmt.Sprintf("/v1/tenants/acme/waves/%d", n), body))
	}
	preview := func(wave int, from string, count int) []occ {
		t.Helper()
		r := a.ok(a.get(fmt.Sprintf("/v1/tenants/acme/waves/%d:preview?from=%s&count=%d", wave, from, count)))
		etag(t, r)
		return occurrences(t, r)
	}
	// 14 March: 01:30 EST (06:30Z) to 03:30 EDT (07:30Z), an hour.
	require.Equal(t, []occ{
		{"2027-03", "2027-03-14T06:30:00Z", "2027-03-14T07:30:00Z", "OCCURRENCE_STATUS_SCHEDULED", "1h"},
		{"2027-04", "2027-04-11T05:30:00Z", "2027-04-11T07:30:00Z", "OCCURRENCE_STATUS_SCHEDULED", "2h"},
	}, preview(1, "2027-03-01T00:00:00Z", 2))
	// 7 November: 01:30 happens twice, the first (EDT, 05:30Z) counts; 03:30 EST is 08:30Z.
	require.Equal(t, []occ{
		{"2027-11", "2027-11-07T05:30:00Z", "2027-11-07T08:30:00Z", "OCCURRENCE_STATUS_SCHEDULED", "3h"},
		{"2027-12", "2027-12-05T06:30:00Z", "2027-12-05T08:30:00Z", "OCCURRENCE_STATUS_SCHEDULED", "2h"},
	}, preview(2, "2027-11-01T00:00:00Z", 2))
	// 4 April: 01:00 UTC+11 (3 April 14:00Z) to 04:00 UTC+10:30 (17:30Z), three and a half
	// hours; 3 October: 01:00 UTC+10:30 (2 October 14:30Z) to 04:00 UTC+11 (17:00Z), two and
	// a half.
	require.Equal(t, occ{"2027-04", "2027-04-03T14:00:00Z", "2027-04-03T17:30:00Z", "OCCURRENCE_STATUS_SCHEDULED", "3h30m"}, preview(3, "2027-04-01T00:00:00Z", 1)[0])
	require.Equal(t, occ{"2027-10", "2027-10-02T14:30:00Z", "2027-10-02T17:00:00Z", "OCCURRENCE_STATUS_SCHEDULED", "2h30m"}, preview(3, "2027-10-01T00:00:00Z", 1)[0])

	// Freezes, a skipped occurrence and an override change the statuses.
	a.ok(a.write(http.MethodPut, "/v1/tenants/acme/freezes/april", `{"start":"2027-04-10T00:00:00Z","end":"2027-04-12T00:00:00Z"}`))
	a.ok(a.write(http.MethodPut, "/v1/freezes/may", `{"start":"2027-05-09T00:00:00Z","end":"2027-05-10T00:00:00Z"}`))
	a.ok(a.write(http.MethodPut, "/v1/tenants/acme/waves/1/overrides/2027-05", `{"reason":"critical CVE-2027-0001"}`))
	w := a.ok(a.get("/v1/tenants/acme/waves/1")).body["wave"].(map[string]any)
	w["skipKeys"] = []string{"2027-06"}
	b, err := json.Marshal(w)
	require.NoError(t, err)
	a.ok(a.write(http.MethodPut, "/v1/tenants/acme/waves/1", string(b)))
	r := a.ok(a.get("/v1/tenants/acme/waves/1:preview?from=2027-04-01T00:00:00Z&count=3"))
	occs := r.body["occurrences"].([]any)
	status := func(i int) string { return occs[i].(map[string]any)["status"].(string) }
	require.Equal(t, "OCCURRENCE_STATUS_SKIPPED_FROZEN", status(0), "the tenant's freeze skips April")
	require.Equal(t, []any{"april"}, occs[0].(map[string]any)["freezes"])
	require.Equal(t, "OCCURRENCE_STATUS_OVERRIDDEN", status(1), "the override beats the provider's freeze in May")
	require.Equal(t, []any{"provider/may"}, occs[1].(map[string]any)["freezes"])
	require.Equal(t, "critical CVE-2027-0001", occs[1].(map[string]any)["reason"])
	require.Equal(t, "OCCURRENCE_STATUS_SKIPPED_BY_REQUEST", status(2))

	a.ok(a.write(http.MethodPut, "/v1/tenants/acme/waves/3", strings.Replace(waves[3], `{"schedule"`, `{"paused":true,"schedule"`, 1)))
	require.Equal(t, "OCCURRENCE_STATUS_SKIPPED_PAUSED", preview(3, "2027-04-01T00:00:00Z", 1)[0].status)

	// Skip next: from now, the next occurrence not yet skipped.
	skipped := a.ok(a.write(http.MethodPost, "/v1/tenants/acme/waves/2:skipNext", `{"reason":"change freeze of our own"}`))
	key := skipped.body["skipped"].(map[string]any)["key"].(string)
	require.Equal(t, "OCCURRENCE_STATUS_SKIPPED_BY_REQUEST", skipped.body["skipped"].(map[string]any)["status"])
	require.Contains(t, skipped.body["wave"].(map[string]any)["skipKeys"], key)
	require.LessOrEqual(t, time.Now().UTC().Format("2006-01"), key, "the next occurrence is not in the past")
}

// TestServiceRequestOverREST raises a request as a tenant admin and applies it as an operator.
func TestServiceRequestOverREST(t *testing.T) {
	a := startAPI(t)
	a.ok(a.write(http.MethodPut, "/v1/tenants/acme", acmeTenant))
	dana := a.newKey("acme", "dana", "tenant-admin")
	raise := `{"reason":"add wave 2","operations":[{"putWave":{"number":2,"schedule":{"weekOfMonth":3,"dayOfWeek":"WEDNESDAY","startTime":"22:00","duration":"4h","timeZone":"Asia/Kolkata"}}}]}`
	raised := a.ok(a.call(http.MethodPost, "/v1/tenants/acme/service-requests", "application/json", raise,
		append(bearer(dana), "X-Patchwave-Actor", "mallory")...))
	sr := raised.body["serviceRequest"].(map[string]any)
	id := sr["requestId"].(string)
	require.Equal(t, "SERVICE_REQUEST_STATE_OPEN", sr["state"])
	require.Equal(t, "dana@acme", sr["raisedBy"], "the actor is the key's subject; the old actor header is ignored")
	srRev := etag(t, raised)
	require.Equal(t, http.StatusNotFound, a.get("/v1/tenants/acme/waves/2").status, "nothing changes before an operator applies it")

	open := a.ok(a.get("/v1/tenants/acme/service-requests?state=SERVICE_REQUEST_STATE_OPEN"))
	require.Len(t, open.body["serviceRequests"], 1)
	require.GreaterOrEqual(t, etag(t, open), srRev, "a list answers the design revision it reflects")
	require.GreaterOrEqual(t, etag(t, a.ok(a.get("/v1/tenants"))), srRev)
	stale := a.write(http.MethodPost, "/v1/tenants/acme/service-requests/"+id+":apply", `{}`, "If-Match", fmt.Sprintf(`"%d"`, srRev-1))
	require.Equal(t, http.StatusPreconditionFailed, stale.status, stale.raw)
	applied := a.ok(a.write(http.MethodPost, "/v1/tenants/acme/service-requests/"+id+":apply", `{}`, "If-Match", fmt.Sprintf(`"%d"`, srRev)))
	require.Equal(t, "SERVICE_REQUEST_STATE_APPLIED", applied.body["serviceRequest"].(map[string]any)["state"])
	require.Equal(t, "operator@provider", applied.body["serviceRequest"].(map[string]any)["closedBy"])
	require.Equal(t, http.StatusForbidden, a.call(http.MethodPost, "/v1/tenants/acme/service-requests/"+id+":apply", "application/json", `{}`, bearer(dana)...).status,
		"a tenant admin raises requests; only an operator applies them")
	w := a.ok(a.get("/v1/tenants/acme/waves/2")).body["wave"].(map[string]any)
	require.Equal(t, "02:00", w["schedule"].(map[string]any)["endTime"], "the duration was stored as the end time")
	require.Empty(t, a.ok(a.get("/v1/tenants/acme/service-requests?state=SERVICE_REQUEST_STATE_OPEN")).body["serviceRequests"])
	again := a.ok(a.write(http.MethodPost, "/v1/tenants/acme/service-requests/"+id+":apply", `{}`))
	require.Equal(t, applied.body["serviceRequest"], again.body["serviceRequest"], "applying twice applies once")
	rejected := a.write(http.MethodPost, "/v1/tenants/acme/service-requests/"+id+":reject", `{"reason":"too late"}`)
	require.Equal(t, http.StatusPreconditionFailed, rejected.status)
	require.Contains(t, rejected.body["message"], "is APPLIED")
}
