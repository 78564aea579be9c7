package httpapi

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/bus"
	"github.com/patchwave/patchwave/libs/events"
	"github.com/patchwave/patchwave/libs/grpcerr"
	"github.com/patchwave/patchwave/libs/ratelimit"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	"github.com/patchwave/patchwave/services/gateway/internal/authn"
)

// Authenticator turns an Authorization header into an identity (authn.Authenticator).
type Authenticator interface {
	Authenticate(ctx context.Context, header string) (authn.Result, error)
}

// Publisher publishes the audit events (the gateway's bus).
type Publisher interface {
	Publish(ctx context.Context, evs ...*events.Event) error
}

// GuardConfig configures a Guard.
type GuardConfig struct {
	// Authenticator checks credentials. Required.
	Authenticator Authenticator
	// Limiter counts requests per credential. Optional, default a memory limiter.
	Limiter ratelimit.Limiter
	// Limit is each credential's budget. Optional, default 50 requests/s with bursts of 100.
	Limit ratelimit.Limit
	// MaxBody bounds a request body in bytes. Optional, default 1 MiB.
	MaxBody int64
	// Logger logs what cannot be audited. Required.
	Logger *slog.Logger
	// Registerer takes the guard's metrics. Optional.
	Registerer prometheus.Registerer
	// Clock. Optional, default time.Now.
	Clock func() time.Time
}

// Guard is who may do what at the gateway: the HTTP middleware that authenticates every
// request (401), limits its rate per credential (429) and its body size (413), and the gRPC
// client interceptor that checks each call's declared rule (403, 404), forwards the caller's
// identity to the service, and audits every mutating call.
type Guard struct {
	cfg     GuardConfig
	pub     atomic.Pointer[Publisher]
	audited *prometheus.CounterVec
}

// NewGuard returns a guard; SetPublisher gives it where to audit.
func NewGuard(cfg GuardConfig) (*Guard, error) {
	if cfg.Authenticator == nil || cfg.Logger == nil {
		return nil, errors.New("guard: Authenticator and Logger are required")
	}
	if cfg.Limiter == nil {
		cfg.Limiter = ratelimit.NewMemory()
	}
	if cfg.Limit == (ratelimit.Limit{}) {
		cfg.Limit = ratelimit.Limit{Rate: 50, Burst: 100}
	}
	if err := cfg.Limit.Validate(); err != nil {
		return nil, fmt.Errorf("guard: Limit: %w", err)
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 1 << 20
	}
	if cfg.MaxBody < 1 {
		return nil, fmt.Errorf("guard: MaxBody %d: must be positive", cfg.MaxBody)
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	g := &Guard{cfg: cfg, audited: prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "patchwave", Subsystem: "gateway", Name: "audit_events_total",
		Help: "Audit events of mutating calls, by result: published, or failed (the call happened but its record is lost).",
	}, []string{"result"})}
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(g.audited); err != nil {
			var are prometheus.AlreadyRegisteredError
			if !errors.As(err, &are) {
				return nil, fmt.Errorf("guard metrics: %w", err)
			}
		}
	}
	return g, nil
}

// SetPublisher sets where audit events go.
func (g *Guard) SetPublisher(p Publisher) { g.pub.Store(&p) }

// callInfo is what the HTTP side knows of a call, for its audit record.
type callInfo struct {
	clientAddr string
	httpMethod string
	path       string
	// bodyTooLarge is set when the body passed MaxBody.
	bodyTooLarge atomic.Bool
}

type callInfoKey struct{}

func infoOf(ctx context.Context) *callInfo {
	ci, _ := ctx.Value(callInfoKey{}).(*callInfo)
	return ci
}

// OpenAPIPath is the one route served without a credential: the API's description holds no
// data.
const OpenAPIPath = "/openapi.json"

// middleware authenticates, rate-limits and bounds the body of every request but the OpenAPI
// document.
func (g *Guard) middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == OpenAPIPath && r.Method == http.MethodGet {
			next.ServeHTTP(w, r)
			return
		}
		res, err := g.cfg.Authenticator.Authenticate(r.Context(), r.Header.Get("Authorization"))
		if err != nil {
			var aerr *authn.Error
			if !errors.As(err, &aerr) {
				aerr = &authn.Error{Code: "invalid_token", Description: err.Error()}
			}
			w.Header().Set("WWW-Authenticate", aerr.Challenge())
			writeStatus(w, http.StatusUnauthorized, codes.Unauthenticated, "unauthenticated: "+aerr.Description)
			return
		}
		ok, retry, err := g.cfg.Limiter.Allow(r.Context(), res.RateKey, g.cfg.Limit)
		if err != nil {
			// A limiter that cannot answer (Redis down) does not take the API down with it.
			g.cfg.Logger.WarnContext(r.Context(), "rate limiter unavailable; request let through", "error", err)
		} else if !ok {
			secs := int(math.Ceil(retry.Seconds()))
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			writeStatus(w, http.StatusTooManyRequests, codes.ResourceExhausted,
				fmt.Sprintf("rate limit of %s exceeded for this credential: retry after %ds", g.cfg.Limit, max(secs, 1)))
			return
		}
		limit := g.cfg.MaxBody
		if r.URL.Path == advisoryImportPath {
			limit = max(limit, MaxAdvisoryUpload) // a raw vendor document; its own check says more
		}
		if r.ContentLength > limit {
			writeStatus(w, http.StatusRequestEntityTooLarge, codes.InvalidArgument,
				fmt.Sprintf("invalid argument: body: must be at most %d bytes, got %d", limit, r.ContentLength))
			return
		}
		// The credential stays here: the services get the identity it proved (grpc-gateway
		// would forward the header as authorization metadata).
		r.Header.Del("Authorization")
		ci := &callInfo{clientAddr: r.RemoteAddr, httpMethod: r.Method, path: r.URL.Path}
		if r.Body != nil && r.Body != http.NoBody {
			r.Body = &limitedBody{ReadCloser: http.MaxBytesReader(w, r.Body, limit), info: ci}
		}
		ctx := context.WithValue(auth.WithIdentity(r.Context(), res.Identity), callInfoKey{}, ci)
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// limitedBody notes in the call's info that the body passed the limit, so the error handler
// answers 413 rather than grpc-gateway's 400.
type limitedBody struct {
	io.ReadCloser
	info *callInfo
}

func (b *limitedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		b.info.bodyTooLarge.Store(true)
	}
	return n, err
}

// tooLarge turns the error of a body that passed the limit into a 413.
func tooLarge(r *http.Request, err error) error {
	if ci := infoOf(r.Context()); ci != nil && ci.bodyTooLarge.Load() {
		return &runtime.HTTPStatusError{HTTPStatus: http.StatusRequestEntityTooLarge,
			Err: status.Errorf(codes.InvalidArgument, "invalid argument: body: larger than the gateway accepts")}
	}
	return err
}

// writeStatus answers the API's error body.
func writeStatus(w http.ResponseWriter, httpStatus int, code codes.Code, msg string) {
	b, _ := json.Marshal(map[string]any{"code": code, "message": msg, "details": []any{}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(httpStatus)
	_, _ = w.Write(b)
}

// Interceptor is the gRPC client interceptor of every call the gateway makes: it authorizes
// the call by its rule, forwards the identity to the service, and audits mutating calls.
func (g *Guard) Interceptor() grpc.UnaryClientInterceptor {
	return func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		msg, _ := req.(proto.Message)
		id := auth.FromContext(ctx)
		rule, err := auth.RuleOf(method)
		if err == nil {
			err = auth.Authorize(id, rule, msg)
		} else {
			// Not reachable for a served route (the gateway checks every rule at start): refuse.
			err = fmt.Errorf("%w: %w", apierr.ErrPermissionDenied, err)
		}
		if err == nil {
			err = invoker(auth.OutgoingContext(ctx, id), method, req, reply, cc, opts...)
		} else {
			err = grpcerr.ToStatus(err)
		}
		if rule.Mutates {
			g.audit(ctx, id, rule, msg, err)
		}
		return err
	}
}

// audit publishes the record of one mutating call. A record that cannot be published is logged
// and counted: the call has happened, and failing it now would not undo it.
func (g *Guard) audit(ctx context.Context, id *auth.Identity, rule auth.Rule, req proto.Message, callErr error) {
	st := status.Convert(callErr)
	now := g.cfg.Clock().UTC()
	rec := &eventsv1.AuditRecorded{
		AuditId: auditID(now), Method: rule.Method, Permission: string(rule.Permission),
		CorrelationId: bus.CorrelationID(ctx), Outcome: codeName(st.Code()), HttpStatus: int32(HTTPStatus(st.Code())),
		Time: timestamppb.New(now),
	}
	if callErr != nil {
		rec.Error = st.Message()
	}
	if route, ok := runtime.HTTPPathPattern(ctx); ok {
		rec.Route = route
	}
	if ci := infoOf(ctx); ci != nil {
		rec.ClientAddress, rec.HttpMethod, rec.Path = ci.clientAddr, ci.httpMethod, ci.path
	}
	tenant := auth.CallTenant(id, rule, req)
	if id != nil {
		rec.Actor, rec.CredentialId, rec.CredentialKind, rec.Roles = id.Subject, id.CredentialID, id.CredentialKind, id.RoleNames()
		if id.Tenant != "" && tenant != id.Tenant {
			// Refused for naming another tenant (or the provider-wide resources): the record
			// is the caller's tenant's, never the other's.
			rec.TargetTenant, tenant = tenant, id.Tenant
		}
	}
	if events.ValidateTenant(tenant) != nil {
		rec.TargetTenant, tenant = tenant, auth.ProviderTenant
	}
	rec.Tenant = tenant
	ev, err := events.New(tenant, rec.GetAuditId(), rec)
	if err == nil {
		p := g.pub.Load()
		if p == nil {
			err = errors.New("no publisher")
		} else {
			pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			err = (*p).Publish(pctx, ev)
			cancel()
		}
	}
	if err != nil {
		g.audited.WithLabelValues("failed").Inc()
		g.cfg.Logger.ErrorContext(ctx, "audit record lost", "method", rule.Method, "actor", rec.GetActor(),
			"tenant", tenant, "outcome", rec.GetOutcome(), "error", err)
		return
	}
	g.audited.WithLabelValues("published").Inc()
}

// auditID is sortable by time: "20261110T090000.123Z-<8 hex>".
func auditID(now time.Time) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return now.Format("20060102T150405.000Z") + "-" + hex.EncodeToString(b[:])
}

// codeName is a gRPC code as the API documents them: "PERMISSION_DENIED".
func codeName(c codes.Code) string {
	if c == codes.OK {
		return "OK"
	}
	var b strings.Builder
	for i, r := range c.String() {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

// HTTPStatus is the HTTP status the gateway answers for a gRPC code (FailedPrecondition is 412).
func HTTPStatus(c codes.Code) int {
	if c == codes.FailedPrecondition {
		return http.StatusPreconditionFailed
	}
	return runtime.HTTPStatusFromCode(c)
}
