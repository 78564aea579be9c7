package awsfleet

import (
	"context"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	"github.com/aws/smithy-go/middleware"

	"github.com/patchwave/patchwave/libs/provider"
)

// LeanEC2Decoders is leanEC2Decoders, for tests that build EC2 clients of their own.
var LeanEC2Decoders func(*middleware.Stack) error = leanEC2Decoders

// AdapterEC2Decoders is adapterEC2Decoders, the stack option of the adapter's EC2 clients.
var AdapterEC2Decoders func(*middleware.Stack) error = adapterEC2Decoders

// LeanDecode decodes body as the answer of the EC2 operation op with the lean decoder alone,
// and reports whether it decoded it (false: the adapter would hand it to the SDK's decoder).
func LeanDecode(op string, body []byte) (any, bool) {
	r := xmlReader{b: body}
	var out any
	switch op {
	case "DescribeInstances":
		out = decodeDescribeInstances(&r)
	case "DescribeSnapshots":
		out = decodeDescribeSnapshots(&r)
	case "DescribeInstanceStatus":
		out = decodeDescribeInstanceStatus(&r)
	case "CreateSnapshots":
		out = decodeCreateSnapshots(&r)
	default:
		panic("no lean decoder for " + op)
	}
	if r.bad {
		return nil, false
	}
	return out, true
}

// CreateSnapshotSet is createSnapshotSet: the one CreateSnapshots call the adapter sends per
// instance, for benchmarks of that call alone.
var CreateSnapshotSet = createSnapshotSet

// EC2Client is the adapter's EC2 client for t (its stack options, the shared HTTP client).
func (f *Fleet) EC2Client(ctx context.Context, t provider.Target) (*ec2.Client, error) {
	c, err := f.clientsFor(ctx, t)
	if err != nil {
		return nil, err
	}
	return c.ec2, nil
}

// AdapterHTTPClient wraps inner as NewHTTPClient wraps its transport (request bodies in memory,
// the attempt timeout as a deadline).
func AdapterHTTPClient(inner aws.HTTPClient, timeout time.Duration) aws.HTTPClient {
	return bodyNoWriteTo{inner: inner, timeout: timeout}
}

// LeanEC2Serializers is leanEC2Serializers, for tests that build EC2 clients of their own.
var LeanEC2Serializers func(*middleware.Stack) error = leanEC2Serializers

// LeanSerializes reports whether the lean serializer writes in (false: the SDK's does).
func LeanSerializes(in *ec2.CreateSnapshotsInput) bool { return leanSerializable(in) }

// SSMClient is the adapter's SSM client for t (its stack options, the shared HTTP client).
func (f *Fleet) SSMClient(ctx context.Context, t provider.Target) (*ssm.Client, error) {
	c, err := f.clientsFor(ctx, t)
	if err != nil {
		return nil, err
	}
	return c.ssm, nil
}

// RemoveIdleSteps is the clients' removal of the SDK steps that never act for the adapter
// (outside Lambda), for the call-stack benchmark.
var RemoveIdleSteps = removeIdleSteps(false)
