package cloudsim_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/xml"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/cloudsim"
)

// TestSNSPublishKeepsTheMessageAndRefusesBadInput speaks SNS's Query protocol as the SDK does
// (the notifier's tests use the SDK's client itself): a form POST signed for service "sns".
func TestSNSPublishKeepsTheMessageAndRefusesBadInput(t *testing.T) {
	srv := startServer(t, cloudsim.Config{})
	creds, err := providerConfig(srv).Credentials.Retrieve(t.Context())
	require.NoError(t, err)
	publish := func(form url.Values) (int, string) {
		t.Helper()
		form.Set("Action", "Publish")
		form.Set("Version", "2010-03-31")
		body := form.Encode()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL()+"/", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		sum := sha256.Sum256([]byte(body))
		require.NoError(t, v4.NewSigner().SignHTTP(t.Context(), creds, req, hex.EncodeToString(sum[:]), "sns", region, time.Now()))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	topic := "arn:aws:sns:eu-central-1:100000000000:patch-events"
	status, body := publish(url.Values{"TopicArn": {topic}, "Subject": {"run done"}, "Message": {"wave 1: 3 failed"},
		"MessageAttributes.entry.1.Name": {"kind"}, "MessageAttributes.entry.1.Value.DataType": {"String"},
		"MessageAttributes.entry.1.Value.StringValue": {"digest"}})
	require.Equal(t, http.StatusOK, status, body)
	var out struct {
		MessageID string `xml:"PublishResult>MessageId"`
		RequestID string `xml:"ResponseMetadata>RequestId"`
	}
	require.NoError(t, xml.Unmarshal([]byte(body), &out))
	require.NotEmpty(t, out.MessageID)
	require.NotEmpty(t, out.RequestID)
	msgs := srv.SNSMessages()
	require.Len(t, msgs, 1)
	assert.Equal(t, cloudsim.SNSMessage{MessageID: out.MessageID, TopicARN: topic, Subject: "run done", Message: "wave 1: 3 failed",
		Attributes: map[string]string{"kind": "digest"}, Account: "100000000000", Time: msgs[0].Time}, msgs[0])

	for name, form := range map[string]url.Values{
		"an empty message":   {"TopicArn": {topic}, "Message": {""}},
		"no topic":           {"Message": {"x"}},
		"not an SNS ARN":     {"TopicArn": {"arn:aws:s3:::bucket"}, "Message": {"x"}},
		"a subject too long": {"TopicArn": {topic}, "Message": {"x"}, "Subject": {strings.Repeat("s", 101)}},
	} {
		status, body := publish(form)
		assert.Equal(t, http.StatusBadRequest, status, name)
		assert.Contains(t, body, "<Code>InvalidParameter</Code>", name)
	}
	assert.Len(t, srv.SNSMessages(), 1)
}
