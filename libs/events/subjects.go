package events

import (
	"fmt"
	"regexp"
	"strings"
)

// Subject roots. Each root has a stream of its own and the roots never overlap.
const (
	RootTenant  = "patch"
	RootCatalog = "catalog"
	RootDLQ     = "dlq"
)

var (
	tenantPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)
	tokenPattern  = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)
)

// ValidateTenant reports whether id can name a tenant: 1 to 63 characters, lower-case letters,
// digits and '-', starting with a letter or digit. Tenant ids are subject tokens, so dots,
// spaces and wildcards are refused.
func ValidateTenant(id string) error {
	if !validTenant(id) {
		return fmt.Errorf("tenant %q: must match %s (1-63 lower-case letters, digits or '-', not starting with '-')", id, tenantPattern)
	}
	return nil
}

// validTenant is tenantPattern's match without the regexp (every received event checks its
// tenant; the regexp was a visible part of decoding one).
func validTenant(id string) bool {
	if len(id) == 0 || len(id) > 63 || id[0] == '-' {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') && c != '-' {
			return false
		}
	}
	return true
}

// validateToken checks a subject token such as a service or handler name.
func validateToken(what, s string) error {
	if !tokenPattern.MatchString(s) {
		return fmt.Errorf("%s %q: must match %s", what, s, tokenPattern)
	}
	return nil
}

// TenantSubject returns patch.<tenant>.<aggregate>.<event>.
func TenantSubject(tenant, aggregate, event string) string {
	return RootTenant + "." + tenant + "." + aggregate + "." + event
}

// CatalogSubject returns catalog.<aggregate>.<event>.
func CatalogSubject(aggregate, event string) string {
	return RootCatalog + "." + aggregate + "." + event
}

// DLQSubject returns dlq.<service>.<handler>, the dead-letter subject of one handler.
func DLQSubject(service, handler string) (string, error) {
	if err := validateToken("service", service); err != nil {
		return "", err
	}
	if err := validateToken("handler", handler); err != nil {
		return "", err
	}
	return RootDLQ + "." + service + "." + handler, nil
}

// TenantOf returns the tenant token of a tenant subject, or "" for any other subject.
func TenantOf(subject string) string {
	parts := strings.SplitN(subject, ".", 3)
	if len(parts) < 3 || parts[0] != RootTenant {
		return ""
	}
	return parts[1]
}

// StreamFor returns the stream that stores subject (which may contain wildcards after the root).
func StreamFor(subject string) (string, error) {
	root, _, _ := strings.Cut(subject, ".")
	switch root {
	case RootTenant:
		return StreamTenant, nil
	case RootCatalog:
		return StreamCatalog, nil
	case RootDLQ:
		return StreamDLQ, nil
	default:
		return "", fmt.Errorf("subject %q: root %q is none of %s, %s, %s", subject, root, RootTenant, RootCatalog, RootDLQ)
	}
}
