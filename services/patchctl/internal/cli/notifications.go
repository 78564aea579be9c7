package cli

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
)

func (c *CLI) subscriptionsList(ctx context.Context, o options, args []string) error {
	fs := newFlagSet("subscriptions list")
	tenant := tenantFlag(fs)
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	if err := required(fs.Name(), [2]string{"tenant", *tenant}); err != nil {
		return err
	}
	var resp notifierv1.ListSubscriptionsResponse
	if err := o.client.call(ctx, http.MethodGet, tenantPath(*tenant)+"/subscriptions", nil, &resp); err != nil {
		return err
	}
	return c.print(o, &resp, func(t *table) {
		t.row("SUBSCRIPTION", "CHANNEL", "MODE", "TARGET", "TYPES", "UPDATED BY")
		for _, s := range resp.GetSubscriptions() {
			target := s.GetUrl()
			switch {
			case len(s.GetEmailTo()) > 0:
				target = strings.Join(s.GetEmailTo(), ",")
			case s.GetTopicArn() != "":
				target = s.GetTopicArn()
			}
			types := strings.Join(s.GetFilter().GetEventTypes(), ",")
			if types == "" {
				types = "all"
			}
			t.row(s.GetSubscriptionId(), lower(s.GetChannel().String(), "NOTIFICATION_CHANNEL_"), lower(s.GetMode().String(), "NOTIFICATION_MODE_"),
				target, types, s.GetUpdatedBy())
		}
	})
}

func (c *CLI) deliveriesList(ctx context.Context, o options, args []string) error {
	fs := newFlagSet("deliveries list")
	tenant := tenantFlag(fs)
	sub := fs.String("subscription", "", "only this subscription's deliveries")
	status := fs.String("status", "", "only deliveries in this status: pending, sent or dead")
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	if err := required(fs.Name(), [2]string{"tenant", *tenant}); err != nil {
		return err
	}
	q := url.Values{}
	if *sub != "" {
		q.Set("subscriptionId", *sub)
	}
	switch *status {
	case "":
	case "pending", "sent", "dead":
		q.Set("status", "DELIVERY_STATUS_"+strings.ToUpper(*status))
	default:
		return usagef("%s: --status %q: must be pending, sent or dead", fs.Name(), *status)
	}
	path := tenantPath(*tenant) + "/deliveries"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	var resp notifierv1.ListDeliveriesResponse
	if err := o.client.call(ctx, http.MethodGet, path, nil, &resp); err != nil {
		return err
	}
	return c.print(o, &resp, func(t *table) {
		t.row("DELIVERY", "TYPE", "STATUS", "ATTEMPTS", "CREATED", "LAST ERROR")
		for _, d := range resp.GetDeliveries() {
			t.row(d.GetDeliveryId(), d.GetEventType(), lower(d.GetStatus().String(), "DELIVERY_STATUS_"), strconv.Itoa(int(d.GetAttempts())),
				timeCell(d.GetCreatedAt()), oneLine(d.GetLastError()))
		}
	})
}

func (c *CLI) deliveriesRedeliver(ctx context.Context, o options, args []string) error {
	fs := newFlagSet("deliveries redeliver")
	tenant := tenantFlag(fs)
	id := fs.String("delivery", "", "delivery id, <subscription>.<notification> (required)")
	if err := parseCommand(fs, args); err != nil {
		return err
	}
	if err := required(fs.Name(), [2]string{"tenant", *tenant}, [2]string{"delivery", *id}); err != nil {
		return err
	}
	var resp notifierv1.RedeliverDeliveryResponse
	path := tenantPath(*tenant) + "/deliveries/" + url.PathEscape(*id) + ":redeliver"
	if err := o.client.call(ctx, http.MethodPost, path, &notifierv1.RedeliverDeliveryRequest{}, &resp); err != nil {
		return err
	}
	return c.print(o, &resp, func(t *table) {
		t.line("delivery %s: %s, sent again", resp.GetDelivery().GetDeliveryId(), lower(resp.GetDelivery().GetStatus().String(), "DELIVERY_STATUS_"))
	})
}

func lower(s, prefix string) string { return strings.ToLower(strings.TrimPrefix(s, prefix)) }
