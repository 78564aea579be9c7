package awsfleet

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// NewHTTPClient returns the HTTP client the adapter's SDK clients share, tuned by cfg (zero
// fields take HTTPConfig's defaults): keep-alive connections per host for thousands of calls
// per second to one endpoint, request bodies that do not race the transport (see
// bodyNoWriteTo), and the attempt timeout as a context deadline (see bodyNoWriteTo.Do). Tests
// that build SDK clients of their own next to the adapter use it too.
func NewHTTPClient(cfg HTTPConfig) aws.HTTPClient {
	c := Config{HTTP: cfg}
	c.setDefaults()
	cfg = c.HTTP
	return bodyNoWriteTo{timeout: cfg.Timeout, inner: awshttp.NewBuildableClient().
		WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConns = cfg.MaxIdleConns
			t.MaxIdleConnsPerHost = cfg.MaxIdleConnsPerHost
			t.MaxConnsPerHost = 0
			t.IdleConnTimeout = cfg.IdleConnTimeout
		})}
}

// bodyNoWriteTo is the HTTP client the SDK clients use: it hands the transport request bodies
// that are its own copy in memory when small (see inMemoryBody), else plain readers.
//
// Why: smithy-go closes a request's body as soon as the response headers are in
// (SafeReadCloser), while net/http's write loop may still be draining the body past its
// Content-Length with io.Copy. The body's WriteTo answers a closed body with io.EOF, which
// io.Copy reports as an error; the transport then closes the connection under the response
// being read ("use of closed network connection"), and the SDK retries a call that had
// succeeded. Against cloudsim this hit about one large DescribeInstances page in fifty. Without
// WriteTo, io.Copy reads, and a read of a closed body is a clean io.EOF.
type bodyNoWriteTo struct {
	inner   aws.HTTPClient
	timeout time.Duration
}

// Do sends the request with its body wrapped, within the attempt timeout: a deadline on the
// request's context, lifted when the response body is closed (the SDK closes it once decoded),
// so it bounds the whole exchange as http.Client.Timeout does. Why not http.Client.Timeout:
// the SDK's client wraps the transport (redirect limits), and net/http then enforces Timeout
// the legacy way, with a timer and two goroutines per request (setRequestCancel,
// awaitLegacyCancel), a measurable share of a cheap call's CPU. A timed-out attempt fails
// with an error that is context.DeadlineExceeded, as a Client.Timeout one is, and the SDK
// retries it the same way.
func (c bodyNoWriteTo) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		if err := inMemoryBody(r); err != nil {
			return nil, err
		}
	}
	if c.timeout <= 0 {
		return c.inner.Do(r)
	}
	ctx, cancel := context.WithTimeout(r.Context(), c.timeout)
	resp, err := c.inner.Do(r.WithContext(ctx))
	if err != nil || resp == nil || resp.Body == nil {
		cancel()
		return resp, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// maxInMemoryBody is the largest request body inMemoryBody copies: every EC2, SSM and STS
// request the adapter sends is far smaller (a CreateSnapshots request is about 1 KB); larger
// ones (an S3 PutObject of a long install list) keep the streaming plainBody.
const maxInMemoryBody = 64 << 10

// inMemoryBody gives the transport the request's body as a copy in memory when its length is
// known and small, else as a plainBody.
//
// Why: net/http writes a request's headers and a body it knows to be in memory (a
// bytes.Reader, possibly behind io.NopCloser) with one write, but flushes the headers on
// their own before any other body (transferWriter.FlushHeaders): two write system calls and
// two TCP segments per call, and a second read on the server. The SDK's body is neither (and
// plainBody hides it anyway), so every AWS call paid that second write, about a quarter of
// the transport's CPU in a wave, where one CreateSnapshots per instance is the bulk of the
// calls. The copy is the transport's own, so the SDK closing its body early (see
// bodyNoWriteTo) cannot touch it. The bytes sent are the same; the SDK's body is read to its
// end and closed here, as the transport would have. GetBody, when the SDK set it, returns the
// copy again, so net/http's own rewinds behave as before.
func inMemoryBody(r *http.Request) error {
	if r.ContentLength <= 0 || r.ContentLength > maxInMemoryBody {
		r.Body = plainBody{r.Body}
		return nil
	}
	buf := make([]byte, r.ContentLength)
	_, err := io.ReadFull(r.Body, buf)
	_ = r.Body.Close()
	if err != nil {
		return fmt.Errorf("read the request body of %d bytes: %w", r.ContentLength, err)
	}
	r.Body = io.NopCloser(bytes.NewReader(buf))
	if r.GetBody != nil {
		r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(buf)), nil }
	}
	return nil
}

// cancelOnClose lifts an attempt's deadline when its response body is closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// plainBody hides every method of the body but Read and Close.
type plainBody struct{ rc io.ReadCloser }

func (b plainBody) Read(p []byte) (int, error) { return b.rc.Read(p) }
func (b plainBody) Close() error               { return b.rc.Close() }
