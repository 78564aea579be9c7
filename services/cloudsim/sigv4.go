package cloudsim

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// sigAuth is a parsed SigV4 Authorization header.
type sigAuth struct {
	AccessKey string
	Date      string // yyyymmdd of the credential scope
	Region    string
	Service   string
	// SignedHeaders is the header's list as sent, "a;b;c" (lower case, sorted by the client).
	SignedHeaders string
	Signature     string
}

var errNoAuth = errors.New("missing or malformed SigV4 Authorization header")

// parseAuth reads the Authorization header: AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/SERVICE/aws4_request,
// SignedHeaders=a;b, Signature=hex. Every field is a substring of h: nothing is allocated.
func parseAuth(h string) (sigAuth, error) {
	const algo = "AWS4-HMAC-SHA256 "
	rest, ok := strings.CutPrefix(h, algo)
	if !ok {
		return sigAuth{}, errNoAuth
	}
	var a sigAuth
	for rest != "" {
		var part string
		part, rest, _ = strings.Cut(rest, ",")
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return sigAuth{}, errNoAuth
		}
		switch k {
		case "Credential":
			var f [5]string
			for i := range f {
				if i == len(f)-1 {
					f[i] = v
					break
				}
				if f[i], v, ok = strings.Cut(v, "/"); !ok {
					return sigAuth{}, errNoAuth
				}
			}
			if f[4] != "aws4_request" {
				return sigAuth{}, errNoAuth
			}
			a.AccessKey, a.Date, a.Region, a.Service = f[0], f[1], f[2], f[3]
		case "SignedHeaders":
			a.SignedHeaders = v
		case "Signature":
			a.Signature = v
		}
	}
	if a.AccessKey == "" || a.Signature == "" || a.SignedHeaders == "" {
		return sigAuth{}, errNoAuth
	}
	return a, nil
}

// signingKeys caches derived signing keys per (secret, date, region, service).
type signingKeys struct {
	mu   sync.Mutex
	keys map[keyScope][sha256.Size]byte
}

type keyScope struct{ secret, date, region, service string }

func (c *signingKeys) get(secret, date, region, service string) [sha256.Size]byte {
	id := keyScope{secret, date, region, service}
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.keys[id]; ok {
		return k
	}
	if c.keys == nil || len(c.keys) > 10000 {
		c.keys = map[keyScope][sha256.Size]byte{}
	}
	k := hmacSHA256([]byte("AWS4"+secret), []byte(date))
	k = hmacSHA256(k[:], []byte(region))
	k = hmacSHA256(k[:], []byte(service))
	k = hmacSHA256(k[:], []byte("aws4_request"))
	c.keys[id] = k
	return k
}

// hmacSHA256 is HMAC-SHA256 (RFC 2104) computed on stack buffers: crypto/hmac allocates two
// digests per use, and SigV4 verification runs on every call.
func hmacSHA256(key, data []byte) [sha256.Size]byte {
	const block = 64
	var k [block]byte
	if len(key) > block {
		sum := sha256.Sum256(key)
		copy(k[:], sum[:])
	} else {
		copy(k[:], key)
	}
	var stack [block + 256]byte
	inner := stack[:block]
	for i := range inner {
		inner[i] = k[i] ^ 0x36
	}
	innerSum := sha256.Sum256(append(inner, data...))
	var outer [block + sha256.Size]byte
	for i := range block {
		outer[i] = k[i] ^ 0x5c
	}
	copy(outer[block:], innerSum[:])
	return sha256.Sum256(outer[:])
}

// verifySignature recomputes the request's SigV4 signature with the secret and compares it.
// payloadHash is the value the client put in X-Amz-Content-Sha256 (S3 signs that value, which
// may be UNSIGNED-PAYLOAD); when it is empty the body's hex SHA-256 is signed. The canonical
// request and the string to sign are built in one stack buffer.
func verifySignature(r *http.Request, a sigAuth, secret, payloadHash string, body []byte, keys *signingKeys) bool {
	amzDate := r.Header.Get("X-Amz-Date")
	if len(amzDate) < 8 || amzDate[:8] != a.Date {
		return false
	}
	var stack [2048]byte
	cr := append(stack[:0], r.Method...)
	cr = append(cr, '\n')
	cr = appendCanonicalURI(cr, r, a.Service)
	cr = append(cr, '\n')
	cr = append(cr, canonicalQuery(r.URL.RawQuery)...)
	cr = append(cr, '\n')
	for rest := a.SignedHeaders; rest != ""; {
		var name string
		name, rest, _ = strings.Cut(rest, ";")
		cr = append(cr, name...)
		cr = append(cr, ':')
		cr = appendCanonicalHeaderValue(cr, r, name)
		cr = append(cr, '\n')
	}
	cr = append(cr, '\n')
	cr = append(cr, a.SignedHeaders...)
	cr = append(cr, '\n')
	if payloadHash != "" {
		cr = append(cr, payloadHash...)
	} else { // the header is optional outside S3: the body's hash, hex-encoded in place
		sum := sha256.Sum256(body)
		cr = hex.AppendEncode(cr, sum[:])
	}
	crHash := sha256.Sum256(cr)

	sts := cr[:0] // the canonical request is hashed: its bytes are reused for the string to sign
	sts = append(sts, "AWS4-HMAC-SHA256\n"...)
	sts = append(sts, amzDate...)
	sts = append(sts, '\n')
	sts = append(sts, a.Date...)
	sts = append(sts, '/')
	sts = append(sts, a.Region...)
	sts = append(sts, '/')
	sts = append(sts, a.Service...)
	sts = append(sts, "/aws4_request\n"...)
	sts = hex.AppendEncode(sts, crHash[:])
	key := keys.get(secret, a.Date, a.Region, a.Service)
	sig := hmacSHA256(key[:], sts)
	var want [2 * sha256.Size]byte
	hex.Encode(want[:], sig[:])
	if len(a.Signature) != len(want) {
		return false
	}
	diff := byte(0)
	for i := range want { // constant time, as hmac.Equal
		diff |= want[i] ^ a.Signature[i]
	}
	return diff == 0
}

// appendCanonicalURI appends the path as sent for S3 (which signs it encoded once) and encoded
// again for every other service.
func appendCanonicalURI(dst []byte, r *http.Request, service string) []byte {
	raw := r.RequestURI
	if i := strings.IndexByte(raw, '?'); i >= 0 {
		raw = raw[:i]
	}
	if raw == "" || raw[0] != '/' {
		raw = r.URL.EscapedPath()
	}
	switch {
	case raw == "":
		return append(dst, '/')
	case service == "s3":
		return append(dst, raw...)
	}
	return appendURIEncode(dst, raw, false)
}

func canonicalQuery(raw string) string {
	if raw == "" {
		return ""
	}
	type kv struct{ k, v string }
	var pairs []kv
	for _, part := range strings.Split(raw, "&") {
		if part == "" {
			continue
		}
		k, v, _ := strings.Cut(part, "=")
		dk, err1 := url.QueryUnescape(k)
		dv, err2 := url.QueryUnescape(v)
		if err1 != nil || err2 != nil {
			dk, dv = k, v
		}
		pairs = append(pairs, kv{uriEncode(dk, true), uriEncode(dv, true)})
	}
	sort.Slice(pairs, func(i, j int) bool {
		if pairs[i].k != pairs[j].k {
			return pairs[i].k < pairs[j].k
		}
		return pairs[i].v < pairs[j].v
	})
	var b strings.Builder
	for i, p := range pairs {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p.k)
		b.WriteByte('=')
		b.WriteString(p.v)
	}
	return b.String()
}

// appendCanonicalHeaderValue appends the header's values, each trimmed with inner runs of
// spaces collapsed to one, joined by commas.
func appendCanonicalHeaderValue(dst []byte, r *http.Request, name string) []byte {
	switch name {
	case "host":
		return appendTrimmedValue(dst, r.Host)
	case "content-length":
		values := r.Header.Values("Content-Length")
		if len(values) == 0 {
			return strconv.AppendInt(dst, r.ContentLength, 10)
		}
		return appendTrimmedValues(dst, values)
	}
	return appendTrimmedValues(dst, headerValues(r.Header, name))
}

// headerValues is h.Values(name) for a signed header's lower-case name, canonicalized on the
// stack: Values allocates the canonical key of every name not already canonical, which a
// signed header's never is.
func headerValues(h http.Header, name string) []string {
	var key [64]byte
	if len(name) > len(key) {
		return h.Values(name)
	}
	upper := true
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z':
			if upper {
				c -= 'a' - 'A'
			}
		case 'A' <= c && c <= 'Z':
			if !upper {
				c += 'a' - 'A'
			}
		case '0' <= c && c <= '9', c == '-':
		default:
			return h.Values(name) // textproto's rules for the rest
		}
		key[i] = c
		upper = c == '-'
	}
	return h[string(key[:len(name)])]
}

func appendTrimmedValues(dst []byte, values []string) []byte {
	for i, v := range values {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendTrimmedValue(dst, v)
	}
	return dst
}

// appendTrimmedValue appends strings.Join(strings.Fields(v), " ").
func appendTrimmedValue(dst []byte, v string) []byte {
	space := false
	start := len(dst)
	for i := 0; i < len(v); i++ {
		c := v[i]
		if asciiSpace(c) {
			space = true
			continue
		}
		if space && len(dst) > start {
			dst = append(dst, ' ')
		}
		space = false
		dst = append(dst, c)
	}
	return dst
}

func asciiSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

// uriEncode is SigV4's URI encoding: every byte but the unreserved characters is %XX; slashes
// are kept unless encodeSlash.
func uriEncode(s string, encodeSlash bool) string {
	return string(appendURIEncode(nil, s, encodeSlash))
}

func appendURIEncode(dst []byte, s string, encodeSlash bool) []byte {
	const hexDigits = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_', c == '.', c == '~':
			dst = append(dst, c)
		case c == '/' && !encodeSlash:
			dst = append(dst, c)
		default:
			dst = append(dst, '%', hexDigits[c>>4], hexDigits[c&15])
		}
	}
	return dst
}
