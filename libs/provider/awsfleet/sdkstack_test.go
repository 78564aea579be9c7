package awsfleet_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go/middleware"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/awsfleet"
	"github.com/patchwave/patchwave/libs/testkit/cloudtest"
)

// stackSteps records, per operation, the ids of the steps of its last call's stack, as the
// SDK runs them (a stack option added after the adapter's).
type stackSteps struct {
	mu    sync.Mutex
	steps map[string][]string
}

func (s *stackSteps) record(stack *middleware.Stack) error {
	var ids []string
	for _, step := range []struct {
		name string
		list []string
	}{
		{"Initialize", stack.Initialize.List()},
		{"Serialize", stack.Serialize.List()},
		{"Build", stack.Build.List()},
		{"Finalize", stack.Finalize.List()},
		{"Deserialize", stack.Deserialize.List()},
	} {
		for _, id := range step.list {
			ids = append(ids, step.name+"/"+id)
		}
	}
	s.mu.Lock()
	s.steps[stack.ID()] = ids
	s.mu.Unlock()
	return nil
}

// sentHeaders records the headers of every request sent, by operation (the X-Amz-Target of
// SSM's JSON protocol, the Action of EC2's query protocol), then sends it.
type sentHeaders struct {
	inner aws.HTTPClient
	mu    sync.Mutex
	sent  map[string]http.Header
}

func (s *sentHeaders) Do(r *http.Request) (*http.Response, error) {
	op := r.Header.Get("X-Amz-Target")
	if op == "" {
		op = "ec2"
	}
	s.mu.Lock()
	s.sent[op] = r.Header.Clone()
	s.mu.Unlock()
	return s.inner.Do(r)
}

// TestAdapterStacksHaveTheSteps lists the steps the adapter's hot calls run: the SDK's, but
// for the ones removeIdleSteps removes, with the adapter's own (metrics, limiter, lean
// serializer and decoders) in place. An SDK upgrade that adds, renames or moves a step fails
// it: look at what the new step does before deciding whether the adapter needs it.
func TestAdapterStacksHaveTheSteps(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{})
	tg := env.Target("acme")
	insts := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})
	require.NotEmpty(t, insts)
	rec := &stackSteps{steps: map[string][]string{}}
	adapterEC2, err := env.Fleet.EC2Client(t.Context(), tg)
	require.NoError(t, err)
	adapterSSM, err := env.Fleet.SSMClient(t.Context(), tg)
	require.NoError(t, err)
	ec2c := ec2.New(adapterEC2.Options(), func(o *ec2.Options) { o.APIOptions = append(o.APIOptions, rec.record) })
	ssmc := ssm.New(adapterSSM.Options(), func(o *ssm.Options) { o.APIOptions = append(o.APIOptions, rec.record) })

	ctx := t.Context()
	req := provider.SnapshotRequest{Tenant: "acme", RunID: "stack", InstanceID: insts[0].ID}
	require.NoError(t, awsfleet.CreateSnapshotSet(ctx, ec2c, provider.SnapshotSetID(req.Tenant, req.RunID, req.InstanceID), "a1", req))
	_, err = ec2c.DescribeSnapshots(ctx, &ec2.DescribeSnapshotsInput{OwnerIds: []string{"self"}})
	require.NoError(t, err)
	cmd, err := ssmc.SendCommand(ctx, &ssm.SendCommandInput{DocumentName: aws.String(awsfleet.PatchDocument),
		InstanceIds: []string{insts[0].ID}, Parameters: map[string][]string{"Operation": {"Scan"}}})
	require.NoError(t, err)
	_, err = ssmc.ListCommandInvocations(ctx, &ssm.ListCommandInvocationsInput{CommandId: cmd.Command.CommandId})
	require.NoError(t, err)
	_, err = ssmc.DescribeInstancePatchStates(ctx, &ssm.DescribeInstancePatchStatesInput{InstanceIds: []string{insts[0].ID}})
	require.NoError(t, err)

	// Every call of the adapter's EC2 and SSM clients runs these, in this order, with its
	// operation's validation (when it has required members) first.
	common := func(validation bool, serializer string) []string {
		var ids []string
		if validation {
			ids = append(ids, "Initialize/OperationInputValidation")
		}
		return append(ids,
			"Initialize/PatchwaveCall",
			"Serialize/setOperationInput", "Serialize/ResolveEndpoint", "Serialize/"+serializer,
			"Build/ClientRequestID", "Build/UserAgent",
			"Finalize/Retry", "Finalize/PatchwaveAttempt", "Finalize/ResolveAuthScheme", "Finalize/GetIdentity",
			"Finalize/ResolveEndpointV2", "Finalize/ComputePayloadHash", "Finalize/setLegacyContextSigningOptions",
			"Finalize/Signing",
			"Deserialize/AddRawResponseToMetadata", "Deserialize/ResponseErrorWrapper", "Deserialize/RequestIDRetriever",
			"Deserialize/OperationDeserializer", "Deserialize/RecordResponseTiming")
	}
	want := map[string][]string{
		"CreateSnapshots":             common(true, "OperationSerializer"),
		"DescribeSnapshots":           common(false, "OperationSerializer"),
		"SendCommand":                 common(true, "OperationSerializer"),
		"ListCommandInvocations":      common(true, "OperationSerializer"),
		"DescribeInstancePatchStates": common(true, "OperationSerializer"),
	}
	for op, steps := range want {
		require.Equal(t, steps, rec.steps[op], "the steps of %s", op)
	}
}

// TestAdapterCallsSendWhatAWSNeedsAndPassTheSignatureCheck checks what the adapter's EC2 and
// SSM clients put on the wire with the idle steps removed and the endpoint cached: the SDK's
// user agent, invocation id and attempt header, a SigV4 Authorization over the same headers
// as before, the session token of the assumed role, and no trace header outside Lambda; and
// cloudsim, which checks every signature, accepts the calls and refuses a wrong secret.
func TestAdapterCallsSendWhatAWSNeedsAndPassTheSignatureCheck(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{})
	tg := env.Target("acme")
	insts := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})
	require.NotEmpty(t, insts)
	adapterEC2, err := env.Fleet.EC2Client(t.Context(), tg)
	require.NoError(t, err)
	adapterSSM, err := env.Fleet.SSMClient(t.Context(), tg)
	require.NoError(t, err)
	sent := &sentHeaders{inner: adapterEC2.Options().HTTPClient, sent: map[string]http.Header{}}
	ec2c := ec2.New(adapterEC2.Options(), func(o *ec2.Options) { o.HTTPClient = sent })
	ssmc := ssm.New(adapterSSM.Options(), func(o *ssm.Options) { o.HTTPClient = sent })

	ctx := t.Context()
	req := provider.SnapshotRequest{Tenant: "acme", RunID: "headers", InstanceID: insts[0].ID}
	require.NoError(t, awsfleet.CreateSnapshotSet(ctx, ec2c, provider.SnapshotSetID(req.Tenant, req.RunID, req.InstanceID), "a1", req))
	_, err = ssmc.DescribeInstancePatchStates(ctx, &ssm.DescribeInstancePatchStatesInput{InstanceIds: []string{insts[0].ID}})
	require.NoError(t, err)

	for op, signed := range map[string]string{
		"ec2":                                   "amz-sdk-invocation-id;amz-sdk-request;content-length;content-type;host;x-amz-date;x-amz-security-token",
		"AmazonSSM.DescribeInstancePatchStates": "amz-sdk-invocation-id;amz-sdk-request;content-length;content-type;host;x-amz-date;x-amz-security-token;x-amz-target",
	} {
		h := sent.sent[op]
		require.NotNil(t, h, "a request of %s was sent", op)
		require.True(t, strings.HasPrefix(h.Get("User-Agent"), "aws-sdk-go-v2/"), "%s: the SDK's user agent, got %q", op, h.Get("User-Agent"))
		require.Len(t, h.Get("Amz-Sdk-Invocation-Id"), 36, "%s: an invocation id", op)
		require.Equal(t, "attempt=1; max=3", h.Get("Amz-Sdk-Request"), op)
		require.NotEmpty(t, h.Get("X-Amz-Date"), op)
		require.NotEmpty(t, h.Get("X-Amz-Security-Token"), "%s: the assumed role's session token", op)
		require.Empty(t, h.Values("X-Amzn-Trace-Id"), "%s: no trace header outside Lambda", op)
		auth := h.Get("Authorization")
		require.True(t, strings.HasPrefix(auth, "AWS4-HMAC-SHA256 Credential="), "%s: %s", op, auth)
		require.Contains(t, auth, "/"+tg.Region+"/", op)
		require.Contains(t, auth, "SignedHeaders="+signed+", Signature=", op)
	}

	// The same client with the right key and token but a wrong secret (and a signer of its
	// own: the SDK's signer keeps the key it derived per service and region while the access
	// key id and the day stay the same): cloudsim checks the signature and refuses it.
	creds, err := adapterEC2.Options().Credentials.Retrieve(ctx)
	require.NoError(t, err)
	withSecret := func(secret string) *ec2.Client {
		return ec2.New(adapterEC2.Options(), func(o *ec2.Options) {
			o.Credentials = credentials.NewStaticCredentialsProvider(creds.AccessKeyID, secret, creds.SessionToken)
			o.HTTPSignerV4 = v4.NewSigner()
			o.AuthSchemes = nil // rebuilt by ec2.New around the new signer
			o.RetryMaxAttempts = 1
		})
	}
	in := &ec2.CreateSnapshotsInput{InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(insts[0].ID)}}
	_, err = withSecret(creds.SecretAccessKey).CreateSnapshots(ctx, in)
	require.NoError(t, err, "the right secret with a new signer")
	_, err = withSecret(creds.SecretAccessKey+"x").CreateSnapshots(ctx, in)
	require.ErrorContains(t, err, "AuthFailure", "cloudsim refuses a request whose signature it cannot verify")
}

// TestAdapterInLambdaKeepsTheTraceHeader: where the SDK's RecursionDetection step has work to
// do (AWS Lambda, with a trace id in the environment), the adapter's clients keep it and send
// the trace header.
func TestAdapterInLambdaKeepsTheTraceHeader(t *testing.T) {
	env := cloudtest.Start(t, cloudtest.Options{})
	tg := env.Target("acme")
	insts := env.Discover(t, provider.DiscoverQuery{Tenant: "acme"})
	require.NotEmpty(t, insts)
	t.Setenv("AWS_LAMBDA_FUNCTION_NAME", "patchwave")
	t.Setenv("_X_AMZN_TRACE_ID", "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1")
	fleet := env.NewFleet(t, nil) // its clients are built with the variables set
	adapterEC2, err := fleet.EC2Client(t.Context(), tg)
	require.NoError(t, err)
	rec := &stackSteps{steps: map[string][]string{}}
	sent := &sentHeaders{inner: adapterEC2.Options().HTTPClient, sent: map[string]http.Header{}}
	ec2c := ec2.New(adapterEC2.Options(), func(o *ec2.Options) {
		o.HTTPClient = sent
		o.APIOptions = append(o.APIOptions, rec.record)
	})
	req := provider.SnapshotRequest{Tenant: "acme", RunID: "lambda", InstanceID: insts[0].ID}
	require.NoError(t, awsfleet.CreateSnapshotSet(t.Context(), ec2c, provider.SnapshotSetID(req.Tenant, req.RunID, req.InstanceID), "a1", req))
	require.Contains(t, rec.steps["CreateSnapshots"], "Build/RecursionDetection")
	require.Equal(t, "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1", sent.sent["ec2"].Get("X-Amzn-Trace-Id"))
}
