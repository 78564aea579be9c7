// Package ports serves the notifier's application over gRPC (NotifierService).
package ports

import (
	"context"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/grpcerr"
	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/app"
	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

// GRPCServer serves notifierv1.NotifierService.
type GRPCServer struct {
	notifierv1.UnimplementedNotifierServiceServer
	app *app.App
}

// NewGRPCServer returns the API over a.
func NewGRPCServer(a *app.App) *GRPCServer { return &GRPCServer{app: a} }

// PutSubscription implements notifierv1.NotifierServiceServer; the actor is the caller's subject.
func (s *GRPCServer) PutSubscription(ctx context.Context, req *notifierv1.PutSubscriptionRequest) (*notifierv1.PutSubscriptionResponse, error) {
	sub, secret, err := s.app.PutSubscription(ctx, req.GetTenant(), req.GetSubscriptionId(), req.GetSubscription(), req.GetRevision(), auth.Actor(ctx))
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &notifierv1.PutSubscriptionResponse{Subscription: sub, Secret: secret}, nil
}

// GetSubscription implements notifierv1.NotifierServiceServer.
func (s *GRPCServer) GetSubscription(ctx context.Context, req *notifierv1.GetSubscriptionRequest) (*notifierv1.GetSubscriptionResponse, error) {
	sub, err := s.app.GetSubscription(ctx, req.GetTenant(), req.GetSubscriptionId())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &notifierv1.GetSubscriptionResponse{Subscription: sub}, nil
}

// ListSubscriptions implements notifierv1.NotifierServiceServer.
func (s *GRPCServer) ListSubscriptions(ctx context.Context, req *notifierv1.ListSubscriptionsRequest) (*notifierv1.ListSubscriptionsResponse, error) {
	subs, err := s.app.ListSubscriptions(ctx, req.GetTenant())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &notifierv1.ListSubscriptionsResponse{Subscriptions: subs}, nil
}

// DeleteSubscription implements notifierv1.NotifierServiceServer.
func (s *GRPCServer) DeleteSubscription(ctx context.Context, req *notifierv1.DeleteSubscriptionRequest) (*notifierv1.DeleteSubscriptionResponse, error) {
	if err := s.app.DeleteSubscription(ctx, req.GetTenant(), req.GetSubscriptionId(), auth.Actor(ctx)); err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &notifierv1.DeleteSubscriptionResponse{}, nil
}

// ListDeliveries implements notifierv1.NotifierServiceServer.
func (s *GRPCServer) ListDeliveries(ctx context.Context, req *notifierv1.ListDeliveriesRequest) (*notifierv1.ListDeliveriesResponse, error) {
	status := ""
	switch req.GetStatus() {
	case notifierv1.DeliveryStatus_DELIVERY_STATUS_UNSPECIFIED:
	case notifierv1.DeliveryStatus_DELIVERY_STATUS_PENDING:
		status = domain.StatusPending
	case notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT:
		status = domain.StatusSent
	case notifierv1.DeliveryStatus_DELIVERY_STATUS_DEAD:
		status = domain.StatusDead
	default:
		return nil, grpcerr.ToStatus(apierr.Violations{{Field: "status", Rule: "must be PENDING, SENT or DEAD"}}.Err())
	}
	ds, err := s.app.ListDeliveries(ctx, req.GetTenant(), req.GetSubscriptionId(), status, int(req.GetPageSize()))
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	out := &notifierv1.ListDeliveriesResponse{Deliveries: make([]*notifierv1.Delivery, len(ds))}
	for i, d := range ds {
		out.Deliveries[i] = ToProto(d)
	}
	return out, nil
}

// RedeliverDelivery implements notifierv1.NotifierServiceServer.
func (s *GRPCServer) RedeliverDelivery(ctx context.Context, req *notifierv1.RedeliverDeliveryRequest) (*notifierv1.RedeliverDeliveryResponse, error) {
	d, err := s.app.Redeliver(ctx, req.GetTenant(), req.GetDeliveryId())
	if err != nil {
		return nil, grpcerr.ToStatus(err)
	}
	return &notifierv1.RedeliverDeliveryResponse{Delivery: ToProto(d)}, nil
}

// ToProto is the API form of a delivery.
func ToProto(d domain.Delivery) *notifierv1.Delivery {
	return &notifierv1.Delivery{
		Tenant: d.Tenant, DeliveryId: d.ID(), SubscriptionId: d.SubscriptionID, NotificationId: d.Notification.ID,
		Channel: channelOf(d.Channel), EventType: d.Notification.Type, AboutEventId: d.Notification.AboutEventID,
		Summary: d.Notification.Summary, Status: statusOf(d.Status), Attempts: int32(d.Attempts),
		LastError: d.LastError, CreatedAt: ts(d.CreatedAt), NextAttemptAt: ts(d.NextAttemptAt), SentAt: ts(d.SentAt),
	}
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func channelOf(name string) typesv1.NotificationChannel {
	for c := range typesv1.NotificationChannel_name {
		if domain.ChannelName(typesv1.NotificationChannel(c)) == name {
			return typesv1.NotificationChannel(c)
		}
	}
	return typesv1.NotificationChannel_NOTIFICATION_CHANNEL_UNSPECIFIED
}

func statusOf(s string) notifierv1.DeliveryStatus {
	switch s {
	case domain.StatusPending:
		return notifierv1.DeliveryStatus_DELIVERY_STATUS_PENDING
	case domain.StatusSent:
		return notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT
	case domain.StatusDead:
		return notifierv1.DeliveryStatus_DELIVERY_STATUS_DEAD
	}
	return notifierv1.DeliveryStatus_DELIVERY_STATUS_UNSPECIFIED
}
