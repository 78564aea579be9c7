// Package obs is Patchwave's observability kit: JSON logs that carry the
// correlation id of the request or event being handled, a Prometheus
// registry, and the ops HTTP server every service exposes (/metrics, /livez,
// /readyz).
package obs

import (
	"context"
	"io"
	"log/slog"
)

// Log attribute keys added by NewLogger and ContextHandler.
const (
	ServiceKey       = "service"
	CorrelationIDKey = "correlation_id"
	TraceIDKey       = "trace_id"
)

// NewLogger returns a logger writing JSON lines to w at level and above.
// Every line carries service, and correlation_id and trace_id whenever the
// context passed to the *Context logging methods holds them.
func NewLogger(w io.Writer, service string, level slog.Level) *slog.Logger {
	h := slog.NewJSONHandler(w, &slog.HandlerOptions{Level: level})
	return slog.New(NewContextHandler(h)).With(ServiceKey, service)
}

// ContextHandler is a slog.Handler that adds correlation_id and trace_id
// from the context of each record, then passes the record to the handler it
// wraps. Use the *Context logging methods (InfoContext, ...) so the context
// reaches it. Under a group opened with WithGroup the ids are logged inside
// that group.
type ContextHandler struct {
	inner slog.Handler
}

var _ slog.Handler = ContextHandler{}

// NewContextHandler wraps inner.
func NewContextHandler(inner slog.Handler) ContextHandler {
	return ContextHandler{inner: inner}
}

// Enabled reports whether the wrapped handler handles level.
func (h ContextHandler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.inner.Enabled(ctx, level)
}

// Handle adds the context's ids to r and passes it on.
func (h ContextHandler) Handle(ctx context.Context, r slog.Record) error {
	cid, tid := CorrelationID(ctx), TraceID(ctx)
	if cid != "" || tid != "" {
		// The record may share attribute storage with the caller's copy.
		r = r.Clone()
		if cid != "" {
			r.AddAttrs(slog.String(CorrelationIDKey, cid))
		}
		if tid != "" {
			r.AddAttrs(slog.String(TraceIDKey, tid))
		}
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs returns a ContextHandler whose wrapped handler has attrs.
func (h ContextHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return ContextHandler{inner: h.inner.WithAttrs(attrs)}
}

// WithGroup returns a ContextHandler whose wrapped handler opens group name.
func (h ContextHandler) WithGroup(name string) slog.Handler {
	return ContextHandler{inner: h.inner.WithGroup(name)}
}

type ctxKey int

const (
	correlationIDCtxKey ctxKey = iota + 1
	traceIDCtxKey
)

// WithCorrelationID returns a context carrying id, the value that ties
// together every log line, event and call caused by one request or event.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, correlationIDCtxKey, id)
}

// CorrelationID returns the correlation id in ctx, or "" if there is none.
func CorrelationID(ctx context.Context) string {
	id, _ := ctx.Value(correlationIDCtxKey).(string)
	return id
}

// WithTraceID returns a context carrying a distributed trace id (for
// example the trace-id part of a W3C traceparent).
func WithTraceID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, traceIDCtxKey, id)
}

// TraceID returns the trace id in ctx, or "" if there is none.
func TraceID(ctx context.Context) string {
	id, _ := ctx.Value(traceIDCtxKey).(string)
	return id
}
