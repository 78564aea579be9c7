package httpapi

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
)

func TestRequestLog(t *testing.T) {
	tests := []struct {
		name       string
		handler    http.HandlerFunc
		header     string
		wantStatus int
		wantBody   string
		wantLevel  string
	}{
		{
			name:       "a panic becomes a JSON 500 and is logged as an error",
			handler:    func(http.ResponseWriter, *http.Request) { panic("boom") },
			wantStatus: http.StatusInternalServerError,
			wantBody:   `{"code":13,"message":"internal error","details":[]}`,
			wantLevel:  "ERROR",
		},
		{
			name: "the handler sees the correlation id in its context and header",
			handler: func(w http.ResponseWriter, r *http.Request) {
				_, _ = w.Write([]byte(bus.CorrelationID(r.Context()) + " " + r.Header.Get(CorrelationHeader)))
			},
			header:     "corr-1",
			wantStatus: http.StatusOK,
			wantBody:   "corr-1 corr-1",
			wantLevel:  "INFO",
		},
		{
			name: "an overlong correlation id is replaced",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusAccepted)
				_, _ = w.Write([]byte(r.Header.Get(CorrelationHeader)))
			},
			header:     strings.Repeat("x", maxCorrelationID+1),
			wantStatus: http.StatusAccepted,
			wantLevel:  "INFO",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			h := withRequestLog(slog.New(slog.NewJSONHandler(&logs, nil)), tt.handler)
			req := httptest.NewRequestWithContext(t.Context(), http.MethodGet, "/v1/x", nil)
			if tt.header != "" {
				req.Header.Set(CorrelationHeader, tt.header)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)

			require.Equal(t, tt.wantStatus, rec.Code)
			id := rec.Header().Get(CorrelationHeader)
			require.NotEmpty(t, id)
			require.LessOrEqual(t, len(id), maxCorrelationID)
			if tt.wantBody != "" {
				require.Equal(t, tt.wantBody, rec.Body.String())
			} else {
				require.Equal(t, id, rec.Body.String(), "the replacement id is the one forwarded")
			}
			var last map[string]any
			lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
			require.NoError(t, json.Unmarshal([]byte(lines[len(lines)-1]), &last))
			require.Equal(t, "http request", last["msg"])
			require.Equal(t, tt.wantLevel, last["level"])
			require.EqualValues(t, tt.wantStatus, last["status"])
			require.Equal(t, id, last["correlation_id"])
		})
	}
}

func TestLoadOpenAPI(t *testing.T) {
	tests := []struct {
		name      string
		files     map[string]string
		wantPaths []string
		wantErr   string
	}{
		{
			name:      "one document is served as it is",
			files:     map[string]string{"gen/openapi/a.swagger.json": `{"swagger":"2.0","paths":{"/v1/a":{}}}`},
			wantPaths: []string{"/v1/a"},
		},
		{
			name: "several documents are merged into one",
			files: map[string]string{
				"a.swagger.json": `{"swagger":"2.0","paths":{"/v1/a":{}},"definitions":{"A":{}}}`,
				"b.swagger.json": `{"swagger":"2.0","paths":{"/v1/b":{}},"definitions":{"B":{}}}`,
			},
			wantPaths: []string{"/v1/a", "/v1/b"},
		},
		{name: "no document is an error", files: map[string]string{"README": "x"}, wantErr: "no *.json document"},
		{name: "a broken document is an error naming it", files: map[string]string{"x.json": "{"}, wantErr: "x.json"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for name, body := range tt.files {
				fsys[name] = &fstest.MapFile{Data: []byte(body)}
			}
			b, err := LoadOpenAPI(fsys)
			if tt.wantErr != "" {
				require.ErrorContains(t, err, tt.wantErr)
				return
			}
			require.NoError(t, err)
			var doc struct {
				Paths map[string]any `json:"paths"`
			}
			require.NoError(t, json.Unmarshal(b, &doc))
			for _, p := range tt.wantPaths {
				require.Contains(t, doc.Paths, p)
			}
			require.Len(t, doc.Paths, len(tt.wantPaths))
		})
	}
}
