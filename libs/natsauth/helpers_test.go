package natsauth_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/testkit"
)

// client is one user's connection that records the server's permission violations.
type client struct {
	user string
	nc   *nats.Conn
	js   jetstream.JetStream

	mu   sync.Mutex
	errs []string
	seen chan struct{}
}

// connect connects as user (a user of the server's table, or an integrator's credentials file
// with its inbox prefix when creds is set).
func connect(t *testing.T, n *testkit.NATS, user string, opts ...nats.Option) *client {
	t.Helper()
	c := &client{user: user, seen: make(chan struct{}, 1)}
	opts = append(opts, nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.record(err) }))
	c.nc = n.ConnectAs(t, user, opts...)
	c.js = jetStream(t, c.nc)
	return c
}

// connectCreds connects with an integrator's credentials file content, without reconnecting.
func connectCreds(t *testing.T, url string, creds []byte, inboxPrefix string) (*client, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "integrator.creds")
	require.NoError(t, os.WriteFile(file, creds, 0o600))
	c := &client{user: inboxPrefix, seen: make(chan struct{}, 1)}
	nc, err := nats.Connect(url, nats.UserCredentials(file), nats.CustomInboxPrefix(inboxPrefix),
		nats.NoReconnect(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { c.record(err) }))
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	c.nc = nc
	c.js = jetStream(t, nc)
	return c, nil
}

func jetStream(t *testing.T, nc *nats.Conn) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	return js
}

func (c *client) record(err error) {
	c.mu.Lock()
	c.errs = append(c.errs, err.Error())
	c.mu.Unlock()
	select {
	case c.seen <- struct{}{}:
	default:
	}
}

// violated reports whether the server refused an action on subject ("Publish to" or
// "Subscription to").
func (c *client) violated(what, subject string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, e := range c.errs {
		if strings.Contains(e, "ermissions violation") && strings.Contains(e, what+` "`+subject+`"`) {
			return true
		}
	}
	return false
}

const waitDenied = 10 * time.Second

// requireDenied runs op and requires the server to refuse publishing to subject: op's request is
// cancelled once the refusal arrives, and must then have failed.
func (c *client) requireDenied(t *testing.T, subject string, op func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), waitDenied)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- op(ctx) }()
	c.waitViolation(t, "Publish to", subject, cancel)
	require.Error(t, <-done, "%s: the refused request fails", c.user)
}

// requirePublishDenied publishes to subject and requires the server to refuse it.
func (c *client) requirePublishDenied(t *testing.T, subject string) {
	t.Helper()
	require.NoError(t, c.nc.Publish(subject, []byte(`{}`)))
	require.NoError(t, c.nc.Flush())
	c.waitViolation(t, "Publish to", subject, func() {})
}

// requireSubscribeDenied subscribes to subject and requires the server to refuse it.
func (c *client) requireSubscribeDenied(t *testing.T, subject string) {
	t.Helper()
	sub, err := c.nc.SubscribeSync(subject)
	require.NoError(t, err)
	defer func() { _ = sub.Unsubscribe() }()
	require.NoError(t, c.nc.Flush())
	c.waitViolation(t, "Subscription to", subject, func() {})
}

func (c *client) waitViolation(t *testing.T, what, subject string, then func()) {
	t.Helper()
	deadline := time.After(waitDenied)
	for !c.violated(what, subject) {
		select {
		case <-c.seen:
		case <-deadline:
			c.mu.Lock()
			seen := append([]string(nil), c.errs...)
			c.mu.Unlock()
			t.Fatalf("%s: the server did not refuse %s %q; errors seen: %v", c.user, what, subject, seen)
		}
	}
	then()
}

// requireNoViolation fails if the server refused anything to c.
func (c *client) requireNoViolation(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Empty(t, c.errs, "%s: no permission violation", c.user)
}
