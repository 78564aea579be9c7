package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/obs"
)

// maxCorrelationID bounds a caller's correlation id; a longer one is replaced, as the services
// would do (they ignore ids over 128 characters).
const maxCorrelationID = 128

// withRequestLog gives each request a correlation id (the caller's X-Correlation-Id or a new
// one), echoes it in the response, recovers a panic into a JSON 500, and logs the request once
// (method, path, status, duration_ms, correlation_id; at error level for a 5xx).
func withRequestLog(log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(CorrelationHeader)
		if id == "" || len(id) > maxCorrelationID {
			id = bus.NewCorrelationID()
			r.Header.Set(CorrelationHeader, id)
		}
		w.Header().Set(CorrelationHeader, id)
		// The log line names the id itself, from a context without it, so a logger that adds
		// the context's correlation id (obs.NewLogger) does not print it twice.
		logCtx := r.Context()
		r = r.WithContext(bus.WithCorrelationID(logCtx, id))
		rec := &statusRecorder{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				if err, ok := p.(error); ok && errors.Is(err, http.ErrAbortHandler) {
					panic(p) // net/http aborts the response quietly
				}
				log.ErrorContext(logCtx, "http handler panicked", "method", r.Method, "path", r.URL.Path,
					"panic", fmt.Sprint(p), "stack", string(debug.Stack()), obs.CorrelationIDKey, id)
				if !rec.wrote {
					rec.Header().Set("Content-Type", "application/json")
					rec.WriteHeader(http.StatusInternalServerError)
					_, _ = rec.Write([]byte(`{"code":13,"message":"internal error","details":[]}`))
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			level := slog.LevelInfo
			if status >= http.StatusInternalServerError {
				level = slog.LevelError
			}
			log.LogAttrs(logCtx, level, "http request",
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", status),
				slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
				slog.String(obs.CorrelationIDKey, id),
			)
		}()
		next.ServeHTTP(rec, r)
	})
}

// statusRecorder remembers the status code written through it.
type statusRecorder struct {
	http.ResponseWriter
	status int
	wrote  bool
}

func (s *statusRecorder) WriteHeader(code int) {
	if !s.wrote {
		s.status, s.wrote = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if !s.wrote {
		s.status, s.wrote = http.StatusOK, true
	}
	return s.ResponseWriter.Write(b)
}

// Flush lets grpc-gateway flush through the recorder.
func (s *statusRecorder) Flush() {
	if f, ok := s.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }
