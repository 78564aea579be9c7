// Package adapters connects the notifier to the outside: the delivery log in a store.Store and
// the webhook channel over HTTP.
package adapters

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

// DeliveryLog keeps every tenant's delivery log in a store. It is a read model of the
// NotificationSent and NotificationFailed events (Projection), so it is rebuilt from the stream
// when the store is in memory or was flushed; the handler also records each delivery as it
// happens, so the log is current as soon as the handler returns.
//
// Layout: hash "notifier:deliveries:<tenant>" maps "<notification>/<channel>" to the entry
// (JSON, without summary); hash "notifier:summaries:<tenant>" maps the notification id to its
// summary, because NotificationFailed carries no summary and every notification has a "log"
// delivery whose NotificationSent does; "notifier:deliveries-seq" is the projection checkpoint.
type DeliveryLog struct {
	st store.Store
}

// NewDeliveryLog returns the delivery log kept in st.
func NewDeliveryLog(st store.Store) *DeliveryLog { return &DeliveryLog{st: st} }

const seqKey = "notifier:deliveries-seq"

func deliveriesKey(tenant string) string { return "notifier:deliveries:" + tenant }
func summariesKey(tenant string) string  { return "notifier:summaries:" + tenant }

// entry is a delivery as stored: the summary lives in the summaries hash.
type entry struct {
	ID           string    `json:"id"`
	Channel      string    `json:"channel"`
	AboutEventID string    `json:"about_event_id"`
	Status       string    `json:"status"`
	Error        string    `json:"error,omitempty"`
	Time         time.Time `json:"time"`
}

// Record stores a delivery, replacing the entry of the same notification and channel.
func (l *DeliveryLog) Record(ctx context.Context, tenant string, d domain.Delivery) error {
	b, err := json.Marshal(entry{
		ID: d.ID, Channel: d.Channel, AboutEventID: d.AboutEventID,
		Status: d.Status, Error: d.Error, Time: d.Time.UTC(),
	})
	if err != nil {
		return fmt.Errorf("record delivery %s: %w", domain.Key(d.ID, d.Channel), err)
	}
	if d.Summary != "" {
		if err := l.st.HSet(ctx, summariesKey(tenant), map[string][]byte{d.ID: []byte(d.Summary)}); err != nil {
			return fmt.Errorf("record delivery %s: %w", domain.Key(d.ID, d.Channel), err)
		}
	}
	if err := l.st.HSet(ctx, deliveriesKey(tenant), map[string][]byte{domain.Key(d.ID, d.Channel): b}); err != nil {
		return fmt.Errorf("record delivery %s: %w", domain.Key(d.ID, d.Channel), err)
	}
	return nil
}

// List returns the tenant's deliveries, oldest first (newest last); entries of the same time
// are ordered by notification id and channel.
func (l *DeliveryLog) List(ctx context.Context, tenant string) ([]domain.Delivery, error) {
	raw, err := l.st.HGetAll(ctx, deliveriesKey(tenant))
	if err != nil {
		return nil, fmt.Errorf("list deliveries of %s: %w", tenant, err)
	}
	summaries, err := l.st.HGetAll(ctx, summariesKey(tenant))
	if err != nil {
		return nil, fmt.Errorf("list deliveries of %s: %w", tenant, err)
	}
	out := make([]domain.Delivery, 0, len(raw))
	for field, b := range raw {
		var e entry
		if err := json.Unmarshal(b, &e); err != nil {
			return nil, fmt.Errorf("list deliveries of %s: entry %s: %w", tenant, field, err)
		}
		out = append(out, domain.Delivery{
			ID: e.ID, Channel: e.Channel, AboutEventID: e.AboutEventID, Summary: string(summaries[e.ID]),
			Status: e.Status, Error: e.Error, Time: e.Time,
		})
	}
	slices.SortFunc(out, func(a, b domain.Delivery) int {
		return cmp.Or(a.Time.Compare(b.Time), cmp.Compare(a.ID, b.ID), cmp.Compare(channelRank(a.Channel), channelRank(b.Channel)), cmp.Compare(a.Channel, b.Channel))
	})
	return out, nil
}

// channelRank orders the channels of one notification in the order they are delivered.
func channelRank(ch string) int {
	if ch == domain.ChannelLog {
		return 0
	}
	return 1
}

// Projection returns the read model that rebuilds the log from NotificationSent and
// NotificationFailed events, resuming after the checkpoint kept in the store.
func (l *DeliveryLog) Projection(name string) bus.ProjectionSpec {
	return bus.ProjectionSpec{
		Name: name,
		Subjects: []string{
			events.Pattern[*eventsv1.NotificationSent](),
			events.Pattern[*eventsv1.NotificationFailed](),
		},
		Checkpoint: func(ctx context.Context) (uint64, error) {
			v, found, err := l.st.Get(ctx, seqKey)
			if err != nil || !found {
				return 0, err
			}
			return strconv.ParseUint(string(v), 10, 64)
		},
		Apply: func(ctx context.Context, ev *events.Event, _ bool) error {
			d, ok := deliveryOf(ev)
			if ok {
				if err := l.Record(ctx, ev.Tenant, d); err != nil {
					return err
				}
			}
			return l.st.Set(ctx, seqKey, []byte(strconv.FormatUint(ev.Sequence, 10)))
		},
	}
}

// deliveryOf turns a NotificationSent or NotificationFailed event into its log entry.
func deliveryOf(ev *events.Event) (domain.Delivery, bool) {
	switch m := ev.Data.(type) {
	case *eventsv1.NotificationSent:
		return domain.Delivery{
			ID: m.GetNotificationId(), Channel: m.GetChannel(), AboutEventID: m.GetAboutEventId(),
			Summary: m.GetSummary(), Status: domain.StatusSent, Time: ev.Time,
		}, true
	case *eventsv1.NotificationFailed:
		return domain.Delivery{
			ID: m.GetNotificationId(), Channel: m.GetChannel(), AboutEventID: m.GetAboutEventId(),
			Status: domain.StatusFailed, Error: m.GetReason(), Time: ev.Time,
		}, true
	}
	return domain.Delivery{}, false
}
