package adapters

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ContentTypeCloudEvents is the media type of a structured-mode CloudEvents JSON document.
const ContentTypeCloudEvents = "application/cloudevents+json; charset=utf-8"

// Webhook delivers notifications by POSTing their CloudEvents JSON to one URL.
type Webhook struct {
	url     string
	client  *http.Client
	timeout time.Duration
}

// NewWebhook returns a webhook channel for rawURL (already validated) using client, with
// timeout bounding each POST.
func NewWebhook(rawURL string, client *http.Client, timeout time.Duration) *Webhook {
	return &Webhook{url: rawURL, client: client, timeout: timeout}
}

// Send POSTs body, a CloudEvents JSON document. Any answer but 2xx is an error that names the
// status code. Errors never contain the URL, which may carry a secret token.
func (w *Webhook) Send(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook request: %w", redact(err))
	}
	req.Header.Set("Content-Type", ContentTypeCloudEvents)
	req.Header.Set("User-Agent", "patchwave-notifier")
	resp, err := w.client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook POST: %w", redact(err))
	}
	defer func() { _ = resp.Body.Close() }()
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		msg := fmt.Sprintf("webhook answered status %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
		if s := strings.Join(strings.Fields(string(snippet)), " "); s != "" {
			msg += ": " + s
		}
		return errors.New(msg)
	}
	return nil
}

// redact drops the URL from a *url.Error.
func redact(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
