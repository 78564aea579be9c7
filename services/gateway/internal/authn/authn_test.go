package authn_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/services/gateway/internal/apikeys"
	"github.com/patchwave/patchwave/services/gateway/internal/authn"
)

// noKeys refuses every API key: these tests are about tokens (API keys are apikeys' tests and
// the gateway's).
type noKeys struct{}

func (noKeys) Verify(string) (*apikeys.Record, error) { return nil, apikeys.ErrUnknownKey }

var (
	localKey = []byte("0123456789abcdef0123456789abcdef")
	t0       = time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
)

func claims(overrides map[string]any) jwt.MapClaims {
	c := jwt.MapClaims{
		"iss": "patchwave", "aud": "patchwave", "sub": "dana@acme", "tenant": "acme",
		"roles": []string{"tenant-admin"}, "iat": t0.Unix(), "exp": t0.Add(time.Hour).Unix(), "jti": "tok-1",
	}
	for k, v := range overrides {
		if v == nil {
			delete(c, k)
		} else {
			c[k] = v
		}
	}
	return c
}

func hs256(t *testing.T, c jwt.MapClaims, key []byte) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(key)
	require.NoError(t, err)
	return s
}

func TestLocalHS256Tokens(t *testing.T) {
	clock := testkit.NewClock(t0.Add(time.Minute))
	a, err := authn.New(t.Context(), authn.Config{Keys: noKeys{}, Local: authn.LocalJWT{Key: localKey}, ClockSkew: 30 * time.Second, Clock: clock.Now})
	require.NoError(t, err)

	good := hs256(t, claims(nil), localKey)
	res, err := a.Authenticate(t.Context(), "Bearer "+good)
	require.NoError(t, err)
	require.Equal(t, auth.Identity{Subject: "dana@acme", Tenant: "acme", Roles: []auth.Role{auth.RoleTenantAdmin},
		CredentialID: "jwt:tok-1", CredentialKind: auth.KindJWT, Expires: t0.Add(time.Hour)}, *res.Identity)
	require.Equal(t, "jwt:patchwave|dana@acme", res.RateKey)

	parts := strings.Split(good, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	require.NoError(t, err)
	forged := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), "tenant-admin", "operator", 1))) + "." + parts[2]

	tests := []struct {
		name  string
		token string
		want  string
	}{
		{"a tampered payload does not verify", forged, "signature does not verify"},
		{"another key does not verify", hs256(t, claims(nil), []byte("another key, another key, another")), "signature does not verify"},
		{"an expired token is refused", hs256(t, claims(map[string]any{"exp": t0.Add(30 * time.Second).Unix()}), localKey), "has expired"},
		{"a token without exp is refused", hs256(t, claims(map[string]any{"exp": nil}), localKey), "exp"},
		{"a token issued beyond the skew in the future is refused", hs256(t, claims(map[string]any{"iat": t0.Add(2 * time.Minute).Unix()}), localKey), "not valid yet"},
		{"another issuer is refused", hs256(t, claims(map[string]any{"iss": "elsewhere"}), localKey), "issuer"},
		{"another audience is refused", hs256(t, claims(map[string]any{"aud": "other-api"}), localKey), "audience"},
		{"a tenant role without a tenant is refused", hs256(t, claims(map[string]any{"tenant": nil}), localKey), "tenant: required"},
		{"a token without roles is refused", hs256(t, claims(map[string]any{"roles": nil}), localKey), "roles: at least one"},
		{"an unsigned token is refused", unsigned(t), "not accepted"},
		{"garbage is refused", "not.a.token", "neither an API key nor a JWT"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Authenticate(t.Context(), "Bearer "+tt.token)
			var aerr *authn.Error
			require.ErrorAs(t, err, &aerr)
			require.Equal(t, "invalid_token", aerr.Code)
			require.Contains(t, aerr.Description, tt.want)
			require.Contains(t, aerr.Challenge(), `error="invalid_token"`)
		})
	}

	// Within the skew: a token that expired 20s ago, or is issued 20s ahead, still passes.
	for name, c := range map[string]map[string]any{
		"expired within the skew": {"exp": t0.Add(40 * time.Second).Unix()},
		"issued within the skew":  {"iat": t0.Add(80 * time.Second).Unix()},
	} {
		_, err := a.Authenticate(t.Context(), "Bearer "+hs256(t, claims(c), localKey))
		require.NoError(t, err, name)
	}
}

func unsigned(t *testing.T) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims(nil)).SignedString(jwt.UnsafeAllowNoneSignatureType)
	require.NoError(t, err)
	return s
}

func TestAMissingOrMalformedHeaderIsAChallenge(t *testing.T) {
	a, err := authn.New(t.Context(), authn.Config{Keys: noKeys{}})
	require.NoError(t, err)
	_, err = a.Authenticate(t.Context(), "")
	var aerr *authn.Error
	require.ErrorAs(t, err, &aerr)
	require.Empty(t, aerr.Code)
	require.Equal(t, `Bearer realm="patchwave"`, aerr.Challenge())
	_, err = a.Authenticate(t.Context(), "Basic dXNlcjpwYXNz")
	require.ErrorAs(t, err, &aerr)
	require.Equal(t, "invalid_request", aerr.Code)
	_, err = a.Authenticate(t.Context(), "Bearer "+hs256(t, claims(nil), localKey))
	require.ErrorContains(t, err, "no local key is configured")
}

// idp is an OIDC provider in the test: discovery and a JWKS whose keys the test rotates.
type idp struct {
	srv     *httptest.Server
	mu      sync.Mutex
	keys    []map[string]any
	fetches atomic.Int64
}

func startIDP(t *testing.T) *idp {
	t.Helper()
	p := &idp{}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": p.srv.URL, "jwks_uri": p.srv.URL + "/jwks",
			"authorization_endpoint": p.srv.URL + "/auth", "token_endpoint": p.srv.URL + "/token"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, _ *http.Request) {
		p.fetches.Add(1)
		p.mu.Lock()
		defer p.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"keys": p.keys})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (p *idp) publish(keys ...map[string]any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = keys
}

func rsaJWK(kid string, k *rsa.PrivateKey) map[string]any {
	return map[string]any{"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
		"n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func ecJWK(kid string, k *ecdsa.PrivateKey) map[string]any {
	x, y := make([]byte, 32), make([]byte, 32)
	k.X.FillBytes(x)
	k.Y.FillBytes(y)
	return map[string]any{"kty": "EC", "kid": kid, "alg": "ES256", "use": "sig", "crv": "P-256", "x": b64(x), "y": b64(y)}
}

func signed(t *testing.T, m jwt.SigningMethod, kid string, key any, c jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(m, c)
	tok.Header["kid"] = kid
	s, err := tok.SignedString(key)
	require.NoError(t, err)
	return s
}

func TestOIDCTokensThroughDiscoveryAndARotatedJWKS(t *testing.T) {
	p := startIDP(t)
	rsa1, err := rsa.GenerateKey(rand.Reader, 2048)
	require.NoError(t, err)
	ec2, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	p.publish(rsaJWK("rsa-1", rsa1))

	clock := testkit.NewClock(t0.Add(time.Minute))
	a, err := authn.New(t.Context(), authn.Config{
		Keys: noKeys{}, Clock: clock.Now,
		OIDC: authn.OIDC{Issuer: p.srv.URL, Audience: "patchwave-api"},
	})
	require.NoError(t, err, "the JWKS URL is discovered")
	oidcClaims := func(o map[string]any) jwt.MapClaims {
		c := claims(map[string]any{"iss": p.srv.URL, "aud": "patchwave-api", "sub": "ops-1", "tenant": nil, "roles": "operator"})
		for k, v := range o {
			c[k] = v
		}
		return c
	}

	res, err := a.Authenticate(t.Context(), "Bearer "+signed(t, jwt.SigningMethodRS256, "rsa-1", rsa1, oidcClaims(nil)))
	require.NoError(t, err)
	require.Equal(t, "ops-1", res.Identity.Subject)
	require.Equal(t, []auth.Role{auth.RoleOperator}, res.Identity.Roles, "a space-separated roles claim")
	fetched := p.fetches.Load()

	// A second call is served from the cache.
	_, err = a.Authenticate(t.Context(), "Bearer "+signed(t, jwt.SigningMethodRS256, "rsa-1", rsa1, oidcClaims(map[string]any{"jti": "tok-2"})))
	require.NoError(t, err)
	require.Equal(t, fetched, p.fetches.Load(), "keys are cached")

	// The provider rotates to an EC key: a token with the new key id makes the gateway fetch
	// the keys again.
	ecToken := signed(t, jwt.SigningMethodES256, "ec-2", ec2, oidcClaims(nil))
	p.publish(rsaJWK("rsa-1", rsa1), ecJWK("ec-2", ec2))
	_, err = a.Authenticate(t.Context(), "Bearer "+ecToken)
	require.NoError(t, err, "a rotated-in key is fetched on first sight")
	require.Greater(t, p.fetches.Load(), fetched)

	tests := []struct {
		name  string
		token string
		want  string
	}{
		{"a key the provider does not publish", signed(t, jwt.SigningMethodES256, "ec-9", mustEC(t), oidcClaims(nil)), "signature does not verify"},
		{"a token signed by the right kid with another key", signed(t, jwt.SigningMethodES256, "ec-2", mustEC(t), oidcClaims(nil)), "signature does not verify"},
		{"another issuer", signed(t, jwt.SigningMethodES256, "ec-2", ec2, oidcClaims(map[string]any{"iss": "https://evil.example"})), "issuer"},
		{"another audience", signed(t, jwt.SigningMethodES256, "ec-2", ec2, oidcClaims(map[string]any{"aud": "patchwave"})), "audience"},
		{"expired beyond the skew", signed(t, jwt.SigningMethodES256, "ec-2", ec2, oidcClaims(map[string]any{"exp": t0.Unix()})), "has expired"},
		{"an HS256 token with the OIDC issuer (no local key)", hs256(t, oidcClaims(nil), localKey), "no local key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.Authenticate(t.Context(), "Bearer "+tt.token)
			require.Error(t, err)
			require.Contains(t, err.Error(), tt.want)
		})
	}
}

func mustEC(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	return k
}

func TestConfigNamesEveryProblem(t *testing.T) {
	_, err := authn.New(t.Context(), authn.Config{Local: authn.LocalJWT{Key: []byte("short")}, OIDC: authn.OIDC{JWKSURL: "http://x"}, ClockSkew: time.Hour})
	for _, want := range []string{"Keys: required", "Local.Key: must be at least 32 bytes", "OIDC.Issuer: required", "ClockSkew"} {
		require.ErrorContains(t, err, want)
	}
}
