// Package mtls is the mutual TLS of Patchwave's gRPC traffic: services accept calls only from
// peers with a certificate of the deployment's CA, and know each peer by the name in it. A
// peer's name is its certificate's URI SAN spiffe://patchwave/<name> (SPIFFE's form, so a
// SPIRE or cert-manager deployment can issue them): the gateway is "gateway", and the services
// believe the caller identity it forwards only from a peer of that name (libs/host).
//
// The deployment provides the files (Files: CA, certificate, key, PEM); patchd makes its own
// CA and certificates at start with Ensure. A certificate and key are read again when their
// files change, so a rotated certificate is used without a restart; a new CA needs one.
package mtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// TrustDomain is the host of every peer name's URI: spiffe://patchwave/<name>.
const TrustDomain = "patchwave"

// Names of the peers the code knows.
const (
	// Gateway is the gateway's peer name: the one peer whose forwarded identities services
	// believe.
	Gateway = "gateway"
	// Services is the name of the services' server certificate in patchd.
	Services = "services"
)

// URI returns a peer name's URI SAN, spiffe://patchwave/<name>.
func URI(name string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: TrustDomain, Path: "/" + name}
}

// NameOf returns the peer name of cert (its spiffe://patchwave/<name> URI SAN), or "" when it
// has none.
func NameOf(cert *x509.Certificate) string {
	for _, u := range cert.URIs {
		if u.Scheme == "spiffe" && u.Host == TrustDomain && len(u.Path) > 1 && !strings.Contains(u.Path[1:], "/") {
			return u.Path[1:]
		}
	}
	return ""
}

// Files names the PEM files of one party: the CA that signs every peer, and its own
// certificate and key.
type Files struct {
	// CA is the CA certificate file. Required.
	CA string
	// Cert is the party's certificate file (the chain up to, not including, the CA). Required.
	Cert string
	// Key is the certificate's private key file. Required.
	Key string
}

// Validate reports every missing file name and every file that cannot be read.
func (f Files) Validate() error {
	var errs []error
	for _, x := range []struct{ field, path string }{{"CA", f.CA}, {"Cert", f.Cert}, {"Key", f.Key}} {
		if x.path == "" {
			errs = append(errs, fmt.Errorf("%s: required (a PEM file)", x.field))
			continue
		}
		if _, err := os.Stat(x.path); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", x.field, err))
		}
	}
	return errors.Join(errs...)
}

// Empty reports whether no file is named.
func (f Files) Empty() bool { return f.CA == "" && f.Cert == "" && f.Key == "" }

func (f Files) pool() (*x509.CertPool, error) {
	b, err := os.ReadFile(f.CA)
	if err != nil {
		return nil, fmt.Errorf("CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("CA %s: no PEM certificate in it", f.CA)
	}
	return pool, nil
}

// load checks the files and reads the CA pool and the key pair.
func (f Files) load() (*x509.CertPool, *keyPair, error) {
	if err := f.Validate(); err != nil {
		return nil, nil, fmt.Errorf("mtls: %w", err)
	}
	pool, err := f.pool()
	if err != nil {
		return nil, nil, fmt.Errorf("mtls: %w", err)
	}
	kp, err := newKeyPair(f.Cert, f.Key)
	if err != nil {
		return nil, nil, err
	}
	return pool, kp, nil
}

// ServerConfig returns the TLS configuration of a server that requires a client certificate
// signed by the CA (TLS 1.3).
func (f Files) ServerConfig() (*tls.Config, error) {
	pool, kp, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		ClientAuth:     tls.RequireAndVerifyClientCert,
		ClientCAs:      pool,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.get() },
	}, nil
}

// ClientConfig returns the TLS configuration of a client that presents its certificate and
// trusts servers signed by the CA. serverName is the name the server's certificate must have
// (a DNS name or IP address of its SANs); empty takes the dialled host.
func (f Files) ClientConfig(serverName string) (*tls.Config, error) {
	pool, kp, err := f.load()
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		RootCAs:              pool,
		ServerName:           serverName,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.get() },
	}, nil
}

// keyPair is a certificate and key read again when either file's modification time changes.
type keyPair struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	certMod, keyMod   time.Time
}

func newKeyPair(certFile, keyFile string) (*keyPair, error) {
	kp := &keyPair{certFile: certFile, keyFile: keyFile}
	if _, err := kp.get(); err != nil {
		return nil, err
	}
	return kp, nil
}

func (kp *keyPair) get() (*tls.Certificate, error) {
	kp.mu.Lock()
	defer kp.mu.Unlock()
	cs, cerr := os.Stat(kp.certFile)
	ks, kerr := os.Stat(kp.keyFile)
	if err := errors.Join(cerr, kerr); err != nil {
		if kp.cert != nil {
			return kp.cert, nil // keep serving the one we have while files are replaced
		}
		return nil, fmt.Errorf("mtls: %w", err)
	}
	if kp.cert != nil && cs.ModTime().Equal(kp.certMod) && ks.ModTime().Equal(kp.keyMod) {
		return kp.cert, nil
	}
	c, err := tls.LoadX509KeyPair(kp.certFile, kp.keyFile)
	if err != nil {
		if kp.cert != nil {
			return kp.cert, nil // a half-written rotation: retry on the next handshake
		}
		return nil, fmt.Errorf("mtls: certificate %s and key %s: %w", kp.certFile, kp.keyFile, err)
	}
	kp.cert, kp.certMod, kp.keyMod = &c, cs.ModTime(), ks.ModTime()
	return kp.cert, nil
}

// ErrNoPeerCertificate means a call came without a verified client certificate.
var ErrNoPeerCertificate = errors.New("mtls: the peer presented no verified certificate")

// PeerName returns the peer name of a gRPC call's verified client certificate.
func PeerName(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return "", ErrNoPeerCertificate
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", ErrNoPeerCertificate
	}
	name := NameOf(info.State.VerifiedChains[0][0])
	if name == "" {
		return "", fmt.Errorf("%w: its certificate has no %s URI", ErrNoPeerCertificate, URI("<name>"))
	}
	return name, nil
}
