package adapters

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// ErrForbiddenAddress is returned (wrapped) when a target resolves to an address the notifier
// refuses to reach.
var ErrForbiddenAddress = errors.New("address not allowed")

// cgnat is the shared address space of carrier-grade NAT (RFC 6598), internal like RFC 1918.
var cgnat = netip.MustParsePrefix("100.64.0.0/10")

// AddressGuard decides which addresses webhook and Slack targets may reach: no loopback,
// private (RFC 1918, RFC 4193, RFC 6598), link-local (cloud metadata at 169.254.169.254
// included), multicast or unspecified address, unless the operator allows its network.
type AddressGuard struct {
	// Allow lists the networks allowed even though they are internal.
	Allow []netip.Prefix
}

// Check returns nil when ip may be reached.
func (g AddressGuard) Check(ip netip.Addr) error {
	ip = ip.Unmap()
	for _, p := range g.Allow {
		if p.Contains(ip) {
			return nil
		}
	}
	switch {
	case ip.IsLoopback():
		return fmt.Errorf("%w: %s is a loopback address", ErrForbiddenAddress, ip)
	case ip.IsPrivate(), cgnat.Contains(ip):
		return fmt.Errorf("%w: %s is a private address", ErrForbiddenAddress, ip)
	case ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast():
		return fmt.Errorf("%w: %s is a link-local address", ErrForbiddenAddress, ip)
	case ip.IsUnspecified(), ip.IsMulticast(), ip.IsInterfaceLocalMulticast():
		return fmt.Errorf("%w: %s is not a unicast address", ErrForbiddenAddress, ip)
	}
	return nil
}

// HTTPLimits bound what the notifier does for one outgoing request.
type HTTPLimits struct {
	// Timeout bounds a whole request, its answer included.
	Timeout time.Duration
	// MaxRedirects followed (each to an address the guard allows).
	MaxRedirects int
}

// NewGuardedClient returns an HTTP client whose every connection, redirects included, is
// checked by g at dial time, after name resolution (a Control function on the dialer sees the
// address actually dialled, so DNS rebinding cannot slip through); no proxy is used.
func NewGuardedClient(g AddressGuard, l HTTPLimits) *http.Client {
	d := &net.Dialer{
		Timeout: 10 * time.Second,
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("%w: %s", ErrForbiddenAddress, address)
			}
			return g.Check(ap.Addr())
		},
	}
	tr := &http.Transport{
		Proxy:                  nil,
		DialContext:            d.DialContext,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  l.Timeout,
		MaxResponseHeaderBytes: 32 << 10,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		ForceAttemptHTTP2:      true,
	}
	return &http.Client{
		Transport: tr,
		Timeout:   l.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > l.MaxRedirects {
				return fmt.Errorf("stopped after %d redirects", l.MaxRedirects)
			}
			if req.URL.Scheme != "https" && req.URL.Scheme != "http" {
				return fmt.Errorf("redirect to scheme %q refused", req.URL.Scheme)
			}
			return nil
		},
	}
}
