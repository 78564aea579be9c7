package natsauth_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/nats-io/jwt/v2"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/natsauth"
)

func TestTheDefaultTableIsValidAndCoversEveryStreamAndProducer(t *testing.T) {
	require.NoError(t, natsauth.Default.Validate())
	var streams []string
	for _, s := range bus.Streams(bus.StreamOptions{}) {
		streams = append(streams, s.Name)
	}
	for _, s := range natsauth.Default.Services {
		p, err := natsauth.Default.Permissions(s.Name)
		require.NoError(t, err)
		for _, st := range streams {
			require.Contains(t, p.Pub.Allow, "$JS.API.STREAM.CREATE."+st, "%s's bus ensures stream %s", s.Name, st)
		}
	}
	for _, d := range events.Defs() {
		p, err := natsauth.Default.Permissions(d.Producer)
		require.NoError(t, err)
		require.Contains(t, p.Pub.Allow, d.Pattern(), "%s publishes %s", d.Producer, d.Message)
	}
}

func TestTableValidateNamesEveryProblem(t *testing.T) {
	withService := func(s ...natsauth.Service) natsauth.Table {
		tb := natsauth.Default
		tb.Services = append(slices.Clone(tb.Services), s...)
		return tb
	}
	tests := []struct {
		name  string
		table natsauth.Table
		want  string
	}{
		{"a service name with a dot", withService(natsauth.Service{Name: "a.b"}), `Services[7] "a.b": Name must match`},
		{"a reserved name", withService(natsauth.Service{Name: natsauth.UserAdmin}), "reserved"},
		{"an integrator-like name", withService(natsauth.Service{Name: "integ_acme_x"}), "reserved"},
		{"a service declared twice", withService(natsauth.Service{Name: "catalog"}), "declared twice"},
		{"a handler on an unknown stream", withService(natsauth.Service{Name: "x", Handlers: []natsauth.Handler{{Name: "H", Stream: "NOPE"}}}), `Stream "NOPE" is none of`},
		{"a handler name with a space", withService(natsauth.Service{Name: "x", Handlers: []natsauth.Handler{{Name: "H 1", Stream: events.StreamTenant}}}), `Handlers[0] "H 1": Name must match`},
		{"a projection of an unknown stream", withService(natsauth.Service{Name: "x", Projects: []string{"NOPE"}}), `stream "NOPE" is none of`},
		{"a bucket without a known owner", func() natsauth.Table {
			tb := natsauth.Default
			tb.Buckets = []natsauth.Bucket{{Name: "design", Owner: "nobody", Readers: []string{"ghost"}}}
			return tb
		}(), `Owner "nobody" is not a service`},
		{"a consumer on a bucket the service neither owns nor reads", withService(natsauth.Service{Name: "x", Handlers: []natsauth.Handler{{Name: "H", Stream: natsauth.BucketStream("catalog_rules")}}}), "neither owned nor read"},
		{"an event whose producer has no entry", natsauth.Table{Services: []natsauth.Service{{Name: "catalog"}}}, `producer "scheduler" is not a service`},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused", func(t *testing.T) {
			require.ErrorContains(t, tt.table.Validate(), tt.want)
			_, err := tt.table.Permissions("catalog")
			require.ErrorContains(t, err, tt.want)
		})
	}
	_, err := natsauth.Default.Permissions("portal")
	require.ErrorContains(t, err, `service "portal": not in the permission table`)
}

func TestTableCheckNamesWhatIsNotDeclared(t *testing.T) {
	tb := natsauth.Default
	require.NoError(t, tb.Check("snapshotter", []natsauth.Handler{{Name: "TakeSnapshotOnJobRequested", Stream: events.StreamTenant}}, []string{events.StreamTenant}))
	err := tb.Check("snapshotter", []natsauth.Handler{{Name: "RestoreOnRestoreRequested", Stream: events.StreamTenant}}, []string{events.StreamCatalog})
	require.ErrorContains(t, err, `snapshotter: handler RestoreOnRestoreRequested on PATCH_EVENTS is not in the NATS permission table`)
	require.ErrorContains(t, err, `snapshotter: projections of CATALOG_EVENTS are not in the NATS permission table`)
	require.ErrorContains(t, tb.Check("portal", nil, nil), "not in the NATS permission table")
	require.NoError(t, tb.Check("gateway", nil, nil), "the gateway has no handlers or projections")
}

func TestMaterialIsMadeOnceAndKeptPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	m, err := natsauth.LoadOrCreate(dir)
	require.NoError(t, err)
	require.NoError(t, m.WriteCreds(natsauth.Default))
	again, err := natsauth.LoadOrCreate(dir)
	require.NoError(t, err)
	require.Equal(t, m.Account(), again.Account(), "the second start loads the same account")
	require.Equal(t, m.OperatorJWT(), again.OperatorJWT())

	oc, err := m.OperatorClaims()
	require.NoError(t, err)
	require.Equal(t, m.SystemAccount(), oc.SystemAccount)
	ac, err := jwt.DecodeAccountClaims(m.AccountJWT())
	require.NoError(t, err)
	require.True(t, ac.Limits.IsJSEnabled(), "the account has JetStream")
	require.Len(t, ac.SigningKeys, 1, "users are signed by a signing key, not the account's identity")

	first, err := os.ReadFile(natsauth.CredsPath(dir, "installer"))
	require.NoError(t, err)
	require.NoError(t, again.WriteCreds(natsauth.Default))
	second, err := os.ReadFile(natsauth.CredsPath(dir, "installer"))
	require.NoError(t, err)
	k1, err := jwt.ParseDecoratedUserNKey(first)
	require.NoError(t, err)
	k2, err := jwt.ParseDecoratedUserNKey(second)
	require.NoError(t, err)
	p1, _ := k1.PublicKey()
	p2, _ := k2.PublicKey()
	require.Equal(t, p1, p2, "a user keeps its key when its credentials are rewritten")

	var files int
	require.NoError(t, filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		require.NoError(t, err)
		info, err := d.Info()
		require.NoError(t, err)
		if d.IsDir() {
			require.Equal(t, fs.FileMode(0o700), info.Mode().Perm(), path)
			return nil
		}
		files++
		require.Equal(t, fs.FileMode(0o600), info.Mode().Perm(), path)
		return nil
	}))
	require.Equal(t, 8+3+len(natsauth.Default.Services), files, "keys, JWTs and every user's credentials")
}

func TestLoadOrCreateRefusesAnEmptyDirName(t *testing.T) {
	_, err := natsauth.LoadOrCreate("")
	require.ErrorContains(t, err, "dir: required")
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "keys"), 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "keys", "operator.nk"), []byte("garbage"), 0o600))
	_, err = natsauth.LoadOrCreate(dir)
	require.ErrorContains(t, err, "load nats material")
}
