package cloudsim

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Server is a running emulator: one HTTP endpoint for EC2, SSM, STS, S3 and SNS (routed by the
// SigV4 credential scope) and the admin API under /_cloudsim/. All methods are safe for
// concurrent use.
type Server struct {
	cfg    Config
	log    *slog.Logger
	ln     net.Listener
	http   *http.Server
	stats  *statsRecorder
	faults *faultSet
	keys   signingKeys
	reqSeq atomic.Uint64
	sns    snsInbox

	mu    sync.RWMutex // guards w and store: reads (view) share it, changes (update) hold it alone
	w     *world
	store *store

	closeOnce sync.Once
	closeErr  error
	serveErr  chan error
}

// AccountInfo is what a client needs to reach an account.
type AccountInfo struct {
	ID               string   `json:"id"`
	Tenant           string   `json:"tenant"`
	Regions          []string `json:"regions"`
	RoleARN          string   `json:"role_arn"`
	ExternalID       string   `json:"external_id"`
	TrustedPrincipal string   `json:"trusted_principal"`
	Instances        int      `json:"instances"`
}

// apiError is an AWS error: code, message and HTTP status.
type apiError struct {
	Code    string
	Message string
	Status  int
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func errf(code, format string, args ...any) *apiError {
	return &apiError{Code: code, Message: fmt.Sprintf(format, args...), Status: statusForCode(code)}
}

// identity is who signed a request. Its ARN and user id are built when asked for (error
// messages, AssumeRole's trust check, GetCallerIdentity), not on every call.
type identity struct {
	Account  string
	Provider bool
	seed     int64
	sess     *session // the assumed role's session; nil for the provider's user
}

// ARN is the caller's ARN: the provider's IAM user or the assumed role's session.
func (id identity) ARN() string {
	if id.sess == nil {
		return "arn:aws:iam::" + id.Account + ":user/patchwave"
	}
	return "arn:aws:sts::" + id.sess.Account + ":assumed-role/" + id.sess.RoleName + "/" + id.sess.SessionName
}

// UserID is the caller's user id, as GetCallerIdentity returns it.
func (id identity) UserID() string {
	if id.sess == nil {
		return "AIDA" + hashAlnum(id.seed, 17, "provider-user")
	}
	return id.sess.RoleID + ":" + id.sess.SessionName
}

// call is one API request being handled.
type call struct {
	s         *Server
	r         *http.Request
	body      []byte
	svc       *service
	op        string
	region    string
	id        identity
	form      url.Values
	qform     *queryForm // the pooled form behind form, returned when the call ends
	requestID string
	instances []string  // instance ids the call names, for per-instance stats
	instArr   [1]string // instances' first array: most calls that name instances name one
}

// handler handles one operation; it returns the response to render or an error.
type handler func(c *call) (any, error)

// service is one AWS protocol: how to find the operation, render results and errors, and its
// codes for authentication failures and throttling.
type service struct {
	name      string
	handlers  map[string]handler
	operation func(c *call) error
	write     func(rw http.ResponseWriter, c *call, v any)
	writeErr  func(rw http.ResponseWriter, c *call, e *apiError)
	// unknownKey, badSignature, expired, throttle and internal are the codes AWS uses.
	unknownKey, badSignature, expired, throttle, internal apiError
	opNames                                               map[string]string // op -> "service:op"
}

// services are the emulated AWS services by signing name.
var services = withOpNames(map[string]*service{"ec2": ec2Service(), "ssm": ssmService(), "sts": stsService(), "s3": s3Service(), "sns": snsService()})

// withOpNames fills each service's opNames ("ec2:DescribeInstances", ...): the stats key of a
// call, built once rather than on every call.
func withOpNames(m map[string]*service) map[string]*service {
	for _, svc := range m {
		svc.opNames = make(map[string]string, len(svc.handlers))
		for op := range svc.handlers {
			svc.opNames[op] = svc.name + ":" + op
		}
	}
	return m
}

// opName is "service:Operation".
func (svc *service) opName(op string) string {
	if n, ok := svc.opNames[op]; ok {
		return n
	}
	return svc.name + ":" + op
}

// knownOperation tells whether op ("DescribeInstances" or "ec2:DescribeInstances") exists.
func knownOperation(op string) bool {
	svc, name, ok := strings.Cut(op, ":")
	if ok {
		s := services[svc]
		if s == nil {
			return false
		}
		_, found := s.handlers[name]
		return found || name == "*"
	}
	for _, s := range services {
		if _, found := s.handlers[op]; found {
			return true
		}
	}
	return false
}

// New builds a server from the configuration: it loads the state directory (or generates the
// accounts' instances) and binds the listener. Serve with Start or Run; stop with Close.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cloudsim config: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, stats: newStatsRecorder(), faults: newFaultSet(cfg.Faults.Operations, cfg.Seed),
		serveErr: make(chan error, 1)}
	w, st, err := loadOrCreate(cfg, &s.mu)
	if err != nil {
		return nil, err
	}
	s.w, s.store = w, st
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		if st != nil {
			st.close()
		}
		return nil, fmt.Errorf("cloudsim listen %s: %w", cfg.Addr, err)
	}
	s.ln = ln
	s.http = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	s.log.Info("cloudsim ready", "url", s.URL(), "instances", len(w.instances), "accounts", len(w.accounts)-1,
		"state_dir", cfg.StateDir)
	return s, nil
}

// loadOrCreate loads the state directory, or builds a fresh world from the configuration; mu
// is the lock that will guard the world (the store's checkpoint writer takes it).
func loadOrCreate(cfg Config, mu *sync.RWMutex) (*world, *store, error) {
	w := newWorld(cfg.Seed, cfg.Timing)
	w.rates = rates{SnapshotError: cfg.Faults.SnapshotErrorRate, PatchFailure: cfg.Faults.PatchFailureRate, RebootRequired: cfg.RebootRequiredRate}
	var st *store
	if cfg.StateDir != "" {
		var err error
		st, err = openStore(cfg.StateDir, cfg.CheckpointEvery, w, mu, cfg.Logger)
		if err != nil {
			return nil, nil, err
		}
	}
	w.buildIndexes()
	now := cfg.Clock()
	if w.meta.ProviderKey == "" {
		w.meta.ProviderKey = "AKIA" + hashAlnum(cfg.Seed, 16, "provider-key")
		w.meta.ProviderSecret = hashHex(cfg.Seed, 40, "provider-secret")
		w.markMeta()
	}
	if _, ok := w.accounts[cfg.ProviderAccountID]; !ok {
		a := &account{ID: cfg.ProviderAccountID, Tenant: "provider", Regions: []string{"us-east-1"}, Provider: true}
		w.accounts[a.ID] = a
		w.markAccount(a)
	}
	for _, ac := range cfg.Accounts {
		if _, ok := w.accounts[ac.ID]; ok {
			continue // loaded state wins
		}
		a := &account{ID: ac.ID, Tenant: ac.Tenant, Regions: append([]string(nil), ac.Regions...), RoleName: ac.RoleName,
			ExternalID: ac.ExternalID, TrustedPrincipal: ac.TrustedPrincipal}
		w.accounts[a.ID] = a
		w.markAccount(a)
		w.generate(ac, now)
	}
	if st != nil {
		if err := st.flush(w); err != nil {
			st.close()
			return nil, nil, err
		}
	} else {
		w.resetDirty()
	}
	return w, st, nil
}

// Start serves in the background until Close.
func (s *Server) Start() {
	go func() {
		err := s.http.Serve(s.ln)
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
		s.serveErr <- err
	}()
}

// Run serves until ctx is done, then closes the server.
func (s *Server) Run(ctx context.Context) error {
	s.Start()
	select {
	case <-ctx.Done():
		return s.Close()
	case err := <-s.serveErr:
		s.serveErr <- err
		_ = s.Close()
		return err
	}
}

// Close stops serving (waiting up to 5 s for calls in progress), then flushes and closes the
// state directory. It is safe to call more than once.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		err := s.http.Shutdown(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			// A client's connection that never sent a request (an HTTP client dials ahead and
			// parks the spare connection) counts as active for 5 seconds after it was opened, so
			// a graceful stop can outwait the deadline with nothing in flight: close what is
			// left.
			err = s.http.Close()
		}
		_ = s.ln.Close()
		s.mu.Lock()
		st := s.store
		s.store = nil
		if st != nil {
			err = errors.Join(err, st.flush(s.w))
		}
		s.mu.Unlock()
		if st != nil {
			// Without the lock: close waits for a checkpoint being written, which takes it.
			err = errors.Join(err, st.close())
		}
		s.closeErr = err
	})
	return s.closeErr
}

// URL is the endpoint, "http://127.0.0.1:PORT".
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Now is the emulator's clock.
func (s *Server) Now() time.Time { return s.cfg.Clock() }

// ProviderAccountID is the provider account's id.
func (s *Server) ProviderAccountID() string { return s.cfg.ProviderAccountID }

// ProviderCredentials are the provider's long-lived access key id and secret.
func (s *Server) ProviderCredentials() (accessKeyID, secret string) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.w.meta.ProviderKey, s.w.meta.ProviderSecret
}

// Account describes a tenant account.
func (s *Server) Account(id string) (AccountInfo, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	a := s.w.accounts[id]
	if a == nil || a.Provider {
		return AccountInfo{}, false
	}
	return s.accountInfo(a), true
}

// Accounts describes every tenant account, by id.
func (s *Server) Accounts() []AccountInfo {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := []AccountInfo{}
	for _, id := range sortedKeys(s.w.accounts) {
		if a := s.w.accounts[id]; !a.Provider {
			out = append(out, s.accountInfo(a))
		}
	}
	return out
}

func (s *Server) accountInfo(a *account) AccountInfo {
	n := 0
	for _, r := range a.Regions {
		n += s.w.instByRegion[regionKey{a.ID, r}].len()
	}
	return AccountInfo{ID: a.ID, Tenant: a.Tenant, Regions: append([]string(nil), a.Regions...),
		RoleARN: "arn:aws:iam::" + a.ID + ":role/" + a.RoleName, ExternalID: a.ExternalID,
		TrustedPrincipal: a.TrustedPrincipal, Instances: n}
}

// Stats are the call counters (the admin API's GET /_cloudsim/stats).
func (s *Server) Stats() Stats {
	st := s.stats.snapshot()
	st.Busy = s.stats.busyStats(s.Now())
	return st
}

// InstanceStats are the calls that named an instance, by operation.
func (s *Server) InstanceStats(id string) map[string]int64 { return s.stats.instance(id) }

// ResetStats zeroes the counters.
func (s *Server) ResetStats() { s.stats.reset() }

// InjectFault adds a run-time fault: a throttle or error rule for calls, or a change of an
// instance (stop, start, drop its agent, fail its next install, ...).
func (s *Server) InjectFault(f Fault) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("fault: %w", err)
	}
	switch f.Kind {
	case FaultThrottle, FaultError:
		s.faults.add(f)
		return nil
	case FaultLatency:
		latency, _ := time.ParseDuration(orZero(f.Latency))
		jitter, _ := time.ParseDuration(orZero(f.Jitter))
		s.faults.setLatency(f.Operation, latency, jitter)
		return nil
	case FaultSetRates:
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, r := range []struct {
			v   *float64
			dst *float64
		}{{f.SnapshotErrorRate, &s.w.rates.SnapshotError}, {f.PatchFailureRate, &s.w.rates.PatchFailure},
			{f.RebootRequiredRate, &s.w.rates.RebootRequired}} {
			if r.v != nil {
				*r.dst = *r.v
			}
		}
		return nil
	}
	return s.update(func(w *world, now time.Time) error { return w.applyInstanceFault(f, now) })
}

func orZero(d string) string {
	if d == "" {
		return "0s"
	}
	return d
}

// Faults lists the throttle and error rules in force, with what is left of their counts.
func (s *Server) Faults() []Fault { return s.faults.list() }

// ClearFaults removes every throttle, error and latency rule injected at run time (instance
// changes and rates stay).
func (s *Server) ClearFaults() { s.faults.clear() }

// AddInstances adds instances to an account and returns their ids.
func (s *Server) AddInstances(spec InstanceSpec) ([]string, error) {
	var ids []string
	err := s.update(func(w *world, now time.Time) error {
		var err error
		ids, err = w.addInstances(spec, now)
		return err
	})
	return ids, err
}

// update runs fn on the world under the exclusive lock and queues what it changed for the
// mutation log; the records are written after the lock is released (store.write), so the lock
// is held for the change and its encoding only.
func (s *Server) update(fn func(w *world, now time.Time) error) error {
	s.mu.Lock()
	err := fn(s.w, s.cfg.Clock())
	if len(s.w.dirty) == 0 {
		s.mu.Unlock()
		return err
	}
	st := s.store
	if st == nil {
		s.w.resetDirty()
		s.mu.Unlock()
		return err
	}
	end, ferr := st.encode(s.w)
	s.mu.Unlock()
	if ferr == nil {
		ferr = st.write(end)
	}
	if ferr != nil {
		s.log.Error("cloudsim: writing the mutation log failed", "err", ferr)
		return errors.Join(err, errf("InternalError", "state could not be saved"))
	}
	return err
}

// view runs fn, a read, under the shared lock on a frozen copy of the world: many reads run at
// once, and a read never touches the mutation log. On the frozen copy settle changes nothing;
// it only notes that an instance the read met has a transition due, and then fn runs again
// through update, which applies the transition (and logs it). fn must therefore start its
// result afresh each time it runs.
func (c *call) view(fn func(w *world, now time.Time) error) error {
	n := len(c.instances)
	return c.s.view(fn, func() { c.instances = c.instances[:n] })
}

// view is call.view for the admin API; again (if not nil) undoes what fn's first run did
// besides its result.
func (s *Server) view(fn func(w *world, now time.Time) error, again func()) error {
	s.mu.RLock()
	now := s.cfg.Clock()
	frozen := *s.w
	frozen.frozen, frozen.stale, frozen.dirty = true, false, nil
	err := fn(&frozen, now)
	s.mu.RUnlock()
	if !frozen.stale {
		return err
	}
	if again != nil {
		again()
	}
	return s.update(fn)
}

// ServeHTTP routes a request: the admin API, or an AWS call by the service of its SigV4
// credential scope.
func (s *Server) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_cloudsim/") {
		s.admin(rw, r)
		return
	}
	body, err := readBody(r)
	if err != nil {
		http.Error(rw, "read body: "+err.Error(), http.StatusBadRequest)
		return
	}
	c := &call{s: s, r: r, body: body, requestID: s.requestID()}
	c.instances = c.instArr[:0]
	defer c.release()
	auth, authErr := parseAuth(r.Header.Get("Authorization"))
	svcName := auth.Service
	if authErr != nil {
		svcName = guessService(r, body)
	}
	c.svc = services[svcName]
	if c.svc == nil {
		c.svc = services["ec2"]
		c.svc.writeErr(rw, c, errf("InvalidParameterValue", "service %q in the credential scope is not emulated (ec2, ssm, sts, s3, sns are)", svcName))
		return
	}
	c.region = auth.Region
	if err := c.svc.operation(c); err != nil {
		c.svc.writeErr(rw, c, asAPIError(err, c.svc))
		return
	}
	opName := c.svc.opName(c.op)
	counter := s.stats.begin(opName)
	code := ""
	defer func() { s.stats.end(counter, code, c.instances) }()

	result, err := s.handle(c, auth, authErr)
	if err != nil {
		e := asAPIError(err, c.svc)
		code = e.Code
		s.log.Debug("cloudsim call failed", "op", opName, "code", e.Code, "status", e.Status, "msg", e.Message)
		c.svc.writeErr(rw, c, e)
		return
	}
	c.svc.write(rw, c, result)
}

// release returns what the call took from pools once its answer is written.
func (c *call) release() {
	if c.qform != nil {
		c.form = nil
		c.qform.release()
		c.qform = nil
	}
}

// readBody reads the request body (at most 64 MiB): in one allocation of its length when the
// request says it.
func readBody(r *http.Request) ([]byte, error) {
	const limit = 64 << 20
	if n := r.ContentLength; n > 0 && n <= limit {
		body := make([]byte, n)
		if _, err := io.ReadFull(r.Body, body); err != nil {
			return nil, err
		}
		return body, nil
	}
	return io.ReadAll(io.LimitReader(r.Body, limit))
}

// handle runs one call: latency, authentication, injected faults, then the handler.
func (s *Server) handle(c *call, auth sigAuth, authErr error) (any, error) {
	if d := s.faults.latency(c.svc.name, c.op); d > 0 {
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-c.r.Context().Done():
			t.Stop()
			return nil, errf(c.svc.internal.Code, "request cancelled")
		}
	}
	if authErr != nil {
		e := c.svc.unknownKey
		e.Message = "Request is missing a valid SigV4 Authorization header"
		if c.svc.name == "ec2" {
			e.Code, e.Message = "AuthFailure", "AWS was not able to validate the provided access credentials"
		}
		return nil, &e
	}
	if err := s.authenticate(c, auth); err != nil {
		return nil, err
	}
	// The provider's own user may assume roles and use S3, not manage instances: a call to EC2
	// or SSM with it is refused, as IAM would, so an adapter that forgets AssumeRole fails loudly.
	switch {
	case c.id.Provider && c.svc.name == "ec2":
		return nil, errf("UnauthorizedOperation", "You are not authorized to perform this operation. User: %s is not authorized to perform: ec2:%s", c.id.ARN(), c.op)
	case c.id.Provider && c.svc.name == "ssm":
		return nil, &apiError{"AccessDeniedException", fmt.Sprintf("User: %s is not authorized to perform: ssm:%s", c.id.ARN(), c.op), 400}
	}
	if kind, f := s.faults.decide(c.svc.name, c.op, c.id.Account); kind != "" {
		if kind == FaultThrottle {
			e := c.svc.throttle
			return nil, &e
		}
		e := c.svc.internal
		if f.Code != "" {
			e = apiError{Code: f.Code, Message: "injected fault", Status: statusForCode(f.Code)}
		}
		if f.Message != "" {
			e.Message = f.Message
		}
		if f.Status != 0 {
			e.Status = f.Status
		}
		return nil, &e
	}
	h := c.svc.handlers[c.op]
	if h == nil {
		return nil, errf("InvalidAction", "The action %s is not valid for this web service (cloudsim emulates: %s)", c.op,
			strings.Join(sortedKeys(c.svc.handlers), ", "))
	}
	return h(c)
}

// authenticate finds the secret of the access key, verifies the signature and sets the caller.
func (s *Server) authenticate(c *call, a sigAuth) error {
	s.mu.RLock()
	var secret, token string
	var expiration time.Time
	var ident identity
	if a.AccessKey == s.w.meta.ProviderKey {
		secret = s.w.meta.ProviderSecret
		ident = identity{Account: s.cfg.ProviderAccountID, Provider: true, seed: s.cfg.Seed}
	} else if sess := s.w.sessions[a.AccessKey]; sess != nil {
		// A session is never changed once made (a new AssumeRole makes a new one), so the
		// identity can point at it after the lock is released.
		secret, token, expiration = sess.Secret, sess.Token, sess.Expiration
		ident = identity{Account: sess.Account, seed: s.cfg.Seed, sess: sess}
	}
	s.mu.RUnlock()
	if secret == "" {
		e := c.svc.unknownKey
		return &e
	}
	if !verifySignature(c.r, a, secret, c.r.Header.Get("X-Amz-Content-Sha256"), c.body, &s.keys) {
		e := c.svc.badSignature
		return &e
	}
	if token != "" {
		if c.r.Header.Get("X-Amz-Security-Token") != token {
			e := c.svc.unknownKey
			e.Message = "The security token included in the request is invalid"
			return &e
		}
		if !s.cfg.Clock().Before(expiration) {
			e := c.svc.expired
			return &e
		}
	}
	c.id = ident
	return nil
}

func (s *Server) requestID() string {
	var n [20]byte
	sum := hashBytes(s.cfg.Seed, "request", string(strconv.AppendUint(n[:0], s.reqSeq.Add(1), 10)))
	var h [32]byte
	hex.Encode(h[:], sum[:16])
	// 8-4-4-4-12, as before: one allocation for the id.
	var out [36]byte
	copy(out[0:8], h[0:8])
	copy(out[9:13], h[8:12])
	copy(out[14:18], h[12:16])
	copy(out[19:23], h[16:20])
	copy(out[24:36], h[20:32])
	out[8], out[13], out[18], out[23] = '-', '-', '-', '-'
	return string(out[:])
}

// guessService picks the protocol to answer an unsigned request in.
func guessService(r *http.Request, body []byte) string {
	switch {
	case strings.HasPrefix(r.Header.Get("X-Amz-Target"), "AmazonSSM."):
		return "ssm"
	case strings.Contains(string(body), "Version=2011-06-15"):
		return "sts"
	case strings.Contains(string(body), "Action="), r.URL.Query().Get("Action") != "":
		return "ec2"
	default:
		return "s3"
	}
}

func asAPIError(err error, svc *service) *apiError {
	var e *apiError
	if errors.As(err, &e) {
		return e
	}
	in := svc.internal
	in.Message = err.Error()
	return &in
}
