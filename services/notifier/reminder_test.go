package notifier_test

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/design/designtest"
	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier"
)

// clock is a test clock that only moves when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

func TestAReminderIsSentOnceTheConfiguredTimeBeforeAWavesWindowOpens(t *testing.T) {
	berlin, err := time.LoadLocation("Europe/Berlin")
	require.NoError(t, err)
	opening := time.Date(2027, 1, 12, 2, 0, 0, 0, berlin) // wave 1: second Tuesday, 02:00 Berlin
	clk := &clock{t: opening.Add(-3 * time.Hour)}
	cfg := fastRetry(notifier.Config{ReminderInterval: 20 * time.Millisecond})
	e := start(t, cfg, notifier.Deps{Clock: clk.now})
	designtest.PutTenant(t, e.nt.JetStream(t), tenant, &typesv1.TenantDesign{Waves: []*typesv1.Wave{
		{Number: 1, Schedule: &typesv1.Schedule{WeekOfMonth: 2, DayOfWeek: "TUESDAY", StartTime: "02:00", EndTime: "06:00", TimeZone: "Europe/Berlin"}},
		{Number: 2, Paused: true, Schedule: &typesv1.Schedule{WeekOfMonth: 2, DayOfWeek: "TUESDAY", StartTime: "02:30", EndTime: "06:00", TimeZone: "Europe/Berlin"}},
	}})
	wh := newHook(t)
	e.put(t, &typesv1.Subscription{SubscriptionId: "remind", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_WEBHOOK,
		Mode: typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE, Url: wh.srv.URL, ReminderMinutes: 120,
		Filter: &typesv1.SubscriptionFilter{EventTypes: []string{"wave.reminder"}}})

	time.Sleep(150 * time.Millisecond) // several reminder ticks, three hours before: too early
	assert.Empty(t, e.deliveries(t, "remind"))

	clk.add(90 * time.Minute) // 90 minutes before the window: within the two hours
	ds := e.waitStatus(t, "remind", 1, notifierv1.DeliveryStatus_DELIVERY_STATUS_SENT)
	assert.Equal(t, "wave.reminder", ds[0].GetEventType())
	clk.add(30 * time.Minute)
	time.Sleep(150 * time.Millisecond)
	require.Len(t, e.deliveries(t, "remind"), 1, "one reminder per window, however often the loop runs")
	got := wh.received()
	require.Len(t, got, 1)
	assert.EqualValues(t, 1, got[0].Notification.Wave, "the paused wave 2 has no window to remind of")
	assert.True(t, opening.Equal(got[0].Notification.At))
	assert.Contains(t, got[0].Summary, "acme wave 1: the maintenance window opens at 2027-01-12T01:00:00Z")
}
