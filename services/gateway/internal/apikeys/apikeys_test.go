package apikeys_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/services/gateway/internal/apikeys"
)

type fixture struct {
	store *apikeys.Store
	kv    jetstream.KeyValue
	clock *testkit.Clock
	js    jetstream.JetStream
}

func open(t *testing.T) *fixture {
	t.Helper()
	js := testkit.StartNATS(t).JetStream(t)
	clock := testkit.NewClock(time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC))
	s, err := apikeys.Open(t.Context(), apikeys.Config{JetStream: js, Clock: clock.Now, LastUseInterval: time.Minute})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	require.NoError(t, s.WaitLoaded(t.Context()))
	kv, err := js.KeyValue(t.Context(), apikeys.Bucket)
	require.NoError(t, err)
	return &fixture{store: s, kv: kv, clock: clock, js: js}
}

func (f *fixture) stored(t *testing.T, id string) (apikeys.Record, uint64) {
	t.Helper()
	e, err := f.kv.Get(t.Context(), "keys."+id)
	require.NoError(t, err)
	var r apikeys.Record
	require.NoError(t, json.Unmarshal(e.Value(), &r))
	return r, e.Revision()
}

var ci = apikeys.CreateRequest{Tenant: "acme", Name: "ci-deploy", Roles: []auth.Role{auth.RoleTenantAdmin}, CreatedBy: "dana@acme"}

func TestAKeyIsShownOnceAndStoredHashed(t *testing.T) {
	f := open(t)
	rec, key, err := f.store.Create(t.Context(), ci)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(key, "pwk_"+rec.ID+"_"), key)
	require.Equal(t, "ci-deploy@acme", rec.Subject)
	require.Equal(t, f.clock.Now().Add(90*24*time.Hour), rec.ExpireTime, "the default lifetime is 90 days")

	raw, err := f.kv.Get(t.Context(), "keys."+rec.ID)
	require.NoError(t, err)
	require.NotContains(t, string(raw.Value()), strings.TrimPrefix(key, "pwk_"+rec.ID+"_"), "the secret is not stored")
	stored, _ := f.stored(t, rec.ID)
	require.Len(t, stored.Hash, 64, "its SHA-256 is")

	got, err := f.store.Verify(key)
	require.NoError(t, err)
	id := got.Identity()
	require.Equal(t, auth.Identity{Subject: "ci-deploy@acme", Tenant: "acme", Roles: []auth.Role{auth.RoleTenantAdmin},
		CredentialID: rec.ID, CredentialKind: auth.KindAPIKey, Expires: rec.ExpireTime}, *id)

	for _, bad := range []string{
		key[:len(key)-1] + "x", // tampered secret
		"pwk_" + strings.Repeat("0", 20) + "_secret",
		"not-a-key",
	} {
		_, err := f.store.Verify(bad)
		require.ErrorIs(t, err, apikeys.ErrUnknownKey, bad)
	}
}

func TestAKeyExpires(t *testing.T) {
	f := open(t)
	req := ci
	req.TTL = time.Hour
	_, key, err := f.store.Create(t.Context(), req)
	require.NoError(t, err)
	_, err = f.store.Verify(key)
	require.NoError(t, err)
	f.clock.Advance(time.Hour)
	_, err = f.store.Verify(key)
	require.ErrorIs(t, err, apikeys.ErrExpired)
}

func TestARevokedKeyIsRefusedOnEveryReplica(t *testing.T) {
	f := open(t)
	other, err := apikeys.Open(t.Context(), apikeys.Config{JetStream: f.js, Clock: f.clock.Now})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- other.Run(ctx) }()
	defer func() { cancel(); require.NoError(t, <-done) }()
	require.NoError(t, other.WaitLoaded(t.Context()))

	rec, key, err := f.store.Create(t.Context(), ci)
	require.NoError(t, err)
	require.Eventually(t, func() bool { _, err := other.Verify(key); return err == nil }, 5*time.Second, 5*time.Millisecond,
		"another replica accepts the new key once its watch has it")

	revoked, err := f.store.Revoke(t.Context(), "acme", rec.ID, "omar@provider", "leaked in a log")
	require.NoError(t, err)
	require.Equal(t, "revoked", revoked.State(f.clock.Now()))
	require.Equal(t, "omar@provider", revoked.RevokedBy)
	require.Equal(t, "leaked in a log", revoked.RevokeReason)
	_, err = f.store.Verify(key)
	require.ErrorIs(t, err, apikeys.ErrRevoked, "refused at once where it was revoked")
	require.Eventually(t, func() bool { _, err := other.Verify(key); return err != nil }, 5*time.Second, 5*time.Millisecond,
		"and on the other replica as soon as its watch sees it")

	again, err := f.store.Revoke(t.Context(), "acme", rec.ID, "someone-else", "again")
	require.NoError(t, err)
	require.Equal(t, revoked, again, "revoking twice changes nothing")

	_, err = f.store.Revoke(t.Context(), "globex", rec.ID, "x", "")
	require.ErrorIs(t, err, apierr.ErrNotFound, "another tenant's key is not found")
}

func TestLastUseIsRecordedAtMostOncePerInterval(t *testing.T) {
	f := open(t)
	rec, key, err := f.store.Create(t.Context(), ci)
	require.NoError(t, err)
	_, rev0 := f.stored(t, rec.ID)

	_, err = f.store.Verify(key)
	require.NoError(t, err)
	require.NoError(t, f.store.FlushUses(t.Context()))
	used, rev1 := f.stored(t, rec.ID)
	require.NotNil(t, used.LastUseTime)
	require.Equal(t, f.clock.Now(), *used.LastUseTime)
	require.Greater(t, rev1, rev0)

	// Many uses within the interval write nothing more.
	for range 50 {
		f.clock.Advance(time.Second)
		_, err = f.store.Verify(key)
		require.NoError(t, err)
	}
	require.NoError(t, f.store.FlushUses(t.Context()))
	_, rev2 := f.stored(t, rec.ID)
	require.Equal(t, rev1, rev2, "no write within the interval")

	// The first use after the interval is written.
	f.clock.Advance(10 * time.Second)
	_, err = f.store.Verify(key)
	require.NoError(t, err)
	require.NoError(t, f.store.FlushUses(t.Context()))
	later, rev3 := f.stored(t, rec.ID)
	require.Greater(t, rev3, rev2)
	require.Equal(t, f.clock.Now(), *later.LastUseTime)
}

func TestCreateNamesEveryBadField(t *testing.T) {
	f := open(t)
	tests := []struct {
		name   string
		req    apikeys.CreateRequest
		fields []string
	}{
		{"a bad name and no roles", apikeys.CreateRequest{Tenant: "acme", Name: "CI Deploy"}, []string{"name: must be 1-64", "roles: at least one role"}},
		{"a provider role on a tenant key", apikeys.CreateRequest{Tenant: "acme", Name: "x", Roles: []auth.Role{auth.RoleOperator}}, []string{"roles: tenant: must be empty"}},
		{"a tenant role on a provider key", apikeys.CreateRequest{Name: "x", Roles: []auth.Role{auth.RoleTenantViewer}}, []string{"roles: tenant: required"}},
		{"a lifetime above the maximum", apikeys.CreateRequest{Tenant: "acme", Name: "x", Roles: []auth.Role{auth.RoleTenantViewer}, TTL: 400 * 24 * time.Hour}, []string{"ttl: must be from 1m to 365d"}},
		{"the reserved tenant", apikeys.CreateRequest{Tenant: "provider", Name: "x", Roles: []auth.Role{auth.RoleTenantViewer}}, []string{"tenant:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := f.store.Create(t.Context(), tt.req)
			require.ErrorIs(t, err, apierr.ErrInvalidArgument)
			for _, w := range tt.fields {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestListPagesNewestFirstWithinATenant(t *testing.T) {
	f := open(t)
	var ids []string
	for i := range 5 {
		req := ci
		req.Name = "key-" + string(rune('a'+i))
		f.clock.Advance(time.Second)
		rec, _, err := f.store.Create(t.Context(), req)
		require.NoError(t, err)
		ids = append(ids, rec.ID)
	}
	_, _, err := f.store.Create(t.Context(), apikeys.CreateRequest{Tenant: "globex", Name: "other", Roles: []auth.Role{auth.RoleTenantViewer}})
	require.NoError(t, err)

	var got []string
	token := ""
	for {
		page, next, err := f.store.List("acme", 2, token)
		require.NoError(t, err)
		for _, r := range page {
			got = append(got, r.ID)
		}
		if next == "" {
			break
		}
		token = next
	}
	require.Equal(t, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}, got)
	_, _, err = f.store.List("acme", 1000, "")
	require.ErrorContains(t, err, "pageSize")
}

func TestParseTTL(t *testing.T) {
	for in, want := range map[string]time.Duration{"": 0, "90d": 90 * 24 * time.Hour, "720h": 720 * time.Hour, "1d12h": 36 * time.Hour} {
		got, err := apikeys.ParseTTL(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"soon", "-1h", "xd"} {
		_, err := apikeys.ParseTTL(bad)
		require.ErrorContains(t, err, "is not a duration", bad)
	}
	require.Equal(t, "365d", apikeys.FormatTTL(365*24*time.Hour))
}
