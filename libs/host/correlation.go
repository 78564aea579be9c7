package host

import (
	"context"

	"google.golang.org/grpc/metadata"

	"github.com/patchwave/patchwave/libs/bus"
)

// CorrelationHeader is the gRPC metadata key (and HTTP header, through the gateway) that carries
// a caller's correlation id.
const CorrelationHeader = "x-correlation-id"

func withIncomingCorrelation(ctx context.Context) context.Context {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(CorrelationHeader); len(v) > 0 && v[0] != "" && len(v[0]) <= 128 {
			return bus.WithCorrelationID(ctx, v[0])
		}
	}
	return bus.WithCorrelationID(ctx, bus.NewCorrelationID())
}
