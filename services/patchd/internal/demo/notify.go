package demo

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
)

// The demo's subscriptions, made by the tenant admin: one digest per run and one message per
// failed job, both to an SNS topic of the emulator (patchd points the notifier's SNS channel at
// cloudsim), so the demo needs no receiver of its own.
const (
	digestSubscription   = "ops-digest"
	failuresSubscription = "ops-failures"
)

// subscribe makes (or replaces) the demo's subscriptions.
func (c client) subscribe(ctx context.Context) error {
	topic := "arn:aws:sns:us-east-1:100000000000:patchwave-" + c.cfg.Tenant
	for _, s := range []struct{ id, body string }{
		{digestSubscription, fmt.Sprintf(`{"subscription":{"channel":"NOTIFICATION_CHANNEL_SNS","mode":"NOTIFICATION_MODE_DIGEST","topicArn":%q}}`, topic)},
		{failuresSubscription, fmt.Sprintf(`{"subscription":{"channel":"NOTIFICATION_CHANNEL_SNS","mode":"NOTIFICATION_MODE_IMMEDIATE","topicArn":%q,`+
			`"filter":{"eventTypes":["install.failed","snapshot.failed"]}}}`, topic)},
	} {
		path := fmt.Sprintf("/v1/tenants/%s/subscriptions/%s", url.PathEscape(c.cfg.Tenant), s.id)
		var resp notifierv1.PutSubscriptionResponse
		if err := c.doAs(ctx, http.MethodPut, path, s.body, c.adminKey, &resp); err != nil {
			return fmt.Errorf("subscription %s: %w", s.id, err)
		}
	}
	fmt.Fprintf(c.cfg.Out, "Subscriptions of tenant %s: %s (one digest per run) and %s (each failed job), to SNS topic %s (GET /v1/tenants/%s/subscriptions)\n",
		c.cfg.Tenant, digestSubscription, failuresSubscription, topic, c.cfg.Tenant)
	return nil
}

// notifications waits (up to 15 seconds) until no delivery is pending, then prints the digests
// and counts the rest.
func (c client) notifications(ctx context.Context) ([]*notifierv1.Delivery, error) {
	path := fmt.Sprintf("/v1/tenants/%s/deliveries?pageSize=1000", url.PathEscape(c.cfg.Tenant))
	var resp notifierv1.ListDeliveriesResponse
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := c.get(ctx, path, &resp); err != nil {
			return nil, err
		}
		pending := 0
		for _, d := range resp.GetDeliveries() {
			if d.GetStatus() == notifierv1.DeliveryStatus_DELIVERY_STATUS_PENDING {
				pending++
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			break
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
	}
	ds := resp.GetDeliveries()
	counts := map[string]int{}
	fmt.Fprintf(c.cfg.Out, "\nNotifications (GET /v1/tenants/%s/deliveries)\n", c.cfg.Tenant)
	for i := len(ds) - 1; i >= 0; i-- {
		d := ds[i]
		st := strings.ToLower(strings.TrimPrefix(d.GetStatus().String(), "DELIVERY_STATUS_"))
		counts[d.GetSubscriptionId()+" "+st]++
		if d.GetSubscriptionId() == digestSubscription {
			fmt.Fprintf(c.cfg.Out, "  %s digest, %s: %s\n", st, strings.ToLower(strings.TrimPrefix(d.GetChannel().String(), "NOTIFICATION_CHANNEL_")), d.GetSummary())
		}
	}
	fmt.Fprintf(c.cfg.Out, "  %s: %d sent, %d pending, %d dead\n", failuresSubscription,
		counts[failuresSubscription+" sent"], counts[failuresSubscription+" pending"], counts[failuresSubscription+" dead"])
	return ds, nil
}
