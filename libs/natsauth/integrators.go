package natsauth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/events"
)

// Consumer metadata keys of an integrator's consumer: the consumer is the credential's record,
// so listing and revoking need no store of their own.
const (
	metaTenant     = "patchwave.tenant"
	metaIntegrator = "patchwave.integrator"
	metaUser       = "patchwave.user"
	metaIssued     = "patchwave.issued"
	metaExpires    = "patchwave.expires"
)

var integratorNamePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

// IntegratorsConfig configures Integrators.
type IntegratorsConfig struct {
	// Conn is a connection of UserIntegrations (or UserAdmin): it creates, reads and deletes the
	// integrators' consumers. Required.
	Conn *nats.Conn
	// System is a connection of UserSystem, in the system account: it looks up and pushes the
	// account JWT whose revocation list shuts revoked integrators out. Required.
	System *nats.Conn
	// Material signs the integrators' user JWTs (account signing key) and the account JWT
	// (operator signing key). Required.
	Material *Material
	// DefaultTTL is the lifetime of credentials issued without one. Optional, default 30 days.
	DefaultTTL time.Duration
	// MinTTL and MaxTTL bound a credential's lifetime. Optional, default 1 minute and 365 days.
	// MaxTTL also says how long a revocation is kept in the account JWT: after it, every JWT
	// the revocation covers has expired.
	MinTTL, MaxTTL time.Duration
	// Timeout bounds each request to the server. Optional, default 5s.
	Timeout time.Duration
	// Clock gives the issue time and decides expiry. Optional, default time.Now.
	Clock func() time.Time
}

func (c *IntegratorsConfig) setDefaults() {
	if c.DefaultTTL == 0 {
		c.DefaultTTL = 30 * 24 * time.Hour
	}
	if c.MinTTL == 0 {
		c.MinTTL = time.Minute
	}
	if c.MaxTTL == 0 {
		c.MaxTTL = 365 * 24 * time.Hour
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// Validate reports every problem with the configuration.
func (c IntegratorsConfig) Validate() error {
	var errs []error
	if c.Conn == nil {
		errs = append(errs, errors.New("Conn: required"))
	}
	if c.System == nil {
		errs = append(errs, errors.New("System: required"))
	}
	if c.Material == nil {
		errs = append(errs, errors.New("Material: required"))
	}
	if c.MinTTL < 0 || c.MaxTTL < c.MinTTL {
		errs = append(errs, fmt.Errorf("MinTTL %s, MaxTTL %s: must be 0 < MinTTL <= MaxTTL", c.MinTTL, c.MaxTTL))
	}
	if c.DefaultTTL < c.MinTTL || c.DefaultTTL > c.MaxTTL {
		errs = append(errs, fmt.Errorf("DefaultTTL %s: must be from MinTTL %s to MaxTTL %s", c.DefaultTTL, c.MinTTL, c.MaxTTL))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("Timeout: must not be negative"))
	}
	return errors.Join(errs...)
}

// Integrators issues, lists and revokes integrator credentials: per tenant, a durable consumer
// on the tenant stream filtered to patch.<tenant>.> and a NATS user that can only fetch from it
// (and acknowledge and inspect it). The user cannot publish anything, read another tenant,
// create a consumer or touch a stage's consumer. A credential expires on its own; revoking one
// closes its connections at once, refuses it from then on, and deletes its consumer.
//
// It is the Go API behind the REST route that operators and tenant admins will call.
type Integrators struct {
	cfg IntegratorsConfig
	js  jetstream.JetStream
	// mu serializes read-modify-write updates of the account JWT by this process.
	mu sync.Mutex
}

// NewIntegrators checks cfg and returns the issuer.
func NewIntegrators(cfg IntegratorsConfig) (*Integrators, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("integrators config: %w", err)
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return nil, fmt.Errorf("integrators: jetstream: %w", err)
	}
	return &Integrators{cfg: cfg, js: js}, nil
}

// Integrator is one integrator credential as listed: what it reads and until when.
type Integrator struct {
	// Tenant whose events the integrator reads.
	Tenant string
	// Name of the integration, unique per tenant among live credentials.
	Name string
	// Consumer is the durable consumer it fetches from, on Stream; also its NATS user name.
	Consumer string
	// Stream is the tenant stream, events.StreamTenant.
	Stream string
	// FilterSubject is patch.<tenant>.>.
	FilterSubject string
	// InboxPrefix is the inbox prefix the integrator must connect with
	// (nats.CustomInboxPrefix, or the nats CLI's --inbox-prefix): its user may subscribe to
	// nothing else.
	InboxPrefix string
	// User is the public nkey of its NATS user.
	User string
	// Issued and Expires bound its lifetime.
	Issued, Expires time.Time
	// Expired says whether Expires has passed (by the Clock).
	Expired bool
}

// IssuedIntegrator is a newly issued credential with its secret.
type IssuedIntegrator struct {
	Integrator
	// Creds is the NATS credentials file (user JWT and seed). It is shown once: nothing keeps
	// it, so a lost file means a new credential.
	Creds []byte
}

// IssueRequest asks for one integrator credential.
type IssueRequest struct {
	// Tenant whose events the integrator reads. Required.
	Tenant string
	// Name of the integration: 1-32 lower-case letters, digits or '-'. Required.
	Name string
	// TTL is the credential's lifetime. Optional, default IntegratorsConfig.DefaultTTL.
	TTL time.Duration
	// DeliverNew makes the consumer start with the next event instead of the tenant's first.
	// Optional, default false: an integrator reads the tenant's whole history first.
	DeliverNew bool
}

// IntegratorConsumer returns the consumer (and user) name of an integrator:
// "integ_<tenant>_<name>". Neither a tenant nor a name holds '_', so the name is unambiguous.
func IntegratorConsumer(tenant, name string) string { return integratorPrefix + tenant + "_" + name }

func validateIntegrator(v *apierr.Violations, tenant, name string) {
	if err := events.ValidateTenant(tenant); err != nil {
		v.Add("tenant", err.Error())
	}
	if !integratorNamePattern.MatchString(name) {
		v.Add("name", fmt.Sprintf("%q must match %s (1-32 lower-case letters, digits or '-')", name, integratorNamePattern))
	}
}

// Issue provisions an integrator: it creates the consumer and signs the user. A tenant's live
// credential of the same name is not replaced (ErrFailedPrecondition): revoke it first.
func (x *Integrators) Issue(ctx context.Context, req IssueRequest) (IssuedIntegrator, error) {
	var v apierr.Violations
	validateIntegrator(&v, req.Tenant, req.Name)
	ttl := req.TTL
	if ttl == 0 {
		ttl = x.cfg.DefaultTTL
	}
	if ttl < x.cfg.MinTTL || ttl > x.cfg.MaxTTL {
		v.Add("ttl", fmt.Sprintf("%s must be from %s to %s", ttl, x.cfg.MinTTL, x.cfg.MaxTTL))
	}
	if err := v.Err(); err != nil {
		return IssuedIntegrator{}, err
	}
	name := IntegratorConsumer(req.Tenant, req.Name)
	issued := x.cfg.Clock().UTC().Truncate(time.Second)
	in := Integrator{
		Tenant: req.Tenant, Name: req.Name, Consumer: name, Stream: events.StreamTenant,
		FilterSubject: events.RootTenant + "." + req.Tenant + ".>", InboxPrefix: InboxPrefix(name),
		Issued: issued, Expires: issued.Add(ttl),
	}
	creds, user, err := x.cfg.Material.Issue(User{
		Name: name, Permissions: integratorPermissions(name), Expires: in.Expires,
		Tags: []string{"tenant:" + req.Tenant, "integrator:" + req.Name},
	})
	if err != nil {
		return IssuedIntegrator{}, fmt.Errorf("issue integrator %s: %w", name, err)
	}
	in.User = user
	cfg := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   fmt.Sprintf("integrator %s of tenant %s", req.Name, req.Tenant),
		FilterSubject: in.FilterSubject,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       30 * time.Second,
		MaxAckPending: 1000,
		// An integrator cannot make the server hold more than this per pull.
		MaxRequestBatch: 1000,
		DeliverPolicy:   jetstream.DeliverAllPolicy,
		Metadata: map[string]string{
			metaTenant: req.Tenant, metaIntegrator: req.Name, metaUser: user,
			metaIssued: in.Issued.Format(time.RFC3339), metaExpires: in.Expires.Format(time.RFC3339),
		},
	}
	if req.DeliverNew {
		cfg.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	ctx, cancel := context.WithTimeout(ctx, x.cfg.Timeout)
	defer cancel()
	if _, err := x.js.CreateConsumer(ctx, events.StreamTenant, cfg); err != nil {
		if errors.Is(err, jetstream.ErrConsumerExists) {
			return IssuedIntegrator{}, fmt.Errorf("%w: integrator %q of tenant %s exists; revoke it first", apierr.ErrFailedPrecondition, req.Name, req.Tenant)
		}
		return IssuedIntegrator{}, fmt.Errorf("issue integrator %s: create consumer: %w", name, err)
	}
	return IssuedIntegrator{Integrator: in, Creds: creds}, nil
}

// List returns the tenant's credentials, expired ones included until Prune removes them, by
// name.
func (x *Integrators) List(ctx context.Context, tenant string) ([]Integrator, error) {
	if err := events.ValidateTenant(tenant); err != nil {
		return nil, (&apierr.Violations{{Field: "tenant", Rule: err.Error()}}).Err()
	}
	return x.list(ctx, integratorPrefix+tenant+"_")
}

// list returns the integrators whose consumer names start with prefix.
func (x *Integrators) list(ctx context.Context, prefix string) ([]Integrator, error) {
	ctx, cancel := context.WithTimeout(ctx, x.cfg.Timeout)
	defer cancel()
	s, err := x.js.Stream(ctx, events.StreamTenant)
	if err != nil {
		return nil, fmt.Errorf("list integrators: %w", err)
	}
	var out []Integrator
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() {
		if !strings.HasPrefix(ci.Name, prefix) {
			continue
		}
		out = append(out, x.fromConsumer(ci))
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("list integrators: %w", err)
	}
	slices.SortFunc(out, func(a, b Integrator) int { return strings.Compare(a.Consumer, b.Consumer) })
	return out, nil
}

func (x *Integrators) fromConsumer(ci *jetstream.ConsumerInfo) Integrator {
	md := ci.Config.Metadata
	in := Integrator{
		Tenant: md[metaTenant], Name: md[metaIntegrator], Consumer: ci.Name, Stream: ci.Stream,
		FilterSubject: ci.Config.FilterSubject, InboxPrefix: InboxPrefix(ci.Name), User: md[metaUser],
	}
	in.Issued, _ = time.Parse(time.RFC3339, md[metaIssued])
	in.Expires, _ = time.Parse(time.RFC3339, md[metaExpires])
	in.Expired = !in.Expires.After(x.cfg.Clock())
	return in
}

// Revoke shuts an integrator out at once: its user is added to the account's revocation list
// (the server closes its connections and refuses it from then on) and its consumer is deleted.
// An unknown integrator is ErrNotFound.
func (x *Integrators) Revoke(ctx context.Context, tenant, name string) error {
	var v apierr.Violations
	validateIntegrator(&v, tenant, name)
	if err := v.Err(); err != nil {
		return err
	}
	consumer := IntegratorConsumer(tenant, name)
	ctx, cancel := context.WithTimeout(ctx, x.cfg.Timeout)
	defer cancel()
	c, err := x.js.Consumer(ctx, events.StreamTenant, consumer)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("%w: integrator %q of tenant %s", apierr.ErrNotFound, name, tenant)
	}
	if err != nil {
		return fmt.Errorf("revoke integrator %s: %w", consumer, err)
	}
	if user := c.CachedInfo().Config.Metadata[metaUser]; user != "" {
		if err := x.revokeUser(ctx, user); err != nil {
			return fmt.Errorf("revoke integrator %s: %w", consumer, err)
		}
	}
	if err := x.js.DeleteConsumer(ctx, events.StreamTenant, consumer); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return fmt.Errorf("revoke integrator %s: delete consumer: %w", consumer, err)
	}
	return nil
}

// Prune deletes the consumers of expired credentials (the server refuses their users already)
// and returns the names it deleted.
func (x *Integrators) Prune(ctx context.Context) ([]string, error) {
	all, err := x.list(ctx, integratorPrefix)
	if err != nil {
		return nil, err
	}
	var deleted []string
	for _, in := range all {
		if !in.Expired {
			continue
		}
		dctx, cancel := context.WithTimeout(ctx, x.cfg.Timeout)
		err := x.js.DeleteConsumer(dctx, events.StreamTenant, in.Consumer)
		cancel()
		if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return deleted, fmt.Errorf("prune integrator %s: %w", in.Consumer, err)
		}
		deleted = append(deleted, in.Consumer)
	}
	return deleted, nil
}

// revokeUser adds user to the account JWT's revocations, drops revocations older than MaxTTL
// (every JWT they cover has expired), and pushes the JWT to the resolver.
func (x *Integrators) revokeUser(ctx context.Context, user string) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	m := x.cfg.Material
	// The resolver holds the newest account JWT, with the revocations pushed before.
	msg, err := x.cfg.System.RequestWithContext(ctx, fmt.Sprintf("$SYS.REQ.ACCOUNT.%s.CLAIMS.LOOKUP", m.Account()), nil)
	if err != nil {
		return fmt.Errorf("look up account jwt: %w", err)
	}
	ac, err := jwt.DecodeAccountClaims(string(msg.Data))
	if err != nil {
		return fmt.Errorf("look up account jwt: %w", err)
	}
	if ac.Subject != m.Account() {
		return fmt.Errorf("look up account jwt: got account %s, want %s", ac.Subject, m.Account())
	}
	// The server compares a revocation with the user JWT's issue time, which the jwt library
	// takes from the wall clock, so the revocation does too.
	now := time.Now()
	for pub, at := range ac.Revocations {
		if pub != jwt.All && time.Unix(at, 0).Before(now.Add(-x.cfg.MaxTTL)) {
			delete(ac.Revocations, pub)
		}
	}
	ac.RevokeAt(user, now)
	token, err := ac.Encode(m.operatorSigning)
	if err != nil {
		return fmt.Errorf("sign account jwt: %w", err)
	}
	resp, err := x.cfg.System.RequestWithContext(ctx, claimsUpdateSubject, []byte(token))
	if err != nil {
		return fmt.Errorf("push account jwt: %w", err)
	}
	return claimsUpdateResult(resp.Data)
}

// claimsUpdateResult reads the resolver's answer to a claims update.
func claimsUpdateResult(b []byte) error {
	var r struct {
		Data *struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"data"`
		Error *struct {
			Code        int    `json:"code"`
			Description string `json:"description"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("push account jwt: answer %q: %w", b, err)
	}
	if r.Error != nil {
		return fmt.Errorf("push account jwt: %s (code %d)", r.Error.Description, r.Error.Code)
	}
	if r.Data == nil || r.Data.Code != 200 {
		return fmt.Errorf("push account jwt: unexpected answer %q", b)
	}
	return nil
}
