package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"

	"github.com/patchwave/patchwave/libs/obs"
)

type traceParentKey struct{}

// CorrelationID returns the correlation id carried by ctx, or "".
func CorrelationID(ctx context.Context) string { return obs.CorrelationID(ctx) }

// WithCorrelationID returns ctx carrying id; events published with it carry the id.
func WithCorrelationID(ctx context.Context, id string) context.Context {
	return obs.WithCorrelationID(ctx, id)
}

// TraceParent returns the W3C trace context carried by ctx, or "".
func TraceParent(ctx context.Context) string {
	s, _ := ctx.Value(traceParentKey{}).(string)
	return s
}

// WithTraceParent returns ctx carrying a W3C traceparent value.
func WithTraceParent(ctx context.Context, tp string) context.Context {
	return context.WithValue(ctx, traceParentKey{}, tp)
}

// NewTraceParent starts a new W3C trace: "00-<trace id>-<span id>-01".
func NewTraceParent() string {
	var b [24]byte
	_, _ = rand.Read(b[:])
	return "00-" + hex.EncodeToString(b[:16]) + "-" + hex.EncodeToString(b[16:]) + "-01"
}

// childTraceParent keeps the trace id of parent and gives the handler a new span id.
func childTraceParent(parent string) string {
	if len(parent) != 55 {
		return NewTraceParent()
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	return parent[:36] + hex.EncodeToString(b[:]) + parent[52:]
}

// NewCorrelationID returns a random correlation id.
func NewCorrelationID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
