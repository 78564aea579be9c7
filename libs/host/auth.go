package host

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/grpcerr"
	"github.com/patchwave/patchwave/libs/mtls"
)

// The gRPC server's guard, the same for every service (the gateway is not the only one):
//
//   - the transport is mutual TLS (Config.GRPCTLS): a peer without a certificate of the
//     deployment's CA never gets a call through;
//   - a call of a patchwave.* method comes from the forwarder (Config.Forwarder, the gateway),
//     named so by its certificate, with the caller's identity in the metadata (libs/auth);
//     from any other peer it is PermissionDenied, whatever the metadata says;
//   - the method's declared rule is checked against that identity and the request
//     (auth.Authorize: permission, and the tenant the request names), and the handler finds
//     the identity in its context (auth.FromContext; the actor of a write is its subject).
//
// Methods of other services (grpc.health.v1) need the verified peer only.

// authorizeCall checks one call of method with req (nil for a stream before its first
// message) and returns the context carrying the caller's identity.
func authorizeCall(ctx context.Context, forwarder, method string, req proto.Message, checkTenant bool) (context.Context, error) {
	peer, err := mtls.PeerName(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	if !strings.HasPrefix(strings.TrimPrefix(method, "/"), auth.ServicePrefix) {
		return ctx, nil
	}
	rule, err := auth.RuleOf(method)
	if err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "refused: %v", err)
	}
	if peer != forwarder {
		return nil, status.Errorf(codes.PermissionDenied, "peer %q may not call %s: services take calls only from %q, which forwards the caller's identity", peer, method, forwarder)
	}
	md, _ := metadata.FromIncomingContext(ctx)
	id, err := auth.FromMetadata(md)
	if err != nil {
		return nil, status.Errorf(codes.Unauthenticated, "%s: %v", method, err)
	}
	if !checkTenant && rule.Scoped() {
		// A stream's tenant is checked on its first message (authorizedStream); the
		// permission now.
		rule.TenantField = ""
	}
	if err := auth.Authorize(id, rule, req); err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return auth.WithIdentity(ctx, id), nil
}

// unaryAuth is the guard of unary calls.
func unaryAuth(forwarder string) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
		msg, _ := req.(proto.Message)
		ctx, err := authorizeCall(ctx, forwarder, info.FullMethod, msg, true)
		if err != nil {
			return nil, err
		}
		return next(ctx, req)
	}
}

// streamAuth is the guard of streams: the peer, identity and permission when the stream
// opens, the tenant on each message the client sends.
func streamAuth(forwarder string) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
		ctx, err := authorizeCall(ss.Context(), forwarder, info.FullMethod, nil, false)
		if err != nil {
			return err
		}
		as := &authorizedStream{ServerStream: ss, ctx: ctx}
		if strings.HasPrefix(strings.TrimPrefix(info.FullMethod, "/"), auth.ServicePrefix) {
			if as.rule, err = auth.RuleOf(info.FullMethod); err != nil {
				return status.Errorf(codes.PermissionDenied, "refused: %v", err)
			}
			as.id = auth.FromContext(ctx)
		}
		return next(srv, as)
	}
}

type authorizedStream struct {
	grpc.ServerStream
	ctx  context.Context
	rule auth.Rule
	id   *auth.Identity
}

func (s *authorizedStream) Context() context.Context { return s.ctx }

func (s *authorizedStream) RecvMsg(m any) error {
	if err := s.ServerStream.RecvMsg(m); err != nil {
		return err
	}
	if s.id == nil || !s.rule.Scoped() {
		return nil
	}
	msg, _ := m.(proto.Message)
	return grpcerr.ToStatus(auth.Authorize(s.id, s.rule, msg))
}

// checkServedRules fails for a served patchwave.* method without a valid rule, so no server
// starts with a method nobody guards.
func checkServedRules(s *grpc.Server) error {
	var methods []string
	for _, name := range slices.Sorted(maps.Keys(s.GetServiceInfo())) {
		for _, m := range s.GetServiceInfo()[name].Methods {
			methods = append(methods, "/"+name+"/"+m.Name)
		}
	}
	if err := auth.CheckMethods(methods); err != nil {
		return fmt.Errorf("grpc: %w", err)
	}
	return nil
}

// errNoGRPCTLS is the configuration error of a gRPC server without mutual TLS.
var errNoGRPCTLS = errors.New("GRPCTLS: required with a gRPC server: services accept gRPC only from peers with a certificate of the deployment's CA (mtls.Files.ServerConfig)")
