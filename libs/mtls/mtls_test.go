package mtls_test

import (
	"crypto/tls"
	"net"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/mtls"
)

var (
	server = mtls.Leaf{Name: mtls.Services, DNSNames: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
	client = mtls.Leaf{Name: mtls.Gateway}
)

func TestEnsureIssuesOnceAndKeepsWhatIsValid(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	files, err := mtls.Ensure(dir, now, server, client)
	require.NoError(t, err)
	require.Len(t, files, 2)
	for _, f := range files {
		require.NoError(t, f.Validate())
		st, err := os.Stat(f.Key)
		require.NoError(t, err)
		require.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "a key is readable by its owner only")
	}
	first, err := os.ReadFile(files[mtls.Gateway].Cert)
	require.NoError(t, err)

	_, err = mtls.Ensure(dir, now.Add(time.Hour), server, client)
	require.NoError(t, err)
	again, err := os.ReadFile(files[mtls.Gateway].Cert)
	require.NoError(t, err)
	require.Equal(t, first, again, "a valid certificate is kept")

	_, err = mtls.Ensure(dir, now.Add(340*24*time.Hour), server, client)
	require.NoError(t, err)
	renewed, err := os.ReadFile(files[mtls.Gateway].Cert)
	require.NoError(t, err)
	require.NotEqual(t, first, renewed, "a certificate 30 days from its end is issued again")
}

// handshake runs a TLS handshake between a server and a client config over loopback TCP and
// returns the server's error and its view of the client certificate's name. (In TLS 1.3 the
// client finishes before the server has checked its certificate, so the server's verdict is the
// one that counts.)
func handshake(t *testing.T, srv, cli *tls.Config) (peer string, serverErr error) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer func() { _ = lis.Close() }()
	type result struct {
		err  error
		peer string
	}
	done := make(chan result, 1)
	go func() {
		conn, err := lis.Accept()
		if err != nil {
			done <- result{err: err}
			return
		}
		defer func() { _ = conn.Close() }()
		s := tls.Server(conn, srv)
		err = s.HandshakeContext(t.Context())
		r := result{err: err}
		if err == nil && len(s.ConnectionState().VerifiedChains) > 0 {
			r.peer = mtls.NameOf(s.ConnectionState().VerifiedChains[0][0])
		}
		done <- r
	}()
	conn, err := net.Dial("tcp", lis.Addr().String())
	require.NoError(t, err)
	defer func() { _ = conn.Close() }()
	_ = tls.Client(conn, cli).HandshakeContext(t.Context())
	r := <-done
	return r.peer, r.err
}

func TestServerRequiresAClientCertificateOfTheCA(t *testing.T) {
	files, err := mtls.Ensure(t.TempDir(), time.Now(), server, client)
	require.NoError(t, err)
	srv, err := files[mtls.Services].ServerConfig()
	require.NoError(t, err)

	cli, err := files[mtls.Gateway].ClientConfig("localhost")
	require.NoError(t, err)
	peer, serr := handshake(t, srv, cli)
	require.NoError(t, serr)
	require.Equal(t, mtls.Gateway, peer, "the server knows the client by the name in its certificate")

	// Without a client certificate.
	noCert := cli.Clone()
	noCert.GetClientCertificate = nil
	_, serr = handshake(t, srv, noCert)
	require.Error(t, serr, "a client without a certificate is refused")

	// With a certificate of another CA.
	other, err := mtls.Ensure(t.TempDir(), time.Now(), client)
	require.NoError(t, err)
	foreign, err := mtls.Files{CA: files[mtls.Gateway].CA, Cert: other[mtls.Gateway].Cert, Key: other[mtls.Gateway].Key}.ClientConfig("localhost")
	require.NoError(t, err)
	_, serr = handshake(t, srv, foreign)
	require.Error(t, serr, "a certificate of another CA is refused")
}

func TestFilesValidateNamesEveryProblem(t *testing.T) {
	err := mtls.Files{Cert: "/nonexistent.pem"}.Validate()
	require.ErrorContains(t, err, "CA: required")
	require.ErrorContains(t, err, "Cert: stat /nonexistent.pem")
	require.ErrorContains(t, err, "Key: required")
}
