package awsfleet

import (
	"context"
	"io"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// NewHTTPClient returns the HTTP client the adapter's SDK clients share, tuned by cfg (zero
// fields take HTTPConfig's defaults): keep-alive connections per host for thousands of calls
// per second to one endpoint, and request bodies that do not race the transport (see
// bodyNoWriteTo). Tests that build SDK clients of their own next to the adapter use it too.
func NewHTTPClient(cfg HTTPConfig) aws.HTTPClient {
	c := Config{HTTP: cfg}
	c.setDefaults()
	cfg = c.HTTP
	return bodyNoWriteTo{inner: awshttp.NewBuildableClient().
		WithTimeout(cfg.Timeout).
		WithTransportOptions(func(t *http.Transport) {
			t.MaxIdleConns = cfg.MaxIdleConns
			t.MaxIdleConnsPerHost = cfg.MaxIdleConnsPerHost
			t.MaxConnsPerHost = 0
			t.IdleConnTimeout = cfg.IdleConnTimeout
		})}
}

// bodyNoWriteTo is the HTTP client the SDK clients use: it hands the transport request bodies
// that are plain readers.
//
// Why: smithy-go closes a request's body as soon as the response headers are in
// (SafeReadCloser), while net/http's write loop may still be draining the body past its
// Content-Length with io.Copy. The body's WriteTo answers a closed body with io.EOF, which
// io.Copy reports as an error; the transport then closes the connection under the response
// being read ("use of closed network connection"), and the SDK retries a call that had
// succeeded. Against cloudsim this hit about one large DescribeInstances page in fifty. Without
// WriteTo, io.Copy reads, and a read of a closed body is a clean io.EOF.
type bodyNoWriteTo struct{ inner aws.HTTPClient }

// Do sends the request with its body wrapped.
func (c bodyNoWriteTo) Do(r *http.Request) (*http.Response, error) {
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = plainBody{r.Body}
	}
	return c.inner.Do(r)
}

// plainBody hides every method of the body but Read and Close.
type plainBody struct{ rc io.ReadCloser }

func (b plainBody) Read(p []byte) (int, error) { return b.rc.Read(p) }
func (b plainBody) Close() error               { return b.rc.Close() }

// discardEC2Output is a per-call option for EC2 calls whose answer the adapter does not use: a
// successful response's body is read to its end (so the connection is kept) and dropped before
// the SDK's XML deserializer, which then returns an empty output. Errors are decoded as usual.
// Decoding CreateSnapshots' answer (every volume snapshot with its tags) cost more CPU than
// sending the call.
func discardEC2Output(o *ec2.Options) { o.APIOptions = append(o.APIOptions, discardOutput) }

func discardOutput(stack *middleware.Stack) error {
	return stack.Deserialize.Insert(middleware.DeserializeMiddlewareFunc("PatchwaveDiscardOutput",
		func(ctx context.Context, in middleware.DeserializeInput, next middleware.DeserializeHandler) (middleware.DeserializeOutput, middleware.Metadata, error) {
			out, md, err := next.HandleDeserialize(ctx, in)
			if resp, ok := out.RawResponse.(*smithyhttp.Response); ok && err == nil && resp.StatusCode >= 200 && resp.StatusCode < 300 {
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				resp.Body = http.NoBody
			}
			return out, md, err
		}), "OperationDeserializer", middleware.After)
}
