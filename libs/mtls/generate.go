package mtls

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"time"
)

// Leaf describes one certificate Ensure issues.
type Leaf struct {
	// Name is the peer name (the URI SAN spiffe://patchwave/<name>, and the common name); the
	// files are <name>.pem and <name>-key.pem. Required.
	Name string
	// DNSNames and IPs are the SANs a client checks when it dials a server by name or
	// address. Optional (a client-only certificate needs none).
	DNSNames []string
	IPs      []net.IP
}

// Lifetimes of what Ensure issues, and how early a leaf is renewed.
const (
	caLifetime   = 10 * 365 * 24 * time.Hour
	leafLifetime = 365 * 24 * time.Hour
	renewBefore  = 30 * 24 * time.Hour
)

// Ensure makes dir hold a CA (ca.pem, ca-key.pem) and a certificate per leaf signed by it,
// and returns each leaf's Files. What is there is kept while it is valid: a CA for 30 more
// days, a leaf signed by that CA with the same name and SANs for 30 more days; anything else
// is issued again (every leaf, when the CA is). Keys are ECDSA P-256 in files of mode 0600.
func Ensure(dir string, now time.Time, leaves ...Leaf) (map[string]Files, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("mtls: %w", err)
	}
	caFile, caKeyFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca-key.pem")
	ca, caKey, err := loadCA(caFile, caKeyFile, now)
	if err != nil {
		if ca, caKey, err = newCA(caFile, caKeyFile, now); err != nil {
			return nil, err
		}
	}
	out := make(map[string]Files, len(leaves))
	for _, l := range leaves {
		if l.Name == "" {
			return nil, errors.New("mtls: Leaf.Name: required")
		}
		f := Files{CA: caFile, Cert: filepath.Join(dir, l.Name+".pem"), Key: filepath.Join(dir, l.Name+"-key.pem")}
		if !leafValid(f, ca, l, now) {
			if err := newLeaf(f, ca, caKey, l, now); err != nil {
				return nil, err
			}
		}
		out[l.Name] = f
	}
	return out, nil
}

func loadCA(certFile, keyFile string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, nil, err
	}
	cert := pair.Leaf
	key, ok := pair.PrivateKey.(*ecdsa.PrivateKey)
	if !ok || !cert.IsCA || now.Add(renewBefore).After(cert.NotAfter) {
		return nil, nil, errors.New("mtls: the CA is not one Ensure made, or expires soon")
	}
	return cert, key, nil
}

func newCA(certFile, keyFile string, now time.Time) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("mtls: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "Patchwave CA", Organization: []string{"Patchwave"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("mtls: CA: %w", err)
	}
	if err := writePair(certFile, keyFile, der, key); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("mtls: CA: %w", err)
	}
	return cert, key, nil
}

func leafValid(f Files, ca *x509.Certificate, l Leaf, now time.Time) bool {
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		return false
	}
	c := pair.Leaf
	if NameOf(c) != l.Name || now.Add(renewBefore).After(c.NotAfter) || c.CheckSignatureFrom(ca) != nil {
		return false
	}
	if len(c.DNSNames) != len(l.DNSNames) || len(c.IPAddresses) != len(l.IPs) {
		return false
	}
	for i := range l.DNSNames {
		if c.DNSNames[i] != l.DNSNames[i] {
			return false
		}
	}
	for i := range l.IPs {
		if !c.IPAddresses[i].Equal(l.IPs[i]) {
			return false
		}
	}
	return true
}

func newLeaf(f Files, ca *x509.Certificate, caKey *ecdsa.PrivateKey, l Leaf, now time.Time) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("mtls: %s key: %w", l.Name, err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: l.Name, Organization: []string{"Patchwave"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(leafLifetime),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{URI(l.Name)},
		DNSNames:     l.DNSNames,
		IPAddresses:  l.IPs,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("mtls: %s: %w", l.Name, err)
	}
	return writePair(f.Cert, f.Key, der, key)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	return n
}

// writePair writes a certificate (0644) and its key (0600), each through a temporary file and
// a rename, so a reader never sees half a file.
func writePair(certFile, keyFile string, der []byte, key *ecdsa.PrivateKey) error {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("mtls: key: %w", err)
	}
	var c, k bytes.Buffer
	if err := errors.Join(pem.Encode(&c, &pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.Encode(&k, &pem.Block{Type: "PRIVATE KEY", Bytes: kb})); err != nil {
		return fmt.Errorf("mtls: %w", err)
	}
	if err := WriteFile(keyFile, k.Bytes(), 0o600); err != nil {
		return err
	}
	return WriteFile(certFile, c.Bytes(), 0o644)
}

// WriteFile writes data to path with mode perm through a temporary file in the same directory
// and a rename, so a reader sees the old file or the new one, never a part; the mode holds
// whatever the umask.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if err := tmp.Chmod(perm); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
