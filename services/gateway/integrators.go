package gateway

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/natsauth"
	credentialsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/credentials/v1"
)

// NATSIntegrators makes libs/natsauth's issuer the gateway's Integrators: the REST routes of
// integrator credentials issue, list and revoke them on the NATS account it signs for. A nil
// issuer gives nil (those routes then answer 412).
func NATSIntegrators(x *natsauth.Integrators) Integrators {
	if x == nil {
		return nil
	}
	return natsIntegrators{x: x}
}

type natsIntegrators struct{ x *natsauth.Integrators }

func (n natsIntegrators) Issue(ctx context.Context, tenant, name string, ttl time.Duration, deliverNew bool) (*credentialsv1.IntegratorCredential, []byte, error) {
	in, err := n.x.Issue(ctx, natsauth.IssueRequest{Tenant: tenant, Name: name, TTL: ttl, DeliverNew: deliverNew})
	if err != nil {
		return nil, nil, err
	}
	return integratorMessage(in.Integrator), in.Creds, nil
}

func (n natsIntegrators) List(ctx context.Context, tenant string) ([]*credentialsv1.IntegratorCredential, error) {
	ins, err := n.x.List(ctx, tenant)
	if err != nil {
		return nil, err
	}
	out := make([]*credentialsv1.IntegratorCredential, len(ins))
	for i, in := range ins {
		out[i] = integratorMessage(in)
	}
	return out, nil
}

func (n natsIntegrators) Revoke(ctx context.Context, tenant, name string) error {
	return n.x.Revoke(ctx, tenant, name)
}

func integratorMessage(in natsauth.Integrator) *credentialsv1.IntegratorCredential {
	return &credentialsv1.IntegratorCredential{
		Tenant: in.Tenant, Name: in.Name, Consumer: in.Consumer, Stream: in.Stream, FilterSubject: in.FilterSubject,
		InboxPrefix: in.InboxPrefix, User: in.User, IssueTime: timestamppb.New(in.Issued), ExpireTime: timestamppb.New(in.Expires),
		Expired: in.Expired,
	}
}
