package httpapi

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// localConn is a grpc.ClientConnInterface over a service implemented in this process (the
// gateway's own CredentialsService): grpc-gateway calls it like a remote service, through the same
// guard (authorization, audit), and the handler runs with the call's outgoing metadata as its
// incoming metadata, as it would behind a real connection. Only unary methods are served.
type localConn struct {
	srv     any
	methods map[string]grpc.MethodDesc
	guard   grpc.UnaryClientInterceptor
}

var _ grpc.ClientConnInterface = (*localConn)(nil)

// newLocalConn serves desc's methods with srv behind guard.
func newLocalConn(desc *grpc.ServiceDesc, srv any, guard grpc.UnaryClientInterceptor) *localConn {
	c := &localConn{srv: srv, methods: map[string]grpc.MethodDesc{}, guard: guard}
	for _, m := range desc.Methods {
		c.methods["/"+desc.ServiceName+"/"+m.MethodName] = m
	}
	return c
}

// Invoke runs the guard, then the method's handler.
func (c *localConn) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return c.guard(ctx, method, args, reply, nil, c.invoke, opts...)
}

func (c *localConn) invoke(ctx context.Context, method string, args, reply any, _ *grpc.ClientConn, opts ...grpc.CallOption) error {
	md, ok := c.methods[method]
	if !ok {
		return status.Errorf(codes.Unimplemented, "method %s is not served here", method)
	}
	in, okIn := args.(proto.Message)
	out, okOut := reply.(proto.Message)
	if !okIn || !okOut {
		return status.Errorf(codes.Internal, "method %s: request and reply must be protobuf messages", method)
	}
	outgoing, _ := metadata.FromOutgoingContext(ctx)
	stream := &headerStream{method: method}
	sctx := grpc.NewContextWithServerTransportStream(metadata.NewIncomingContext(ctx, outgoing.Copy()), stream)
	resp, err := md.Handler(c.srv, sctx, func(m any) error {
		pm, ok := m.(proto.Message)
		if !ok {
			return fmt.Errorf("request of %s is not a protobuf message", method)
		}
		proto.Merge(pm, in)
		return nil
	}, nil)
	for _, o := range opts {
		if h, ok := o.(grpc.HeaderCallOption); ok {
			*h.HeaderAddr = stream.header
		}
	}
	if err != nil {
		return err
	}
	if m, ok := resp.(proto.Message); ok {
		proto.Merge(out, m)
	}
	return nil
}

// NewStream is not served: the local services are unary.
func (c *localConn) NewStream(context.Context, *grpc.StreamDesc, string, ...grpc.CallOption) (grpc.ClientStream, error) {
	return nil, status.Error(codes.Unimplemented, "streams are not served in process")
}

// headerStream collects the headers a handler sets (grpc.SetHeader).
type headerStream struct {
	method string
	header metadata.MD
}

func (s *headerStream) Method() string { return s.method }

func (s *headerStream) SetHeader(md metadata.MD) error {
	s.header = metadata.Join(s.header, md)
	return nil
}

func (s *headerStream) SendHeader(md metadata.MD) error { return s.SetHeader(md) }

func (s *headerStream) SetTrailer(metadata.MD) error { return nil }
