package natsembed_test

import (
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/natsembed"
)

func TestRunStartsAJetStreamServerOnARandomLoopbackPort(t *testing.T) {
	srv, err := natsembed.Run(natsembed.Options{Port: natsembed.RandomPort, StoreDir: t.TempDir(), ServerName: "embedded"})
	require.NoError(t, err)
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})

	require.True(t, srv.JetStreamEnabled())
	require.Equal(t, "embedded", srv.Name())
	require.Regexp(t, `^nats://127\.0\.0\.1:\d+$`, srv.ClientURL())
	nc, err := nats.Connect(srv.ClientURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	require.NoError(t, nc.Flush())
}

func TestRunRejectsInvalidOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    natsembed.Options
		wantErr []string
	}{
		{
			name:    "a missing store dir is named",
			opts:    natsembed.Options{Port: natsembed.RandomPort},
			wantErr: []string{"StoreDir: required"},
		},
		{
			name:    "a port out of range is named",
			opts:    natsembed.Options{Port: 70000, StoreDir: t.TempDir()},
			wantErr: []string{"Port: must be"},
		},
		{
			name:    "every problem is reported at once",
			opts:    natsembed.Options{Port: -2, MaxPayload: -1},
			wantErr: []string{"StoreDir: required", "Port: must be", "MaxPayload: must not be negative"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := natsembed.Run(tt.opts)
			require.Error(t, err)
			require.Nil(t, srv)
			for _, want := range tt.wantErr {
				require.ErrorContains(t, err, want)
			}
		})
	}
}
