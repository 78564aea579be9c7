package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
)

// maxBody bounds how much of a response the CLI reads.
const maxBody = 32 << 20

// apiError is a non-2xx answer of the API.
type apiError struct {
	status  int
	message string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.message)
}

// client calls the REST API and decodes answers into the generated types.
type client struct {
	base string
	http *http.Client
	// key is sent as the bearer credential of every call; keyErr says why there is none.
	key    string
	keyErr error
}

var (
	unmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}
	marshal   = protojson.MarshalOptions{}
)

// call sends req (nil for no body) to method path and decodes the answer into resp.
func (c *client) call(ctx context.Context, method, path string, req, resp proto.Message) error {
	if c.keyErr != nil {
		return c.keyErr
	}
	var body io.Reader
	if req != nil {
		b, err := marshal.Marshal(req)
		if err != nil {
			return fmt.Errorf("encode request: %w", err)
		}
		body = bytes.NewReader(b)
	}
	hreq, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return fmt.Errorf("request %s %s: %w", method, path, err)
	}
	hreq.Header.Set("Accept", "application/json")
	hreq.Header.Set("Authorization", "Bearer "+c.key)
	if req != nil {
		hreq.Header.Set("Content-Type", "application/json")
	}
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return err
	}
	defer func() { _ = hresp.Body.Close() }()
	b, err := io.ReadAll(io.LimitReader(hresp.Body, maxBody))
	if err != nil {
		return fmt.Errorf("read response of %s %s: %w", method, path, err)
	}
	if hresp.StatusCode < 200 || hresp.StatusCode > 299 {
		e := &apiError{status: hresp.StatusCode, message: errorMessage(b)}
		if hresp.StatusCode == http.StatusUnauthorized {
			e.message += " (check --key / --key-file)"
		}
		return e
	}
	if err := unmarshal.Unmarshal(b, resp); err != nil {
		return fmt.Errorf("decode response of %s %s: %w", method, path, err)
	}
	return nil
}

// errorMessage takes the message out of grpc-gateway's error body ({"code", "message",
// "details"}), or the body itself when it is something else.
func errorMessage(body []byte) string {
	var st struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &st); err == nil && st.Message != "" {
		return st.Message
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	if msg == "" {
		msg = "no message"
	}
	return msg
}
