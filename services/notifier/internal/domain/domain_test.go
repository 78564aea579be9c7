package domain_test

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/events"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

func TestEachRunEndHasItsOwnType(t *testing.T) {
	tests := []struct {
		state    typesv1.RunState
		failed   int32
		typ      string
		severity domain.Severity
		failure  bool
	}{
		{typesv1.RunState_RUN_STATE_COMPLETED, 0, domain.TypeRunCompleted, domain.SeverityInfo, false},
		{typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, 3, domain.TypeRunCompleted, domain.SeverityWarning, true},
		{typesv1.RunState_RUN_STATE_HALTED, 9, domain.TypeRunHalted, domain.SeverityCritical, true},
		{typesv1.RunState_RUN_STATE_HELD, 0, domain.TypeRunHeld, domain.SeverityWarning, false},
		{typesv1.RunState_RUN_STATE_WAITING_APPROVAL, 0, domain.TypeRunWaiting, domain.SeverityWarning, false},
		{typesv1.RunState_RUN_STATE_SKIPPED_FROZEN, 0, domain.TypeRunSkipped, domain.SeverityWarning, false},
	}
	for _, tt := range tests {
		t.Run(tt.state.String(), func(t *testing.T) {
			ev := events.MustNew("acme", "run-1", &eventsv1.RunCompleted{Tenant: "acme", RunId: "run-1", Wave: 1, State: tt.state, Total: 10, Succeeded: 10 - tt.failed, Failed: tt.failed})
			n, ok, err := domain.Notify(ev)
			require.NoError(t, err)
			require.True(t, ok)
			assert.Equal(t, tt.typ, n.Type)
			assert.Equal(t, tt.severity, n.Severity)
			assert.Equal(t, tt.failure, n.Failure)
			assert.True(t, n.IsRunEnd())
			want := domain.NotificationID(ev.ID)
			if tt.typ != domain.TypeRunCompleted {
				want = domain.RunFateID("acme", "run-1", tt.typ)
			}
			assert.Equal(t, want, n.ID, "the id comes from the event (or the run's fate), so a replay makes the same notification")
		})
	}
}

func TestAnEventTheNotifierDoesNotNotifyIsIgnoredAndOneWithoutTenantIsMalformed(t *testing.T) {
	_, ok, err := domain.Notify(events.MustNew("acme", "x", &eventsv1.SnapshotCreated{Tenant: "acme"}))
	require.NoError(t, err)
	assert.False(t, ok)
	ev := events.MustNew("acme", "x", &eventsv1.InstallFailed{Tenant: "acme"})
	ev.Tenant = ""
	_, _, err = domain.Notify(ev)
	require.Error(t, err)
}

func TestAFilterTakesOnlyWhatItNames(t *testing.T) {
	failed := domain.Notification{Type: domain.TypeInstallFailed, Severity: domain.SeverityCritical, Failure: true, Wave: 2}
	ok := domain.Notification{Type: domain.TypeInstallSucceeded, Severity: domain.SeverityInfo, Wave: 1}
	digest := domain.Notification{Type: domain.TypeRunDigest, Severity: domain.SeverityWarning, Wave: 1, Failure: true}
	imm := func(f *typesv1.SubscriptionFilter) *typesv1.Subscription {
		return &typesv1.Subscription{Mode: typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE, Filter: f}
	}
	assert.True(t, domain.Matches(imm(nil), failed))
	assert.True(t, domain.Matches(imm(nil), ok))
	assert.False(t, domain.Matches(imm(nil), digest), "an immediate subscription gets no digest")
	assert.True(t, domain.Matches(&typesv1.Subscription{Mode: typesv1.NotificationMode_NOTIFICATION_MODE_DIGEST}, digest))
	assert.False(t, domain.Matches(&typesv1.Subscription{Mode: typesv1.NotificationMode_NOTIFICATION_MODE_DIGEST}, failed), "a digest subscription gets no per-VM message")
	assert.False(t, domain.Matches(imm(&typesv1.SubscriptionFilter{FailuresOnly: true}), ok))
	assert.True(t, domain.Matches(imm(&typesv1.SubscriptionFilter{FailuresOnly: true}), failed))
	assert.False(t, domain.Matches(imm(&typesv1.SubscriptionFilter{Waves: []int32{1}}), failed))
	assert.False(t, domain.Matches(imm(&typesv1.SubscriptionFilter{MinSeverity: typesv1.NotificationSeverity_NOTIFICATION_SEVERITY_WARNING}), ok))
	assert.True(t, domain.Matches(imm(&typesv1.SubscriptionFilter{MinSeverity: typesv1.NotificationSeverity_NOTIFICATION_SEVERITY_WARNING}), failed))
	assert.False(t, domain.Matches(imm(&typesv1.SubscriptionFilter{EventTypes: []string{"run.completed"}}), failed))
	assert.False(t, domain.Matches(&typesv1.Subscription{Mode: typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE, Disabled: true}, failed))
}

func TestQuietHoursHoldADeliveryToTheirEnd(t *testing.T) {
	paris, err := time.LoadLocation("Europe/Paris")
	require.NoError(t, err)
	night := &typesv1.Subscription{QuietHours: &typesv1.QuietHours{Start: "22:00", End: "07:30", TimeZone: "Europe/Paris"}}
	lunch := &typesv1.Subscription{QuietHours: &typesv1.QuietHours{Start: "12:00", End: "13:00"}}
	tests := []struct {
		name string
		sub  *typesv1.Subscription
		at   time.Time
		want time.Time
	}{
		{"before midnight goes to the next morning", night, time.Date(2026, 12, 2, 23, 15, 0, 0, paris), time.Date(2026, 12, 3, 7, 30, 0, 0, paris)},
		{"after midnight goes to the same morning", night, time.Date(2026, 12, 3, 2, 0, 0, 0, paris), time.Date(2026, 12, 3, 7, 30, 0, 0, paris)},
		{"outside goes at once", night, time.Date(2026, 12, 3, 9, 0, 0, 0, paris), time.Date(2026, 12, 3, 9, 0, 0, 0, paris)},
		{"the end itself is outside", night, time.Date(2026, 12, 3, 7, 30, 0, 0, paris), time.Date(2026, 12, 3, 7, 30, 0, 0, paris)},
		{"a daytime interval in UTC", lunch, time.Date(2026, 12, 3, 12, 10, 0, 0, time.UTC), time.Date(2026, 12, 3, 13, 0, 0, 0, time.UTC)},
		{"no quiet hours", &typesv1.Subscription{}, time.Date(2026, 12, 3, 3, 0, 0, 0, time.UTC), time.Date(2026, 12, 3, 3, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.True(t, tt.want.Equal(domain.NotBefore(tt.sub, tt.at)), "got %s, want %s", domain.NotBefore(tt.sub, tt.at), tt.want)
		})
	}
}

func TestRetriesBackOffExponentiallyWithJitterForHours(t *testing.T) {
	r := domain.Retry{Initial: 30 * time.Second, Max: 30 * time.Minute, Attempts: 12}
	rnd := rand.New(rand.NewPCG(1, 2))
	for attempt := 1; attempt <= 11; attempt++ {
		nominal := min(30*time.Second<<(attempt-1), 30*time.Minute)
		for range 50 {
			d := r.Backoff(attempt, rnd)
			assert.GreaterOrEqual(t, d, nominal/2)
			assert.LessOrEqual(t, d, nominal)
		}
	}
	assert.Greater(t, r.Total(), 3*time.Hour, "the default schedule keeps trying for hours")
}

func TestTemplatesAreCheckedAndTheDefaultsRenderADigest(t *testing.T) {
	require.NoError(t, domain.CheckTemplate("text", "{{.Summary}} {{.Links.Run}}"))
	require.Error(t, domain.CheckTemplate("text", "{{.Secret}}"), "there is no secret to print")
	require.Error(t, domain.CheckTemplate("html", "{{.Summary"))
	for _, slow := range []string{`{{range 1000000000}}x{{end}}`, `{{define "a"}}{{template "a"}}{{end}}{{template "a"}}`, `{{block "b" .}}{{end}}`} {
		require.Error(t, domain.CheckTemplate("text", slow), slow)
		require.Error(t, domain.CheckTemplate("html", slow), slow)
	}
	n := domain.Notification{
		Type: domain.TypeRunDigest, Severity: domain.SeverityWarning, Tenant: "acme", Wave: 1, RunID: "run-1",
		Summary: "acme wave 1 run run-1 completed with errors: 8 succeeded, 2 failed",
		Digest:  &domain.Digest{Total: 10, Succeeded: 8, Failed: 2, Failures: []domain.Failure{{InstanceID: "i-1", Stage: "install", Reason: "<script>"}}, MoreFailures: 1},
	}
	m, err := domain.Render(domain.NewView(n, "https://pw.example"), false, "", "", "")
	require.NoError(t, err)
	assert.Equal(t, "[Patchwave] acme wave 1 run run-1 completed with errors: 8 succeeded, 2 failed", m.Subject)
	assert.Contains(t, m.Text, "- i-1 (install): <script>")
	assert.Contains(t, m.Text, "... and 1 more")
	assert.Contains(t, m.Text, "Run: https://pw.example/v1/tenants/acme/runs/run-1")
	assert.Contains(t, m.HTML, "&lt;script&gt;", "the HTML part escapes")
	assert.NotContains(t, m.HTML, "<script>")
	s, err := domain.Render(domain.NewView(n, ""), true, "", "", "")
	require.NoError(t, err)
	assert.Contains(t, s.Text, "&lt;script&gt;", "Slack's mrkdwn characters are escaped")
	assert.NotContains(t, s.Text, "Open the run", "no links without a public URL")
}
