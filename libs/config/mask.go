package config

import (
	"net/url"
	"strings"
)

// Masked is what Mask and MaskURL show in place of a secret.
const Masked = "****"

// Mask hides a secret completely for logging: any non-empty value becomes
// "****", keeping nothing of it, not even its length. An empty value stays
// empty so the log still shows that the secret is unset.
func Mask(s string) string {
	if s == "" {
		return ""
	}
	return Masked
}

// MaskURL hides the password in a URL's userinfo for logging, keeping the
// rest: "redis://:s3cret@redis:6379/0" becomes "redis://:****@redis:6379/0".
// A comma-separated list of URLs, as NATS accepts, is masked URL by URL. A
// value that does not parse as a URL is masked completely, since it cannot
// be told what part of it is secret.
func MaskURL(u string) string {
	if parts := strings.Split(u, ","); len(parts) > 1 && allHaveScheme(parts) {
		for i, p := range parts {
			parts[i] = maskOneURL(p)
		}
		return strings.Join(parts, ",")
	}
	return maskOneURL(u)
}

// allHaveScheme reports whether every part looks like a URL of its own, so
// that a comma inside a password is not taken for a list separator.
func allHaveScheme(parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(p, "://") {
			return false
		}
	}
	return true
}

// escapedMask is Masked as url.URL.String writes it in userinfo.
const escapedMask = "%2A%2A%2A%2A"

func maskOneURL(u string) string {
	if !strings.Contains(u, "@") {
		return u // no userinfo, so no password; also keeps a bare host:port
	}
	lead := u[:len(u)-len(strings.TrimLeft(u, " "))]
	parsed, err := url.Parse(strings.TrimLeft(u, " "))
	if err != nil {
		return lead + Mask(u)
	}
	if parsed.User == nil {
		return u
	}
	if _, hasPassword := parsed.User.Password(); !hasPassword {
		return u
	}
	parsed.User = url.UserPassword(parsed.User.Username(), Masked)
	// url.URL.String percent-encodes the '*'s; show the mask verbatim.
	return lead + strings.Replace(parsed.String(), ":"+escapedMask+"@", ":"+Masked+"@", 1)
}
