package natsembed

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSlogAdapterKeepsOnlyWarningsAndErrors(t *testing.T) {
	tests := []struct {
		name string
		log  func(a slogAdapter)
		want string
	}{
		{name: "a warning is logged at warn", log: func(a slogAdapter) { a.Warnf("disk %d%% full", 91) }, want: "level=WARN msg=\"disk 91% full\""},
		{name: "an error is logged at error", log: func(a slogAdapter) { a.Errorf("boom") }, want: "level=ERROR msg=boom"},
		{name: "a fatal error is logged at error and marked", log: func(a slogAdapter) { a.Fatalf("gone") }, want: "level=ERROR msg=gone fatal=true"},
		{name: "a notice is dropped", log: func(a slogAdapter) { a.Noticef("banner") }, want: ""},
		{name: "debug output is dropped", log: func(a slogAdapter) { a.Debugf("dbg") }, want: ""},
		{name: "trace output is dropped", log: func(a slogAdapter) { a.Tracef("trc") }, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := slog.NewTextHandler(&buf, &slog.HandlerOptions{
				Level:       slog.LevelDebug,
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { return dropTime(a) },
			})
			tt.log(slogAdapter{log: slog.New(h)})
			if tt.want == "" {
				require.Empty(t, buf.String())
				return
			}
			require.Contains(t, buf.String(), tt.want)
		})
	}
}

func dropTime(a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
