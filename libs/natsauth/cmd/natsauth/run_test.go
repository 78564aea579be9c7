package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/natsauth"
	"github.com/patchwave/patchwave/libs/testkit"
)

func TestInitWritesEveryUsersCredentialsAndTheServerFragment(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "secrets")
	var out bytes.Buffer
	require.NoError(t, run(t.Context(), []string{"init", "-dir", dir, "-resolver-dir", "/var/lib/nats/resolver"}, &out, &out))
	for _, s := range natsauth.Default.Services {
		creds, err := os.ReadFile(natsauth.CredsPath(dir, s.Name))
		require.NoError(t, err, s.Name)
		token, err := jwt.ParseDecoratedJWT(creds)
		require.NoError(t, err)
		uc, err := jwt.DecodeUserClaims(token)
		require.NoError(t, err)
		require.Equal(t, s.Name, uc.Name)
		require.Contains(t, out.String(), natsauth.CredsPath(dir, s.Name))
	}
	conf, err := os.ReadFile(filepath.Join(dir, natsauth.AuthConfFile))
	require.NoError(t, err)
	require.Contains(t, string(conf), `dir: "/var/lib/nats/resolver"`)
	require.Contains(t, string(conf), "resolver_preload")

	// A second init keeps the operator and accounts.
	m, err := natsauth.Load(dir)
	require.NoError(t, err)
	require.NoError(t, run(t.Context(), []string{"init", "-dir", dir}, &out, &out))
	again, err := natsauth.Load(dir)
	require.NoError(t, err)
	require.Equal(t, m.Account(), again.Account())
}

func TestIntegratorCommandsIssueListAndRevoke(t *testing.T) {
	n := testkit.StartSecureNATS(t)
	require.NoError(t, bus.EnsureStreams(t.Context(), n.JetStream(t), bus.StreamOptions{}))
	base := []string{"-dir", n.AuthDir(), "-url", n.URL()}
	credsFile := filepath.Join(t.TempDir(), "acme-splunk.creds")
	var out, errOut bytes.Buffer
	require.NoError(t, run(t.Context(), append([]string{"integrator", "issue", "-tenant", "acme", "-name", "splunk", "-out", credsFile}, base...), &out, &errOut))
	require.Contains(t, errOut.String(), "consumer integ_acme_splunk on PATCH_EVENTS (patch.acme.>), inbox prefix _INBOX.integ_acme_splunk")
	info, err := os.Stat(credsFile)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	out.Reset()
	require.NoError(t, run(t.Context(), append([]string{"integrator", "list", "-tenant", "acme"}, base...), &out, &errOut))
	require.Contains(t, out.String(), "splunk")
	require.Contains(t, out.String(), "integ_acme_splunk")
	require.Contains(t, out.String(), "active")

	require.NoError(t, run(t.Context(), append([]string{"integrator", "revoke", "-tenant", "acme", "-name", "splunk"}, base...), &out, &errOut))
	out.Reset()
	require.NoError(t, run(t.Context(), append([]string{"integrator", "list", "-tenant", "acme"}, base...), &out, &errOut))
	require.NotContains(t, out.String(), "splunk")
	require.NoError(t, run(t.Context(), append([]string{"integrator", "prune"}, base...), &out, &errOut))

	err = run(t.Context(), append([]string{"integrator", "issue", "-tenant", "ac.me", "-name", "x"}, base...), &out, &errOut)
	require.ErrorContains(t, err, "tenant")
}

func TestBadCommandLinesAreRefusedWithTheUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no command", nil, "usage"},
		{"an unknown command", []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"init without a directory", []string{"init"}, "-dir: required"},
		{"an integrator command without a subcommand", []string{"integrator"}, "usage"},
		{"an unknown integrator command", []string{"integrator", "rotate", "-dir", "x"}, `unknown integrator command "rotate"`},
		{"an integrator command with a directory without material", []string{"integrator", "list", "-dir", "/nonexistent"}, "load nats material"},
		{"an integrator command without a directory", []string{"integrator", "list"}, "-dir: required"},
		{"an unknown flag", []string{"init", "-nope"}, "flag provided but not defined: -nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			var out bytes.Buffer
			require.ErrorContains(t, run(t.Context(), tt.args, &out, &out), tt.want)
		})
	}
}
