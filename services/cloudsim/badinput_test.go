package cloudsim_test

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/cloudsim"
)

func TestBadRequestsAreClientErrors(t *testing.T) {
	srv := startServer(t, cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(2)}})
	creds, err := tenantConfig(t, srv, acmeID).Credentials.Retrieve(t.Context())
	require.NoError(t, err)
	send := func(t *testing.T, service, path string, header http.Header, body string, sign bool) (int, string) {
		t.Helper()
		method := http.MethodPost
		if service == "s3" {
			method = http.MethodPut
		}
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL()+path, strings.NewReader(body))
		require.NoError(t, err)
		for k, v := range header {
			req.Header[k] = v
		}
		if sign {
			sum := sha256.Sum256([]byte(body))
			req.Header.Set("X-Amz-Content-Sha256", hex.EncodeToString(sum[:]))
			require.NoError(t, v4.NewSigner().SignHTTP(t.Context(), creds, req, hex.EncodeToString(sum[:]), service, region, time.Now()))
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	form := http.Header{"Content-Type": {"application/x-www-form-urlencoded"}}
	ssmOp := func(op string) http.Header {
		return http.Header{"Content-Type": {"application/x-amz-json-1.1"}, "X-Amz-Target": {"AmazonSSM." + op}}
	}
	tests := []struct {
		name, service, path string
		header              http.Header
		body                string
		sign                bool
		code                string
	}{
		{"an unsigned EC2 call", "ec2", "/", form, "Action=DescribeInstances&Version=2016-11-15", false, "AuthFailure"},
		{"an unsigned SSM call", "ssm", "/", ssmOp("ListCommands"), "{}", false, "UnrecognizedClientException"},
		{"an EC2 call without an action", "ec2", "/", form, "Version=2016-11-15", true, "MissingAction"},
		{"an operation cloudsim does not emulate", "ec2", "/", form, "Action=RunInstances&Version=2016-11-15", true, "InvalidAction"},
		{"a broken form", "ec2", "/", form, "Action=DescribeInstances&%zz", true, "MalformedQueryString"},
		{"a bad page token", "ec2", "/", form, "Action=DescribeInstances&Version=2016-11-15&NextToken=garbage", true, "InvalidParameterValue"},
		{"a MaxResults that is not a number", "ec2", "/", form, "Action=DescribeInstances&Version=2016-11-15&MaxResults=many", true, "InvalidParameterValue"},
		{"SSM JSON that does not parse", "ssm", "/", ssmOp("SendCommand"), "{", true, "SerializationException"},
		{"SSM JSON of the wrong shape", "ssm", "/", ssmOp("SendCommand"), `{"InstanceIds":"i-1"}`, true, "SerializationException"},
		{"an SSM call without a target", "ssm", "/", http.Header{"Content-Type": {"application/x-amz-json-1.1"}}, "{}", true, "UnknownOperationException"},
		{"a bad SSM page token", "ssm", "/", ssmOp("ListCommands"), `{"NextToken":"x"}`, true, "InvalidNextToken"},
		{"an S3 bucket name that is not valid", "s3", "/No_Such", nil, "", true, "InvalidBucketName"},
		{"an S3 object in a bucket that does not exist", "s3", "/nobucket/key", nil, "data", true, "NoSuchBucket"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := send(t, tt.service, tt.path, tt.header, tt.body, tt.sign)
			require.GreaterOrEqual(t, status, 400, body)
			require.Less(t, status, 500, body)
			require.Contains(t, body, tt.code)
		})
	}
}
