package notifier_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"github.com/nats-io/nats.go"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"

	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/store"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	notifierv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/notifier/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"

	"github.com/patchwave/patchwave/services/notifier"
)

const tenant = "acme"

// loopback is the operator allow-list the tests' receivers need: they all run on loopback.
var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// fastRetry makes retries take milliseconds.
func fastRetry(cfg notifier.Config) notifier.Config {
	cfg.RetryInitial, cfg.RetryMax, cfg.PollInterval = 20*time.Millisecond, 80*time.Millisecond, 50*time.Millisecond
	cfg.Lease = 3 * time.Second
	if cfg.AllowNetworks == nil {
		cfg.AllowNetworks = loopback
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "https://patchwave.example"
	}
	return cfg
}

// env is a notifier on an embedded NATS server, with its API.
type env struct {
	nt   *testkit.NATS
	nc   *nats.Conn
	svc  *notifier.Service
	api  notifierv1.NotifierServiceClient
	conn *grpc.ClientConn
	stop func()
}

func start(t testing.TB, cfg notifier.Config, deps notifier.Deps) *env {
	t.Helper()
	nt := testkit.StartNATS(t)
	e := &env{nt: nt, nc: nt.Connect(t)}
	e.run(t, cfg, deps)
	return e
}

func (e *env) run(t testing.TB, cfg notifier.Config, deps notifier.Deps) {
	t.Helper()
	if deps.Store == nil {
		deps.Store = store.NewMemory()
	}
	svc, err := notifier.New(cfg, deps)
	require.NoError(t, err)
	e.svc = svc
	e.conn, e.stop = stagetest.RunGRPCComponent(t, e.nc, svc)
	e.api = notifierv1.NewNotifierServiceClient(e.conn)
	require.Eventually(t, func() bool { return svc.Ready(t.Context()) == nil }, 10*time.Second, 10*time.Millisecond)
}

func (e *env) put(t testing.TB, sub *typesv1.Subscription) *notifierv1.PutSubscriptionResponse {
	t.Helper()
	resp, err := e.api.PutSubscription(t.Context(), &notifierv1.PutSubscriptionRequest{
		Tenant: tenant, SubscriptionId: sub.GetSubscriptionId(), Subscription: sub,
	})
	require.NoError(t, err)
	return resp
}

func (e *env) deliveries(t testing.TB, sub string) []*notifierv1.Delivery {
	t.Helper()
	resp, err := e.api.ListDeliveries(t.Context(), &notifierv1.ListDeliveriesRequest{Tenant: tenant, SubscriptionId: sub, PageSize: 1000})
	require.NoError(t, err)
	return resp.GetDeliveries()
}

// waitStatus waits (30 s at most) until sub has n deliveries, every one in status st.
func (e *env) waitStatus(t testing.TB, sub string, n int, st notifierv1.DeliveryStatus) []*notifierv1.Delivery {
	t.Helper()
	return e.waitStatusWithin(t, sub, n, st, 30*time.Second)
}

// waitStatusWithin is waitStatus with a bound of its own.
func (e *env) waitStatusWithin(t testing.TB, sub string, n int, st notifierv1.DeliveryStatus, within time.Duration) []*notifierv1.Delivery {
	t.Helper()
	var got []*notifierv1.Delivery
	require.Eventually(t, func() bool {
		got = e.deliveries(t, sub)
		if len(got) != n {
			return false
		}
		for _, d := range got {
			if d.GetStatus() != st {
				return false
			}
		}
		return true
	}, within, 20*time.Millisecond, "deliveries of %s: want %d %s", sub, n, st)
	return got
}

// runEvents are the events of a small run: one success, one failed install, one failed
// snapshot, then the run's end.
func runEvents(run string, wave int32) []*events.Event {
	return []*events.Event{
		events.MustNew(tenant, run, &eventsv1.RunStarted{Tenant: tenant, RunId: run, Wave: wave, BaselineId: "b-1", InstanceIds: []string{"i-1", "i-2", "i-3"}}),
		events.MustNew(tenant, run+"/i-1", &eventsv1.InstallSucceeded{Tenant: tenant, RunId: run, Wave: wave, InstanceId: "i-1"}),
		events.MustNew(tenant, run+"/i-2", &eventsv1.InstallFailed{Tenant: tenant, RunId: run, Wave: wave, InstanceId: "i-2", Reason: "patch p2: exit status 1"}),
		events.MustNew(tenant, run+"/i-3", &eventsv1.SnapshotFailed{Tenant: tenant, RunId: run, Wave: wave, InstanceId: "i-3", Reason: "volume busy"}),
		events.MustNew(tenant, run, &eventsv1.RunCompleted{Tenant: tenant, RunId: run, Wave: wave,
			State: typesv1.RunState_RUN_STATE_COMPLETED_WITH_ERRORS, Total: 3, Succeeded: 1, Failed: 2}),
	}
}

// hook is a webhook receiver that verifies every signature.
type hook struct {
	t      testing.TB
	secret string
	srv    *httptest.Server

	mu       sync.Mutex
	fail     int // answers 503 to this many requests first
	requests int
	bodies   []notifier.WebhookBody
	badSigs  int
	raw      []string
}

func newHook(t testing.TB) *hook {
	h := &hook{t: t}
	h.srv = httptest.NewServer(http.HandlerFunc(h.serve))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hook) setSecret(s string) { h.mu.Lock(); h.secret = s; h.mu.Unlock() }

func (h *hook) failFirst(n int) { h.mu.Lock(); h.fail = n; h.mu.Unlock() }

func (h *hook) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.requests++
	if h.secret != "" {
		if err := notifier.VerifyWebhook(h.secret, r.Header, body, time.Now(), 5*time.Minute); err != nil {
			h.badSigs++
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
	}
	if h.fail > 0 {
		h.fail--
		http.Error(w, "down for maintenance", http.StatusServiceUnavailable)
		return
	}
	h.raw = append(h.raw, string(body))
	var b notifier.WebhookBody
	if err := json.Unmarshal(body, &b); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if h.secret != "" && (b.DeliveryID != r.Header.Get(notifier.HeaderDelivery) || b.Type != r.Header.Get(notifier.HeaderEvent)) {
		http.Error(w, "headers do not match the body", http.StatusBadRequest)
		return
	}
	h.bodies = append(h.bodies, b)
	w.WriteHeader(http.StatusNoContent)
}

func (h *hook) received() []notifier.WebhookBody {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]notifier.WebhookBody(nil), h.bodies...)
}

func (h *hook) texts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.raw...)
}

func (h *hook) counts() (requests, badSigs int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.requests, h.badSigs
}

// mailbox is a real SMTP server (go-smtp) requiring STARTTLS and AUTH PLAIN.
type mailbox struct {
	addr   string
	tlsCfg *tls.Config // what a client must trust
	mu     sync.Mutex
	mails  []receivedMail
}

type receivedMail struct {
	From, Subject, Text, HTML string
	To                        []string
	TLS                       bool
	User                      string
	MessageID                 string
}

const smtpUser, smtpPassword = "notifier", "s3cret-relay-password"

func newMailbox(t *testing.T) *mailbox {
	t.Helper()
	cert, pool := selfSigned(t)
	m := &mailbox{tlsCfg: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}}
	s := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) { return &session{m: m, c: c}, nil }))
	s.Domain, s.AllowInsecureAuth = "localhost", false
	s.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.ReadTimeout, s.WriteTimeout = 10*time.Second, 10*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	m.addr = ln.Addr().String()
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	return m
}

func (m *mailbox) received() []receivedMail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]receivedMail(nil), m.mails...)
}

type session struct {
	m    *mailbox
	c    *smtp.Conn
	user string
	from string
	to   []string
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }
func (s *session) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != smtpUser || pass != smtpPassword {
			return errors.New("bad credentials")
		}
		s.user = user
		return nil
	}), nil
}
func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.user == "" {
		return &smtp.SMTPError{Code: 530, Message: "authentication required"}
	}
	s.from = from
	return nil
}
func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error { s.to = append(s.to, to); return nil }
func (s *session) Reset()                                    { s.from, s.to = "", nil }
func (s *session) Logout() error                             { return nil }
func (s *session) Data(r io.Reader) error {
	msg, err := mail.ReadMessage(r)
	if err != nil {
		return err
	}
	got := receivedMail{From: s.from, To: s.to, User: s.user, Subject: msg.Header.Get("Subject"), MessageID: msg.Header.Get("Message-Id")}
	if dec, err := new(mime.WordDecoder).DecodeHeader(got.Subject); err == nil {
		got.Subject = dec
	}
	_, got.TLS = s.c.TLSConnectionState()
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") {
		return fmt.Errorf("want a multipart message, got %q", msg.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return err
		}
		text := string(b)
		pt, _, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		switch pt {
		case "text/plain":
			got.Text = text
		case "text/html":
			got.HTML = text
		}
	}
	s.m.mu.Lock()
	s.m.mails = append(s.m.mails, got)
	s.m.mu.Unlock()
	return nil
}

// selfSigned makes a certificate for 127.0.0.1 and the pool that trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "smtp.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	leaf, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

type netipPrefix = netip.Prefix

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func netListen(addr string) (net.Listener, error) { return net.Listen("tcp", addr) }

func splitHostPort(t *testing.T, addr string) (string, int) {
	t.Helper()
	ap, err := netip.ParseAddrPort(addr)
	require.NoError(t, err)
	return ap.Addr().String(), int(ap.Port())
}
