package adapters

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/sns"
	snstypes "github.com/aws/aws-sdk-go-v2/service/sns/types"
	"github.com/wneessen/go-mail"

	"github.com/patchwave/patchwave/services/notifier/internal/domain"
)

// Outgoing is one delivery attempt, rendered.
type Outgoing struct {
	// DeliveryID is stable across attempts: receivers drop repeats by it.
	DeliveryID string
	Delivery   domain.Delivery
	View       domain.View
	Message    domain.Message
	// Target of the channel: URL, recipients or topic, and the webhook secret.
	URL      string
	Secret   string
	EmailTo  []string
	TopicARN string
}

// Webhook headers. The signature is HMAC-SHA256, keyed with the subscription's secret, over
// "<timestamp>.<body>", in lower-case hex.
const (
	HeaderDelivery  = "Patchwave-Delivery"
	HeaderEvent     = "Patchwave-Event"
	HeaderTimestamp = "Patchwave-Timestamp"
	HeaderSignature = "Patchwave-Signature"
)

// Sign returns the value of HeaderSignature for a body sent at ts: "v1=<hex>".
func Sign(secret string, ts int64, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(strconv.FormatInt(ts, 10)))
	m.Write([]byte("."))
	m.Write(body)
	return "v1=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a signed webhook as a receiver should: the timestamp within window of now,
// and the signature (constant-time compare).
func Verify(secret string, header http.Header, body []byte, now time.Time, window time.Duration) error {
	ts, err := strconv.ParseInt(header.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return errors.New("no valid " + HeaderTimestamp)
	}
	if d := now.Sub(time.Unix(ts, 0)); d > window || d < -window {
		return fmt.Errorf("timestamp %d is outside the replay window of %s", ts, window)
	}
	want := Sign(secret, ts, body)
	if !hmac.Equal([]byte(want), []byte(header.Get(HeaderSignature))) {
		return errors.New("signature does not match")
	}
	return nil
}

// WebhookBody is the JSON document a webhook receives.
type WebhookBody struct {
	DeliveryID     string              `json:"delivery_id"`
	SubscriptionID string              `json:"subscription_id"`
	Type           string              `json:"type"`
	Tenant         string              `json:"tenant"`
	Severity       string              `json:"severity"`
	Summary        string              `json:"summary"`
	Text           string              `json:"text"`
	Notification   domain.Notification `json:"notification"`
	Links          domain.Links        `json:"links"`
}

// HTTPChannels posts webhooks and Slack messages through a guarded client.
type HTTPChannels struct {
	Client *http.Client
	// MaxResponse bounds how much of an answer is read.
	MaxResponse int64
	Now         func() time.Time
}

// Webhook posts a signed JSON document.
func (h *HTTPChannels) Webhook(ctx context.Context, o Outgoing) error {
	body, err := json.Marshal(WebhookBody{
		DeliveryID: o.DeliveryID, SubscriptionID: o.Delivery.SubscriptionID, Type: o.View.Type, Tenant: o.View.Tenant,
		Severity: o.View.SeverityName, Summary: o.View.Summary, Text: o.Message.Text, Notification: o.View.Notification, Links: o.View.Links,
	})
	if err != nil {
		return fmt.Errorf("encode webhook body: %w", err)
	}
	ts := h.Now().Unix()
	hdr := http.Header{}
	hdr.Set("Content-Type", "application/json")
	hdr.Set(HeaderDelivery, o.DeliveryID)
	hdr.Set(HeaderEvent, o.View.Type)
	hdr.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	hdr.Set(HeaderSignature, Sign(o.Secret, ts, body))
	return h.post(ctx, "webhook", o.URL, hdr, body)
}

// Slack posts an incoming-webhook message.
func (h *HTTPChannels) Slack(ctx context.Context, o Outgoing) error {
	// Slack reads <url|label> links: keep < and > as they are.
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(map[string]any{"text": o.Message.Text, "unfurl_links": false}); err != nil {
		return err
	}
	body := buf.Bytes()
	hdr := http.Header{}
	hdr.Set("Content-Type", "application/json")
	return h.post(ctx, "slack", o.URL, hdr, body)
}

func (h *HTTPChannels) post(ctx context.Context, what, rawURL string, hdr http.Header, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, rawURL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("%s request: %w", what, redact(err))
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	req.Header.Set("User-Agent", "patchwave-notifier")
	resp, err := h.Client.Do(req)
	if err != nil {
		return fmt.Errorf("%s POST: %w", what, redact(err))
	}
	defer func() { _ = resp.Body.Close() }()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, min(h.MaxResponse, 256)))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, h.MaxResponse))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := fmt.Sprintf("%s answered status %d %s", what, resp.StatusCode, http.StatusText(resp.StatusCode))
		if s := strings.Join(strings.Fields(string(snippet)), " "); s != "" {
			msg += ": " + s
		}
		return errors.New(msg)
	}
	return nil
}

// redact drops the URL (which may hold a token) from a *url.Error.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// SMTPConfig is the operator's mail relay.
type SMTPConfig struct {
	Host string
	Port int
	// TLS is "starttls" (required, the default), "opportunistic", "tls" (implicit, port 465)
	// or "none".
	TLS      string
	Username string
	Password string
	From     string
	// RootCAs to verify the relay with; nil: the system's.
	TLSConfig *tls.Config
	Timeout   time.Duration
}

// Email sends through the relay: a text part and an HTML alternative.
type Email struct {
	Cfg SMTPConfig
}

// Send sends one message to o.EmailTo. Its Message-ID is derived from the delivery id, so a
// repeat is recognizable.
func (e *Email) Send(ctx context.Context, o Outgoing) error {
	m := mail.NewMsg()
	if err := m.From(e.Cfg.From); err != nil {
		return fmt.Errorf("e-mail from: %w", err)
	}
	if err := m.To(o.EmailTo...); err != nil {
		return fmt.Errorf("e-mail to: %w", err)
	}
	m.Subject(o.Message.Subject)
	m.SetMessageIDWithValue(o.DeliveryID + "@patchwave")
	m.SetGenHeader("X-Patchwave-Delivery", o.DeliveryID)
	m.SetBodyString(mail.TypeTextPlain, o.Message.Text)
	m.AddAlternativeString(mail.TypeTextHTML, o.Message.HTML)
	opts := []mail.Option{mail.WithPort(e.Cfg.Port), mail.WithTimeout(e.Cfg.Timeout)}
	switch e.Cfg.TLS {
	case "", "starttls":
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	case "opportunistic":
		opts = append(opts, mail.WithTLSPolicy(mail.TLSOpportunistic))
	case "tls":
		opts = append(opts, mail.WithSSL())
	case "none":
		opts = append(opts, mail.WithTLSPolicy(mail.NoTLS))
	}
	if e.Cfg.TLSConfig != nil {
		opts = append(opts, mail.WithTLSConfig(e.Cfg.TLSConfig))
	}
	if e.Cfg.Username != "" {
		opts = append(opts, mail.WithSMTPAuth(mail.SMTPAuthPlain), mail.WithUsername(e.Cfg.Username), mail.WithPassword(e.Cfg.Password))
	}
	c, err := mail.NewClient(e.Cfg.Host, opts...)
	if err != nil {
		return fmt.Errorf("smtp client: %w", err)
	}
	if err := c.DialAndSendWithContext(ctx, m); err != nil {
		return fmt.Errorf("smtp send: %w", err)
	}
	return nil
}

// SNS publishes to a topic.
type SNS struct {
	Client *sns.Client
}

// Publish sends the text with the subject; the delivery id and type are message attributes.
func (s *SNS) Publish(ctx context.Context, o Outgoing) error {
	_, err := s.Client.Publish(ctx, &sns.PublishInput{
		TopicArn: aws.String(o.TopicARN),
		Subject:  aws.String(snsSubject(o.Message.Subject)),
		Message:  aws.String(o.Message.Text),
		MessageAttributes: map[string]snstypes.MessageAttributeValue{
			"patchwave_delivery": {DataType: aws.String("String"), StringValue: aws.String(o.DeliveryID)},
			"patchwave_type":     {DataType: aws.String("String"), StringValue: aws.String(o.View.Type)},
		},
	})
	if err != nil {
		return fmt.Errorf("sns publish: %w", err)
	}
	return nil
}

// snsSubject keeps a subject SNS accepts: ASCII printable, at most 100 characters.
func snsSubject(s string) string {
	var b strings.Builder
	for _, r := range s {
		if r >= 0x20 && r < 0x7f {
			b.WriteRune(r)
		}
		if b.Len() >= 100 {
			break
		}
	}
	return b.String()
}
