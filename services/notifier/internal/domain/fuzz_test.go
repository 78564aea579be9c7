package domain_test

import (
	"testing"
	"time"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

// FuzzSubscription feeds arbitrary URLs, templates and quiet hours to the checks: nothing
// panics, and a subscription that passes renders or fails cleanly and holds a delivery at most
// a day.
func FuzzSubscription(f *testing.F) {
	f.Add("https://hooks.example.com/x", "{{.Summary}}", "<b>{{.Summary}}</b>", "22:00", "06:00", "Europe/Paris")
	f.Add("http://[::1]:80/", "{{range .Digest.Failures}}{{.Reason}}{{end}}", "", "00:00", "23:59", "")
	f.Add("ftp://x", "{{define \"a\"}}{{template \"a\"}}{{end}}{{template \"a\"}}", "{{", "25:00", "", "Mars/Olympus")
	f.Fuzz(func(t *testing.T, url, text, html, start, end, tz string) {
		s := &typesv1.Subscription{
			SubscriptionId: "fuzz", Channel: typesv1.NotificationChannel_NOTIFICATION_CHANNEL_SLACK, Mode: typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE,
			Url: url, Templates: &typesv1.MessageTemplates{Text: text, Html: html},
			QuietHours: &typesv1.QuietHours{Start: start, End: end, TimeZone: tz},
		}
		_ = domain.MaskURL(url)
		if domain.ValidateSubscription(s) != nil {
			return
		}
		n := domain.Notification{Type: domain.TypeInstallFailed, Tenant: "acme", Summary: "s", Digest: &domain.Digest{}}
		_, _ = domain.Render(domain.NewView(n, "https://pw.example"), true, "", text, html)
		at := time.Date(2026, 12, 2, 23, 30, 0, 0, time.UTC)
		nb := domain.NotBefore(s, at)
		if nb.Before(at) || nb.After(at.Add(25*time.Hour)) {
			t.Fatalf("NotBefore(%s) = %s", at, nb)
		}
	})
}
