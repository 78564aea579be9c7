package awsfleet_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider/awsfleet"
)

// sentRequest is what an EC2 client put on the wire, but for what changes per call (the
// signing time, the signature, the invocation id).
type sentRequest struct {
	method, url, body string
	header            http.Header
	signedHeaders     string
}

// capturingHTTP records the request it is given and answers 200 with an empty snapshot set.
type capturingHTTP struct{ sent *sentRequest }

func (c capturingHTTP) Do(r *http.Request) (*http.Response, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil, err
	}
	h := r.Header.Clone()
	auth := h.Get("Authorization")
	_, signed, _ := strings.Cut(auth, "SignedHeaders=")
	signed, _, _ = strings.Cut(signed, ",")
	for _, k := range []string{"Authorization", "X-Amz-Date", "Amz-Sdk-Invocation-Id"} {
		if h.Get(k) == "" {
			return nil, fmt.Errorf("the request has no %s header", k)
		}
		h.Del(k)
	}
	*c.sent = sentRequest{method: r.Method, url: r.URL.String(), body: string(body), header: h, signedHeaders: signed}
	answer := `<CreateSnapshotsResponse><snapshotSet/></CreateSnapshotsResponse>`
	return &http.Response{StatusCode: http.StatusOK, Header: http.Header{"Content-Type": []string{"text/xml"}},
		Body: io.NopCloser(strings.NewReader(answer)), ContentLength: int64(len(answer))}, nil
}

// sendBoth sends in with the SDK's serializer and with the lean one, and returns both requests.
func sendBoth(t testing.TB, in *ec2.CreateSnapshotsInput) (sdk, lean sentRequest) {
	t.Helper()
	send := func(sent *sentRequest, opts []func(*middleware.Stack) error) {
		c := ec2.New(ec2.Options{
			Region:       "eu-central-1",
			BaseEndpoint: aws.String("http://ec2.test/base"),
			Credentials:  credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", ""),
			HTTPClient:   capturingHTTP{sent: sent},
			APIOptions:   opts,
		})
		_, err := c.CreateSnapshots(context.Background(), in)
		require.NoError(t, err)
	}
	send(&sdk, nil)
	send(&lean, []func(*middleware.Stack) error{awsfleet.LeanEC2Serializers})
	return sdk, lean
}

func tagsOf(kv ...string) []ec2types.Tag {
	var tags []ec2types.Tag
	for i := 0; i+1 < len(kv); i += 2 {
		tags = append(tags, ec2types.Tag{Key: aws.String(kv[i]), Value: aws.String(kv[i+1])})
	}
	return tags
}

func TestLeanCreateSnapshotsSerializerMatchesTheSDK(t *testing.T) {
	many := make([]string, 0, 24)
	for i := range 12 {
		many = append(many, fmt.Sprintf("k%d", i), fmt.Sprintf("v %d", i))
	}
	spec := func() *ec2types.InstanceSpecification {
		return &ec2types.InstanceSpecification{InstanceId: aws.String("i-0123456789abcdef0"), ExcludeBootVolume: aws.Bool(false)}
	}
	tests := []struct {
		name string
		in   *ec2.CreateSnapshotsInput
	}{
		{name: "the adapter's request", in: &ec2.CreateSnapshotsInput{InstanceSpecification: spec(),
			Description: aws.String("patchwave pre-patch snapshot run=run-1 instance=i-0123456789abcdef0"),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot,
				Tags: tagsOf(awsfleet.TagTenant, "acme", awsfleet.TagRun, "run-1", awsfleet.TagInstance, "i-0123456789abcdef0",
					awsfleet.TagSnapshotSet, "ss-1", awsfleet.TagAttempt, "a1b2", "change", "CHG-1042")}}}},
		{name: "twelve tags sort as the SDK sorts them (10 before 2)", in: &ec2.CreateSnapshotsInput{InstanceSpecification: spec(),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot, Tags: tagsOf(many...)}}}},
		{name: "values that need escaping", in: &ec2.CreateSnapshotsInput{InstanceSpecification: spec(),
			Description: aws.String("a b&c=d+e%f/g?h#i é ~*'()!\x00\n"),
			TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot,
				Tags: tagsOf("key with space", "a<b & \"c\" 'd'", "üñï", "")}}}},
		{name: "only an instance id", in: &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String("i-1")}}},
		{name: "an empty description and instance id", in: &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String("")}, Description: aws.String("")}},
		{name: "several tag specifications, tags without key or value, an empty list", in: &ec2.CreateSnapshotsInput{InstanceSpecification: spec(),
			TagSpecifications: []ec2types.TagSpecification{
				{ResourceType: ec2types.ResourceTypeSnapshot, Tags: []ec2types.Tag{{Key: aws.String("k")}, {}, {Value: aws.String("v")}}},
				{Tags: []ec2types.Tag{}},
				{ResourceType: ec2types.ResourceTypeVolume},
				{},
			}}},
		{name: "an empty tag specification list", in: &ec2.CreateSnapshotsInput{InstanceSpecification: spec(), TagSpecifications: []ec2types.TagSpecification{}}},
		{name: "members the lean serializer leaves to the SDK", in: &ec2.CreateSnapshotsInput{
			InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String("i-1"), ExcludeDataVolumeIds: []string{"vol-1", "vol-2"}},
			CopyTagsFromSource:    ec2types.CopyTagsFromSourceVolume, DryRun: aws.Bool(true), Location: ec2types.SnapshotLocationEnumRegional,
			OutpostArn: aws.String("arn:aws:outposts:eu-central-1:123456789012:outpost/op-1")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sdk, lean := sendBoth(t, tt.in)
			require.Equal(t, !strings.HasPrefix(tt.name, "members the lean serializer leaves"), awsfleet.LeanSerializes(tt.in))
			require.NotEmpty(t, sdk.body)
			require.Equal(t, sdk, lean)
		})
	}
}

// FuzzLeanCreateSnapshotsSerializer checks that for any description, instance id and tags the
// lean serializer sends what the SDK's sends.
func FuzzLeanCreateSnapshotsSerializer(f *testing.F) {
	f.Add("i-0123456789abcdef0", "patchwave pre-patch snapshot", "change", "CHG-1042", 3, true)
	f.Add("", "a b&c=d", "é", "~*'()", 11, false)
	f.Fuzz(func(t *testing.T, instance, description, key, value string, tags int, exclude bool) {
		tags = (tags%16 + 16) % 16
		spec := ec2types.TagSpecification{ResourceType: ec2types.ResourceTypeSnapshot}
		for i := range tags {
			spec.Tags = append(spec.Tags, ec2types.Tag{Key: aws.String(fmt.Sprint(key, i)), Value: aws.String(value)})
		}
		in := &ec2.CreateSnapshotsInput{
			InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(instance), ExcludeBootVolume: aws.Bool(exclude)},
			Description:           aws.String(description),
			TagSpecifications:     []ec2types.TagSpecification{spec},
		}
		sdk, lean := sendBoth(t, in)
		if sdk.body != lean.body || sdk.url != lean.url || sdk.method != lean.method || sdk.signedHeaders != lean.signedHeaders {
			t.Fatalf("requests differ:\nsdk:  %+v\nlean: %+v", sdk, lean)
		}
	})
}
