package host_test

import (
	"context"
	"crypto/tls"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/mtls"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	designv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/design/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// designAPI serves two methods of the design API and answers the caller's subject as the
// wave's name, so a test sees what identity reached the handler.
type designAPI struct {
	designv1.UnimplementedDesignServiceServer
}

func (designAPI) Name() string            { return "design-api" }
func (designAPI) Register(*bus.Bus) error { return nil }
func (designAPI) Busless()                {}
func (d designAPI) RegisterGRPC(s grpc.ServiceRegistrar) {
	designv1.RegisterDesignServiceServer(s, d)
}

func (designAPI) GetWave(ctx context.Context, req *designv1.GetWaveRequest) (*designv1.GetWaveResponse, error) {
	return &designv1.GetWaveResponse{Wave: &typesv1.Wave{Number: req.GetWave(), Name: auth.Actor(ctx)}}, nil
}

func (designAPI) PutWave(ctx context.Context, req *designv1.PutWaveRequest) (*designv1.PutWaveResponse, error) {
	return &designv1.PutWaveResponse{Wave: &typesv1.Wave{Number: req.GetWave(), Name: auth.Actor(ctx)}}, nil
}

// startGuarded hosts designAPI behind mutual TLS and returns its address and the test PKI.
func startGuarded(t *testing.T) (string, map[string]mtls.Files) {
	t.Helper()
	pki := stagetest.PKI(t)
	ctx, cancel := context.WithCancel(t.Context())
	h, err := host.New(ctx, host.Config{Name: "guarded", GRPCAddr: "127.0.0.1:0", GRPCTLS: stagetest.ServerTLS(t, pki[mtls.Services])}, designAPI{})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	return h.GRPCAddr(), pki
}

func TestGRPCTakesCallsOnlyFromTheGatewayWithTheCallersIdentity(t *testing.T) {
	addr, pki := startGuarded(t)
	getAcme := &designv1.GetWaveRequest{Tenant: "acme", Wave: 1}
	admin := auth.Identity{Subject: "dana@acme", Tenant: "acme", Roles: []auth.Role{auth.RoleTenantAdmin}, CredentialID: "k1", CredentialKind: auth.KindAPIKey}
	viewer := auth.Identity{Subject: "vic@acme", Tenant: "acme", Roles: []auth.Role{auth.RoleTenantViewer}}

	gateway := designv1.NewDesignServiceClient(stagetest.Dial(t, addr, pki[mtls.Gateway]))
	intruder := stagetest.Dial(t, addr, pki[stagetest.Intruder])

	tests := []struct {
		name     string
		call     func(ctx context.Context) (*typesv1.Wave, error)
		ctx      context.Context
		wantCode codes.Code
		wantMsg  string
		wantName string
	}{
		{
			name: "the gateway's call acts as the identity it forwards", ctx: stagetest.As(t.Context(), admin),
			call: func(ctx context.Context) (*typesv1.Wave, error) {
				r, err := gateway.GetWave(ctx, getAcme)
				return r.GetWave(), err
			},
			wantName: "dana@acme",
		},
		{
			name: "a tenant's identity gets nothing of another tenant", ctx: stagetest.As(t.Context(), admin),
			call: func(ctx context.Context) (*typesv1.Wave, error) {
				r, err := gateway.GetWave(ctx, &designv1.GetWaveRequest{Tenant: "globex", Wave: 1})
				return r.GetWave(), err
			},
			wantCode: codes.NotFound, wantMsg: "tenant globex is not in the service design",
		},
		{
			name: "a viewer changes nothing", ctx: stagetest.As(t.Context(), viewer),
			call: func(ctx context.Context) (*typesv1.Wave, error) {
				r, err := gateway.PutWave(ctx, &designv1.PutWaveRequest{Tenant: "acme", Wave: 1})
				return r.GetWave(), err
			},
			wantCode: codes.PermissionDenied, wantMsg: "needs permission design.write",
		},
		{
			name: "a call without an identity is unauthenticated",
			ctx:  metadata.AppendToOutgoingContext(t.Context(), auth.MetadataSubject, ""),
			call: func(ctx context.Context) (*typesv1.Wave, error) {
				// The test connection adds the operator unless a subject is named; an empty
				// one is no identity.
				r, err := gateway.GetWave(ctx, getAcme)
				return r.GetWave(), err
			},
			wantCode: codes.Unauthenticated, wantMsg: "no caller identity",
		},
		{
			name: "a forged identity from a peer that is not the gateway is refused", ctx: stagetest.As(t.Context(), stagetest.Operator),
			call: func(ctx context.Context) (*typesv1.Wave, error) {
				r, err := designv1.NewDesignServiceClient(intruder).GetWave(ctx, getAcme)
				return r.GetWave(), err
			},
			wantCode: codes.PermissionDenied, wantMsg: `peer "intruder" may not call`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := tt.call(tt.ctx)
			if tt.wantCode == codes.OK {
				require.NoError(t, err)
				require.Equal(t, tt.wantName, w.GetName())
				return
			}
			require.Equal(t, tt.wantCode, status.Code(err), "%v", err)
			require.Contains(t, status.Convert(err).Message(), tt.wantMsg)
		})
	}

	// Any peer of the CA may ask for health.
	hr, err := healthpb.NewHealthClient(intruder).Check(t.Context(), &healthpb.HealthCheckRequest{})
	require.NoError(t, err)
	require.Equal(t, healthpb.HealthCheckResponse_SERVING, hr.GetStatus())
}

func TestGRPCRefusesAPeerWithoutAClientCertificate(t *testing.T) {
	addr, pki := startGuarded(t)
	tc, err := pki[mtls.Gateway].ClientConfig("127.0.0.1")
	require.NoError(t, err)
	noCert := tc.Clone()
	noCert.GetClientCertificate = nil
	for name, creds := range map[string]*tls.Config{"no client certificate": noCert} {
		conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(creds)))
		require.NoError(t, err)
		_, err = healthpb.NewHealthClient(conn).Check(t.Context(), &healthpb.HealthCheckRequest{})
		require.Error(t, err, name)
		require.Equal(t, codes.Unavailable, status.Code(err), "the handshake fails: %v", err)
		require.NoError(t, conn.Close())
	}
}

func TestHostRefusesAGRPCServerWithoutMutualTLS(t *testing.T) {
	_, err := host.New(t.Context(), host.Config{Name: "open", GRPCAddr: "127.0.0.1:0"}, designAPI{})
	require.ErrorContains(t, err, "GRPCTLS: required")

	pki := stagetest.PKI(t)
	lax := stagetest.ServerTLS(t, pki[mtls.Services])
	lax.ClientAuth = tls.VerifyClientCertIfGiven
	_, err = host.New(t.Context(), host.Config{Name: "lax", GRPCAddr: "127.0.0.1:0", GRPCTLS: lax}, designAPI{})
	require.ErrorContains(t, err, "must require and verify client certificates")
}

// unruled serves a patchwave.* service the protobuf registry does not know, so it has no rule.
type unruled struct{ designAPI }

func (unruled) RegisterGRPC(s grpc.ServiceRegistrar) {
	s.RegisterService(&grpc.ServiceDesc{
		ServiceName: "patchwave.rogue.v1.RogueService",
		HandlerType: (*any)(nil),
		Methods:     []grpc.MethodDesc{{MethodName: "Anything", Handler: nil}},
	}, struct{}{})
}

func TestHostRefusesToServeAMethodWithoutARule(t *testing.T) {
	pki := stagetest.PKI(t)
	_, err := host.New(t.Context(), host.Config{Name: "rogue", GRPCAddr: "127.0.0.1:0", GRPCTLS: stagetest.ServerTLS(t, pki[mtls.Services])}, unruled{})
	require.ErrorContains(t, err, "rpc /patchwave.rogue.v1.RogueService/Anything: not in the protobuf registry")
}
