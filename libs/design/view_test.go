package design_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/design"
	"github.com/patchwave/patchwave/libs/design/designtest"
	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/testkit"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

func TestParseKey(t *testing.T) {
	tests := []struct {
		key  string
		want design.ParsedKey
	}{
		{"tenants.acme", design.ParsedKey{Kind: design.KindTenant, Tenant: "acme"}},
		{"global", design.ParsedKey{Kind: design.KindGlobal}},
		{"requests.acme.sr-1", design.ParsedKey{Kind: design.KindRequest, Tenant: "acme", RequestID: "sr-1"}},
		{"tenants.", design.ParsedKey{}},
		{"tenants.a.b", design.ParsedKey{}},
		{"requests.acme", design.ParsedKey{}},
		{"other", design.ParsedKey{}},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, design.ParseKey(tt.key), tt.key)
	}
	require.Equal(t, "requests.acme.sr-1", design.RequestKey("acme", "sr-1"))
	require.Equal(t, "requests.acme.>", design.RequestFilter("acme"))
}

// runView runs a view until the test ends.
func runView(t *testing.T, v *design.View) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- v.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

func TestViewWaitsForTheBucketThenFollowsIt(t *testing.T) {
	n := testkit.StartNATS(t)
	js := n.JetStream(t)
	v, err := design.NewView(design.ViewConfig{JetStream: js, RetryInterval: 10 * time.Millisecond})
	require.NoError(t, err)
	runView(t, v)

	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	require.ErrorIs(t, v.RequireTenant(short, "acme"), apierr.ErrUnavailable, "nothing is known before the bucket exists")

	rev := designtest.PutTenant(t, js, "acme", &typesv1.TenantDesign{
		Accounts: []*typesv1.CloudAccount{{Provider: "aws", AccountId: "111111111111", RoleArn: "arn:aws:iam::111111111111:role/x", Regions: []string{"eu-west-1"}}},
		Waves:    []*typesv1.Wave{{Number: 1, Name: "first"}},
		Freezes:  []*typesv1.Freeze{{Id: "xmas"}},
	})
	require.NoError(t, v.WaitReady(t.Context()))
	require.NoError(t, v.WaitRevision(t.Context(), rev))
	require.NoError(t, v.RequireTenant(t.Context(), "acme"))
	require.ErrorIs(t, v.RequireTenant(t.Context(), "nobody"), apierr.ErrNotFound)
	w, ok := v.Wave("acme", 1)
	require.True(t, ok)
	require.Equal(t, "first", w.GetName())
	fs, _ := v.Freezes("acme")
	require.Len(t, fs, 1)
	accs, err := v.Accounts(t.Context(), "acme")
	require.NoError(t, err)
	require.Equal(t, []provider.Account{{Provider: "aws", ID: "111111111111", RoleARN: "arn:aws:iam::111111111111:role/x", Regions: []string{"eu-west-1"}}}, accs)

	// A change, a new tenant, a tombstone and a value that does not decode.
	kv, err := js.KeyValue(t.Context(), design.Bucket)
	require.NoError(t, err)
	designtest.PutTenant(t, js, "globex", nil)
	tomb, err := design.Marshal(&typesv1.TenantDesign{Tenant: &typesv1.Tenant{TenantId: "acme"}, Deleted: true})
	require.NoError(t, err)
	_, err = kv.Put(t.Context(), design.TenantKey("acme"), tomb)
	require.NoError(t, err)
	bad, err := kv.Put(t.Context(), design.TenantKey("broken"), []byte("{not json"))
	require.NoError(t, err)
	require.NoError(t, v.WaitRevision(t.Context(), bad))
	_, ok = v.Tenant("acme")
	require.False(t, ok, "a tombstone is an unknown tenant")
	_, ok = v.Tenant("broken")
	require.False(t, ok, "a value that does not decode is skipped")
	var ids []string
	for _, tn := range v.Tenants() {
		ids = append(ids, tn.Design.GetTenant().GetTenantId())
	}
	require.Equal(t, []string{"globex"}, ids)
	_, err = v.Accounts(t.Context(), "globex")
	require.ErrorIs(t, err, provider.ErrNotFound, "a tenant without accounts")
	require.Empty(t, v.Requests("globex"), "service requests are not watched unless asked for")
	require.Empty(t, v.GlobalFreezes())
}

func TestNewViewChecksItsConfig(t *testing.T) {
	_, err := design.NewView(design.ViewConfig{})
	require.ErrorContains(t, err, "JetStream: required")
	n := testkit.StartNATS(t)
	_, err = design.NewView(design.ViewConfig{JetStream: n.JetStream(t), RetryInterval: -time.Second})
	require.ErrorContains(t, err, "RetryInterval -1s: must not be negative")
}

func TestLateAccountsAnswerOnceStartedAndWaitUntilThen(t *testing.T) {
	n := testkit.StartNATS(t)
	js := n.JetStream(t)
	designtest.PutTenant(t, js, "acme", &typesv1.TenantDesign{
		Accounts: []*typesv1.CloudAccount{{Provider: "aws", AccountId: "111111111111", RoleArn: "arn:aws:iam::111111111111:role/x",
			ExternalId: "ext", Regions: []string{"eu-west-1"}}},
	})
	late := design.NewLateAccounts()
	short, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err := late.Accounts(short, "acme")
	require.ErrorIs(t, err, context.DeadlineExceeded, "before Start it waits within the caller's context")
	require.ErrorContains(t, err, "not being watched yet")

	ctx, stop := context.WithCancel(t.Context())
	defer stop()
	require.NoError(t, late.Start(ctx, js, nil))
	require.NoError(t, late.Start(ctx, js, nil), "a second start does nothing")
	accs, err := late.Accounts(t.Context(), "acme")
	require.NoError(t, err)
	require.Equal(t, []provider.Account{{Provider: "aws", ID: "111111111111", RoleARN: "arn:aws:iam::111111111111:role/x",
		ExternalID: "ext", Regions: []string{"eu-west-1"}}}, accs)
	_, err = late.Accounts(t.Context(), "nobody")
	require.ErrorIs(t, err, provider.ErrNotFound)
}
