package domain

import (
	"fmt"
	"math/rand/v2"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/patchwave/patchwave/libs/apierr"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// SubscriptionIDPattern is the form of a subscription id.
var SubscriptionIDPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

var (
	topicARN  = regexp.MustCompile(`^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]{1,256}(\.fifo)?$`)
	clockTime = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]$`)
)

// Limits on a subscription's parts.
const (
	MaxRecipients   = 20
	MaxTemplateSize = 16 << 10
	MinSecretLen    = 16
	MaxSecretLen    = 256
)

// ValidateSubscription reports every problem with a subscription as a *apierr.ValidationError
// whose fields are named as in the API ("subscription.url").
func ValidateSubscription(s *typesv1.Subscription) error {
	var v apierr.Violations
	if !SubscriptionIDPattern.MatchString(s.GetSubscriptionId()) {
		v.Add("subscription_id", "must match "+SubscriptionIDPattern.String())
	}
	switch s.GetChannel() {
	case typesv1.NotificationChannel_NOTIFICATION_CHANNEL_WEBHOOK, typesv1.NotificationChannel_NOTIFICATION_CHANNEL_SLACK:
		if err := checkURL(s.GetUrl()); err != "" {
			v.Add("subscription.url", err)
		}
		if s.GetChannel() == typesv1.NotificationChannel_NOTIFICATION_CHANNEL_WEBHOOK && s.GetSecret() != "" &&
			(len(s.GetSecret()) < MinSecretLen || len(s.GetSecret()) > MaxSecretLen) {
			v.Add("subscription.secret", fmt.Sprintf("must be %d to %d characters (or empty: one is generated)", MinSecretLen, MaxSecretLen))
		}
	case typesv1.NotificationChannel_NOTIFICATION_CHANNEL_EMAIL:
		if len(s.GetEmailTo()) == 0 || len(s.GetEmailTo()) > MaxRecipients {
			v.Add("subscription.email_to", fmt.Sprintf("must list 1 to %d recipients", MaxRecipients))
		}
		for i, a := range s.GetEmailTo() {
			if _, err := mail.ParseAddress(a); err != nil || strings.ContainsAny(a, "\r\n") {
				v.Add(fmt.Sprintf("subscription.email_to[%d]", i), "must be an e-mail address")
			}
		}
	case typesv1.NotificationChannel_NOTIFICATION_CHANNEL_SNS:
		if !topicARN.MatchString(s.GetTopicArn()) {
			v.Add("subscription.topic_arn", "must be an SNS topic ARN arn:aws:sns:<region>:<account>:<name>")
		}
	default:
		v.Add("subscription.channel", "must be NOTIFICATION_CHANNEL_WEBHOOK, _SLACK, _EMAIL or _SNS")
	}
	if s.GetChannel() != typesv1.NotificationChannel_NOTIFICATION_CHANNEL_WEBHOOK && s.GetSecret() != "" {
		v.Add("subscription.secret", "only a webhook has a secret")
	}
	switch s.GetMode() {
	case typesv1.NotificationMode_NOTIFICATION_MODE_IMMEDIATE, typesv1.NotificationMode_NOTIFICATION_MODE_DIGEST:
	default:
		v.Add("subscription.mode", "must be NOTIFICATION_MODE_IMMEDIATE or NOTIFICATION_MODE_DIGEST")
	}
	f := s.GetFilter()
	for i, t := range f.GetEventTypes() {
		if !slices.Contains(Types, t) {
			v.Add(fmt.Sprintf("subscription.filter.event_types[%d]", i), fmt.Sprintf("%q: must be one of %s", t, strings.Join(Types, ", ")))
		}
	}
	for i, w := range f.GetWaves() {
		if w < 1 || w > 3 {
			v.Add(fmt.Sprintf("subscription.filter.waves[%d]", i), fmt.Sprintf("must be from 1 to 3, got %d", w))
		}
	}
	if ms := f.GetMinSeverity(); ms < 0 || ms > typesv1.NotificationSeverity_NOTIFICATION_SEVERITY_CRITICAL {
		v.Add("subscription.filter.min_severity", "must be NOTIFICATION_SEVERITY_INFO, _WARNING or _CRITICAL")
	}
	if q := s.GetQuietHours(); q != nil {
		if !clockTime.MatchString(q.GetStart()) {
			v.Add("subscription.quiet_hours.start", "must be HH:MM (24-hour clock)")
		}
		if !clockTime.MatchString(q.GetEnd()) {
			v.Add("subscription.quiet_hours.end", "must be HH:MM (24-hour clock)")
		}
		if q.GetStart() == q.GetEnd() && q.GetStart() != "" {
			v.Add("subscription.quiet_hours.end", "must differ from start")
		}
		if _, err := time.LoadLocation(q.GetTimeZone()); err != nil {
			v.Add("subscription.quiet_hours.time_zone", "must be an IANA time zone such as Europe/Paris")
		}
	}
	if m := s.GetReminderMinutes(); m < 0 || m > 7*24*60 {
		v.Add("subscription.reminder_minutes", "must be from 0 (default 60) to 10080 (a week)")
	}
	t := s.GetTemplates()
	for name, text := range map[string]string{"subject": t.GetSubject(), "text": t.GetText(), "html": t.GetHtml()} {
		if len(text) > MaxTemplateSize {
			v.Add("subscription.templates."+name, fmt.Sprintf("must be at most %d bytes", MaxTemplateSize))
			continue
		}
		if err := CheckTemplate(name, text); err != nil {
			v.Add("subscription.templates."+name, err.Error())
		}
	}
	return v.Err()
}

func checkURL(raw string) string {
	if raw == "" {
		return "required"
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil:
		return "must be an absolute http or https URL (it does not parse)"
	case u.Scheme != "https" && u.Scheme != "http":
		return fmt.Sprintf("scheme %q: must be https (or http)", u.Scheme)
	case u.Hostname() == "":
		return "must name a host"
	case u.User != nil:
		return "must not carry user information"
	}
	return ""
}

// MaskURL keeps a URL's scheme and host: incoming-webhook URLs hold their token in the path.
func MaskURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return "***"
	}
	if u.Path == "" && u.RawQuery == "" {
		return u.Scheme + "://" + u.Host
	}
	return u.Scheme + "://" + u.Host + "/***"
}

// ToProtoSeverity maps a severity to the API's enum.
func ToProtoSeverity(s Severity) typesv1.NotificationSeverity { return typesv1.NotificationSeverity(s) }

// Matches tells whether a subscription takes a notification: a digest subscription takes only
// run digests, an immediate one everything but digests; then every set part of the filter
// must match.
func Matches(s *typesv1.Subscription, n Notification) bool {
	if s.GetDisabled() {
		return false
	}
	digest := s.GetMode() == typesv1.NotificationMode_NOTIFICATION_MODE_DIGEST
	if digest != (n.Type == TypeRunDigest) {
		return false
	}
	f := s.GetFilter()
	if len(f.GetEventTypes()) > 0 && !slices.Contains(f.GetEventTypes(), n.Type) {
		return false
	}
	if len(f.GetWaves()) > 0 && !slices.Contains(f.GetWaves(), n.Wave) {
		return false
	}
	if ms := f.GetMinSeverity(); ms != typesv1.NotificationSeverity_NOTIFICATION_SEVERITY_UNSPECIFIED && ToProtoSeverity(n.Severity) < ms {
		return false
	}
	if f.GetFailuresOnly() && !n.Failure {
		return false
	}
	return true
}

// NotBefore returns the earliest time at or after t outside the subscription's quiet hours.
func NotBefore(s *typesv1.Subscription, t time.Time) time.Time {
	q := s.GetQuietHours()
	if q == nil || q.GetStart() == "" {
		return t
	}
	loc, err := time.LoadLocation(q.GetTimeZone())
	if err != nil {
		return t
	}
	lt := t.In(loc)
	minutes := func(hhmm string) int {
		var h, m int
		_, _ = fmt.Sscanf(hhmm, "%d:%d", &h, &m)
		return h*60 + m
	}
	start, end, now := minutes(q.GetStart()), minutes(q.GetEnd()), lt.Hour()*60+lt.Minute()
	var inQuiet bool
	if start < end {
		inQuiet = now >= start && now < end
	} else {
		inQuiet = now >= start || now < end
	}
	if !inQuiet {
		return t
	}
	day := time.Date(lt.Year(), lt.Month(), lt.Day(), 0, 0, 0, 0, loc)
	if start > end && now >= start {
		day = day.AddDate(0, 0, 1)
	}
	return time.Date(day.Year(), day.Month(), day.Day(), end/60, end%60, 0, 0, loc).UTC()
}

// Retry is the retry schedule of deliveries.
type Retry struct {
	// Initial is the wait before the second attempt.
	Initial time.Duration
	// Max bounds one wait.
	Max time.Duration
	// Attempts is how many attempts a delivery gets before it is dead-lettered.
	Attempts int
}

// Backoff returns the wait after the attempt-th failed attempt (from 1): Initial doubled
// each time up to Max, with "equal jitter" (between half and all of it), so receivers that come
// back are not hit by every sender at once.
func (r Retry) Backoff(attempt int, rnd *rand.Rand) time.Duration {
	d := r.Initial
	for i := 1; i < attempt && d < r.Max; i++ {
		d *= 2
	}
	d = min(d, r.Max)
	half := d / 2
	if half <= 0 {
		return d
	}
	return half + time.Duration(rnd.Int64N(int64(half)+1))
}

// Total is the longest time the schedule spends retrying (without jitter).
func (r Retry) Total() time.Duration {
	var t time.Duration
	for i := 1; i < r.Attempts; i++ {
		d := r.Initial
		for j := 1; j < i && d < r.Max; j++ {
			d *= 2
		}
		t += min(d, r.Max)
	}
	return t
}

// Delivery statuses.
const (
	StatusPending = "pending"
	StatusSent    = "sent"
	StatusDead    = "dead"
)

// Delivery is one notification to one subscription: the delivery log's entry.
type Delivery struct {
	Tenant         string       `json:"tenant"`
	SubscriptionID string       `json:"subscription_id"`
	Channel        string       `json:"channel"`
	Notification   Notification `json:"notification"`
	Status         string       `json:"status"`
	Attempts       int          `json:"attempts"`
	LastError      string       `json:"last_error,omitempty"`
	CreatedAt      time.Time    `json:"created_at"`
	NextAttemptAt  time.Time    `json:"next_attempt_at,omitzero"`
	SentAt         time.Time    `json:"sent_at,omitzero"`
	// Generation counts "send again" actions.
	Generation int `json:"generation,omitempty"`
}

// ID is "<subscription>.<notification>": one delivery per subscription and notification.
func (d Delivery) ID() string { return d.SubscriptionID + "." + d.Notification.ID }

// ChannelName is the lower-case name of a channel ("webhook", "slack", "email", "sns").
func ChannelName(c typesv1.NotificationChannel) string {
	return strings.ToLower(strings.TrimPrefix(c.String(), "NOTIFICATION_CHANNEL_"))
}
