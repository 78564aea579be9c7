// Package authn authenticates the gateway's requests: it turns the bearer credential of an
// Authorization header into an auth.Identity, or says why not in the terms of RFC 6750.
//
// Three credentials are accepted, all sent as "Authorization: Bearer <credential>":
//
//   - API keys ("pwk_..."), checked against the gateway's key store;
//   - JWTs signed with HS256 by a local key (single-machine use: a script mints its own);
//   - JWTs signed with RS256 or ES256 by an OIDC provider, whose keys come from its JWKS URL
//     (given, or found by OIDC discovery at the issuer). Keys are cached and refreshed every
//     JWKSRefresh, and at once (at most once a minute) for a key id the cache does not know,
//     so the provider can rotate its keys.
//
// A JWT must name its issuer and audience as configured, carry exp (and, if it has them, iat
// and nbf within the bounded ClockSkew), a subject, and roles (and a tenant for the tenant
// roles) in the configured claims. The algorithm decides which verifier a token goes to, and
// each verifier accepts only its own algorithms, so an HS256 token is never checked with a
// public key.
package authn

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/services/gateway/internal/apikeys"
)

// Keys verifies API keys (the gateway's *apikeys.Store).
type Keys interface {
	Verify(key string) (*apikeys.Record, error)
}

// LocalJWT configures HS256 tokens signed by a local key.
type LocalJWT struct {
	// Key is the HMAC key, at least 32 bytes. Optional: without one, HS256 tokens are refused.
	Key []byte
	// Issuer the tokens name. Optional, default "patchwave".
	Issuer string
	// Audience the tokens name. Optional, default "patchwave".
	Audience string
}

// OIDC configures tokens of an OIDC provider.
type OIDC struct {
	// Issuer is the provider's issuer URL, which the tokens name. Optional: empty disables
	// OIDC tokens.
	Issuer string
	// Audience the tokens must name (the client id Patchwave is registered as). Required with
	// Issuer.
	Audience string
	// JWKSURL is where the provider publishes its keys. Optional: empty discovers it at
	// <Issuer>/.well-known/openid-configuration when the gateway starts.
	JWKSURL string
	// JWKSRefresh is how often the keys are fetched again. Optional, default 1h.
	JWKSRefresh time.Duration
	// HTTPClient fetches discovery and keys. Optional, default a client with a 10s timeout.
	HTTPClient *http.Client
}

// Config configures an Authenticator.
type Config struct {
	// Keys checks API keys. Required.
	Keys Keys
	// Local HS256 tokens. Optional.
	Local LocalJWT
	// OIDC tokens. Optional.
	OIDC OIDC
	// ClockSkew is the leeway of exp, nbf and iat. Optional, default 30s, at most 5m.
	ClockSkew time.Duration
	// SubjectClaim names the subject. Optional, default "sub".
	SubjectClaim string
	// RolesClaim names the roles claim: an array of strings or one space-separated string.
	// Optional, default "roles".
	RolesClaim string
	// TenantClaim names the tenant claim. Optional, default "tenant".
	TenantClaim string
	// Clock. Optional, default time.Now.
	Clock func() time.Time
}

func (c *Config) setDefaults() {
	if c.Local.Issuer == "" {
		c.Local.Issuer = "patchwave"
	}
	if c.Local.Audience == "" {
		c.Local.Audience = "patchwave"
	}
	if c.OIDC.JWKSRefresh == 0 {
		c.OIDC.JWKSRefresh = time.Hour
	}
	if c.OIDC.HTTPClient == nil {
		c.OIDC.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if c.ClockSkew == 0 {
		c.ClockSkew = 30 * time.Second
	}
	if c.SubjectClaim == "" {
		c.SubjectClaim = "sub"
	}
	if c.RolesClaim == "" {
		c.RolesClaim = "roles"
	}
	if c.TenantClaim == "" {
		c.TenantClaim = "tenant"
	}
	if c.Clock == nil {
		c.Clock = time.Now
	}
}

// Validate reports every problem with the configuration.
func (c Config) Validate() error {
	var errs []error
	if c.Keys == nil {
		errs = append(errs, errors.New("Keys: required"))
	}
	if len(c.Local.Key) > 0 && len(c.Local.Key) < 32 {
		errs = append(errs, fmt.Errorf("Local.Key: must be at least 32 bytes, got %d", len(c.Local.Key)))
	}
	if c.OIDC.Issuer != "" && c.OIDC.Audience == "" {
		errs = append(errs, errors.New("OIDC.Audience: required with OIDC.Issuer"))
	}
	if c.OIDC.Issuer == "" && c.OIDC.JWKSURL != "" {
		errs = append(errs, errors.New("OIDC.Issuer: required with OIDC.JWKSURL (tokens are checked against it)"))
	}
	if c.ClockSkew < 0 || c.ClockSkew > 5*time.Minute {
		errs = append(errs, fmt.Errorf("ClockSkew %s: must be from 0 to 5m", c.ClockSkew))
	}
	if c.OIDC.JWKSRefresh < time.Minute {
		errs = append(errs, fmt.Errorf("OIDC.JWKSRefresh %s: must be at least 1m", c.OIDC.JWKSRefresh))
	}
	return errors.Join(errs...)
}

// Authenticator turns bearer credentials into identities.
type Authenticator struct {
	cfg   Config
	local *jwt.Parser
	oidc  *jwt.Parser
	jwks  keyfunc.Keyfunc
}

// New checks cfg and returns the authenticator. With OIDC it discovers the JWKS URL when not
// given and starts fetching the keys; ctx bounds their refreshing.
func New(ctx context.Context, cfg Config) (*Authenticator, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("authn config: %w", err)
	}
	a := &Authenticator{cfg: cfg}
	opts := func(methods []string, iss, aud string) *jwt.Parser {
		return jwt.NewParser(jwt.WithValidMethods(methods), jwt.WithIssuer(iss), jwt.WithAudience(aud),
			jwt.WithLeeway(cfg.ClockSkew), jwt.WithExpirationRequired(), jwt.WithIssuedAt(), jwt.WithTimeFunc(cfg.Clock))
	}
	if len(cfg.Local.Key) > 0 {
		a.local = opts([]string{"HS256"}, cfg.Local.Issuer, cfg.Local.Audience)
	}
	if cfg.OIDC.Issuer != "" {
		url := cfg.OIDC.JWKSURL
		if url == "" {
			var err error
			if url, err = discover(ctx, cfg.OIDC); err != nil {
				return nil, err
			}
		}
		kf, err := keyfunc.NewDefaultOverrideCtx(ctx, []string{url}, keyfunc.Override{
			Client:            cfg.OIDC.HTTPClient,
			RefreshInterval:   cfg.OIDC.JWKSRefresh,
			RefreshUnknownKID: rate.NewLimiter(rate.Every(time.Minute), 1),
			RateLimitWaitMax:  5 * time.Second,
			HTTPTimeout:       10 * time.Second,
		})
		if err != nil {
			return nil, fmt.Errorf("authn: JWKS %s: %w", url, err)
		}
		a.jwks = kf
		a.oidc = opts([]string{"RS256", "ES256"}, cfg.OIDC.Issuer, cfg.OIDC.Audience)
	}
	return a, nil
}

// discover reads the JWKS URL of the issuer's OIDC configuration.
func discover(ctx context.Context, o OIDC) (string, error) {
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, o.HTTPClient), 15*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(ctx, o.Issuer)
	if err != nil {
		return "", fmt.Errorf("authn: OIDC discovery at %s: %w", o.Issuer, err)
	}
	var meta struct {
		JWKSURI string `json:"jwks_uri"`
	}
	if err := p.Claims(&meta); err != nil {
		return "", fmt.Errorf("authn: OIDC discovery at %s: %w", o.Issuer, err)
	}
	if meta.JWKSURI == "" {
		return "", fmt.Errorf("authn: OIDC discovery at %s: the configuration names no jwks_uri", o.Issuer)
	}
	return meta.JWKSURI, nil
}

// Error is why a request is not authenticated, in the terms of RFC 6750.
type Error struct {
	// Code is "" for a request without a credential, else "invalid_request" or
	// "invalid_token".
	Code string
	// Description says what is wrong.
	Description string
}

func (e *Error) Error() string {
	if e.Code == "" {
		return e.Description
	}
	return e.Code + ": " + e.Description
}

// Challenge is the WWW-Authenticate header of the error.
func (e *Error) Challenge() string {
	if e.Code == "" {
		return `Bearer realm="patchwave"`
	}
	return fmt.Sprintf(`Bearer realm="patchwave", error=%q, error_description=%q`, e.Code, strings.ReplaceAll(e.Description, `"`, "'"))
}

func invalid(format string, args ...any) *Error {
	return &Error{Code: "invalid_token", Description: fmt.Sprintf(format, args...)}
}

// Result is an authenticated request.
type Result struct {
	Identity *auth.Identity
	// RateKey is what the request's rate limit counts against: the API key, or the token's
	// issuer and subject (a caller cannot get a fresh budget by getting a fresh token).
	RateKey string
}

// Authenticate checks the Authorization header value.
func (a *Authenticator) Authenticate(ctx context.Context, header string) (Result, error) {
	if header == "" {
		return Result{}, &Error{Description: "this API needs a credential: Authorization: Bearer <API key or JWT>"}
	}
	scheme, cred, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(cred) == "" {
		return Result{}, &Error{Code: "invalid_request", Description: "the Authorization header must be: Bearer <API key or JWT>"}
	}
	cred = strings.TrimSpace(cred)
	if strings.HasPrefix(cred, apikeys.Prefix) {
		r, err := a.cfg.Keys.Verify(cred)
		if err != nil {
			return Result{}, invalid("%v", err)
		}
		return Result{Identity: r.Identity(), RateKey: "key:" + r.ID}, nil
	}
	return a.token(ctx, cred)
}

func (a *Authenticator) token(ctx context.Context, raw string) (Result, error) {
	unverified, _, err := jwt.NewParser().ParseUnverified(raw, jwt.MapClaims{})
	if err != nil {
		return Result{}, invalid("neither an API key nor a JWT: %v", err)
	}
	var parser *jwt.Parser
	var key jwt.Keyfunc
	switch alg := unverified.Method.Alg(); alg {
	case "HS256":
		if a.local == nil {
			return Result{}, invalid("HS256 tokens are not accepted here (no local key is configured)")
		}
		parser, key = a.local, func(*jwt.Token) (any, error) { return a.cfg.Local.Key, nil }
	case "RS256", "ES256":
		if a.oidc == nil {
			return Result{}, invalid("%s tokens are not accepted here (no OIDC provider is configured)", alg)
		}
		parser, key = a.oidc, a.jwks.KeyfuncCtx(ctx)
	default:
		return Result{}, invalid("tokens signed with %s are not accepted (HS256, RS256 or ES256)", alg)
	}
	claims := jwt.MapClaims{}
	if _, err := parser.ParseWithClaims(raw, claims, key); err != nil {
		return Result{}, invalid("%s", tokenProblem(err))
	}
	iss, _ := claims.GetIssuer()
	id := &auth.Identity{CredentialKind: auth.KindJWT}
	id.Subject, _ = claims[a.cfg.SubjectClaim].(string)
	id.Tenant, _ = claims[a.cfg.TenantClaim].(string)
	if exp, _ := claims.GetExpirationTime(); exp != nil {
		id.Expires = exp.UTC()
	}
	switch roles := claims[a.cfg.RolesClaim].(type) {
	case string:
		for r := range strings.FieldsSeq(roles) {
			id.Roles = append(id.Roles, auth.Role(r))
		}
	case []any:
		for _, r := range roles {
			if s, ok := r.(string); ok {
				id.Roles = append(id.Roles, auth.Role(s))
			}
		}
	}
	if jti, _ := claims["jti"].(string); jti != "" && len(jti) <= 128 {
		id.CredentialID = "jwt:" + jti
	} else {
		sum := sha256.Sum256([]byte(raw))
		id.CredentialID = "jwt:" + hex.EncodeToString(sum[:8])
	}
	if err := id.Validate(); err != nil {
		return Result{}, invalid("the token's claims (%s, %s, %s) do not make an identity: %v",
			a.cfg.SubjectClaim, a.cfg.RolesClaim, a.cfg.TenantClaim, strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	return Result{Identity: id, RateKey: "jwt:" + iss + "|" + id.Subject}, nil
}

// tokenProblem says in a few words why golang-jwt refused a token.
func tokenProblem(err error) string {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return "the token has expired"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "the token is not valid yet"
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return "the token's issuer is not accepted"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "the token's audience is not this API"
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return "the token lacks a required claim (exp)"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return "the token's signature does not verify"
	}
	return "the token is not valid: " + err.Error()
}
