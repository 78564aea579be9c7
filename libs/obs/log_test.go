package obs_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/obs"
)

func TestNewLoggerWritesJSONWithServiceAndContextIDs(t *testing.T) {
	tests := []struct {
		name    string
		ctx     func(context.Context) context.Context
		log     func(l *slog.Logger, ctx context.Context)
		want    map[string]any
		missing []string
	}{
		{
			name:    "a plain line carries the service",
			ctx:     func(ctx context.Context) context.Context { return ctx },
			log:     func(l *slog.Logger, ctx context.Context) { l.InfoContext(ctx, "started", "port", 8080) },
			want:    map[string]any{"level": "INFO", "msg": "started", "service": "scheduler", "port": float64(8080)},
			missing: []string{"correlation_id", "trace_id"},
		},
		{
			name:    "a correlation id in the context is logged",
			ctx:     func(ctx context.Context) context.Context { return obs.WithCorrelationID(ctx, "corr-1") },
			log:     func(l *slog.Logger, ctx context.Context) { l.WarnContext(ctx, "slow") },
			want:    map[string]any{"level": "WARN", "correlation_id": "corr-1", "service": "scheduler"},
			missing: []string{"trace_id"},
		},
		{
			name: "a trace id is logged next to the correlation id",
			ctx: func(ctx context.Context) context.Context {
				return obs.WithTraceID(obs.WithCorrelationID(ctx, "corr-2"), "4bf92f3577b34da6a3ce929d0e0e4736")
			},
			log:  func(l *slog.Logger, ctx context.Context) { l.ErrorContext(ctx, "failed") },
			want: map[string]any{"correlation_id": "corr-2", "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"},
		},
		{
			name: "attributes added with With are kept",
			ctx:  func(ctx context.Context) context.Context { return obs.WithCorrelationID(ctx, "corr-3") },
			log:  func(l *slog.Logger, ctx context.Context) { l.With("tenant", "acme").InfoContext(ctx, "x") },
			want: map[string]any{"tenant": "acme", "correlation_id": "corr-3", "service": "scheduler"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			l := obs.NewLogger(&buf, "scheduler", slog.LevelInfo)
			tt.log(l, tt.ctx(t.Context()))

			line := decodeOne(t, &buf)
			for k, v := range tt.want {
				require.Equal(t, v, line[k], "attribute %q", k)
			}
			for _, k := range tt.missing {
				require.NotContains(t, line, k)
			}
		})
	}
}

func TestNewLoggerDropsLinesBelowItsLevel(t *testing.T) {
	var buf bytes.Buffer
	l := obs.NewLogger(&buf, "svc", slog.LevelWarn)
	l.Info("hidden")
	l.Debug("hidden too")
	l.Warn("shown")
	require.Equal(t, "shown", decodeOne(t, &buf)["msg"])
}

func TestContextHandlerDoesNotChangeTheCallersRecord(t *testing.T) {
	var a, b bytes.Buffer
	ha := obs.NewContextHandler(slog.NewJSONHandler(&a, nil))
	hb := slog.NewJSONHandler(&b, nil)
	ctx := obs.WithCorrelationID(t.Context(), "corr")
	r := slog.NewRecord(testTime, slog.LevelInfo, "msg", 0)
	r.AddAttrs(slog.Int("n", 1))

	require.NoError(t, ha.Handle(ctx, r))
	require.NoError(t, hb.Handle(ctx, r))

	require.Equal(t, "corr", decodeOne(t, &a)["correlation_id"])
	require.NotContains(t, decodeOne(t, &b), "correlation_id")
}

func TestContextIDsReadBackAndDefaultToEmpty(t *testing.T) {
	ctx := t.Context()
	require.Empty(t, obs.CorrelationID(ctx))
	require.Empty(t, obs.TraceID(ctx))
	ctx = obs.WithTraceID(obs.WithCorrelationID(ctx, "c"), "t")
	require.Equal(t, "c", obs.CorrelationID(ctx))
	require.Equal(t, "t", obs.TraceID(ctx))
}

func decodeOne(t *testing.T, buf *bytes.Buffer) map[string]any {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	require.Len(t, lines, 1, "one log line: %q", buf.String())
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(lines[0]), &m))
	return m
}
