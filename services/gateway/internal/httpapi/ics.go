package httpapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"strconv"
)

// MaxICSUpload bounds a raw iCalendar upload (the design service takes at most 512 KiB of
// text; the rest of the limit is room for the JSON envelope).
const MaxICSUpload = 512 << 10

// importPath matches the routes of ImportFreezes.
var importPath = regexp.MustCompile(`^/v1/(tenants/[^/]+/)?freezes:import$`)

// withICSUpload takes a raw iCalendar file (POST .../freezes:import with Content-Type
// text/calendar) and hands it on as the JSON body of ImportFreezes, with the query parameters
// timeZone, policy, deferDays and reason as the other fields; so one RPC serves both forms
// (grpc-gateway cannot take a raw body without googleapis' HttpBody). Any other request passes
// through untouched.
func withICSUpload(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		if r.Method != http.MethodPost || mt != "text/calendar" || !importPath.MatchString(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		text, ok := readUpload(w, r, "ics", MaxICSUpload, fmt.Sprintf("must be at most %d KiB", MaxICSUpload>>10))
		if !ok {
			return
		}
		body := map[string]any{"ics": string(text)}
		copyQuery(body, r, "timeZone", "policy", "reason")
		if v := r.URL.Query().Get("deferDays"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil {
				writeBadRequest(w, "deferDays", fmt.Sprintf("must be a whole number of days, got %q", v))
				return
			}
			body["deferDays"] = n
		}
		forwardJSON(w, r, next, "ics", body)
	})
}

// readUpload reads a raw request body of at most limit bytes; on failure it answers 400 for
// field (tooLarge says the limit) and returns false.
func readUpload(w http.ResponseWriter, r *http.Request, field string, limit int, tooLarge string) ([]byte, bool) {
	data, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		writeBadRequest(w, field, fmt.Sprintf("the upload could not be read: %v", err))
		return nil, false
	}
	if len(data) > limit {
		writeBadRequest(w, field, tooLarge)
		return nil, false
	}
	return data, true
}

// copyQuery copies the named query parameters that are set into body.
func copyQuery(body map[string]any, r *http.Request, names ...string) {
	q := r.URL.Query()
	for _, name := range names {
		if v := q.Get(name); v != "" {
			body[name] = v
		}
	}
}

// forwardJSON hands the request on to next with body, as JSON, for its body and no query:
// a raw upload becomes the RPC's JSON request.
func forwardJSON(w http.ResponseWriter, r *http.Request, next http.Handler, field string, body map[string]any) {
	b, err := json.Marshal(body)
	if err != nil {
		writeBadRequest(w, field, "must be text")
		return
	}
	r2 := r.Clone(r.Context())
	r2.Body, r2.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	r2.Header.Set("Content-Type", "application/json")
	r2.URL.RawQuery = ""
	next.ServeHTTP(w, r2)
}

// writeBadRequest answers 400 with the API's error body (code 3, InvalidArgument) and a
// BadRequest field violation.
func writeBadRequest(w http.ResponseWriter, field, rule string) {
	body, _ := json.Marshal(map[string]any{
		"code": 3, "message": "invalid argument: " + field + ": " + rule,
		"details": []any{map[string]any{
			"@type":           "type.googleapis.com/google.rpc.BadRequest",
			"fieldViolations": []any{map[string]any{"field": field, "description": rule}},
		}},
	})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = w.Write(body)
}
