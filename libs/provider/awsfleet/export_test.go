package awsfleet

import "github.com/aws/smithy-go/middleware"

// LeanEC2Decoders is leanEC2Decoders, for tests that build EC2 clients of their own.
var LeanEC2Decoders func(*middleware.Stack) error = leanEC2Decoders

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
