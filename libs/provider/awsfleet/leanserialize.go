package awsfleet

import (
	"bytes"
	"context"
	"path"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	"github.com/aws/smithy-go"
	"github.com/aws/smithy-go/encoding/httpbinding"
	"github.com/aws/smithy-go/middleware"
	"github.com/aws/smithy-go/tracing"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// A lean serializer for CreateSnapshots, the call a wave makes once per instance. The SDK's
// query serializer puts every parameter in a url.Values map (a slice per value), then sorts
// and escapes the keys into a growing buffer: about a fifth of the call's client-side CPU and
// 5 KB of its allocations (BenchmarkCreateSnapshotSet). This one writes the same body, byte
// for byte (the same keys, sorted as the SDK sorts them, escaped with url.QueryEscape), each
// pair written in its place straight into the body, and sets the same method, path and
// Content-Type. An input with a member
// it does not write (CopyTagsFromSource, DryRun, Location, OutpostArn, excluded data volumes)
// goes to the SDK's serializer. TestLeanCreateSnapshotsSerializerMatchesTheSDK and
// FuzzLeanCreateSnapshotsSerializer compare the requests both send.

// leanEC2Serializers is the EC2 clients' stack option that puts the lean serializer in place of
// the SDK's for CreateSnapshots.
func leanEC2Serializers(stack *middleware.Stack) error {
	if stack.ID() != "CreateSnapshots" {
		return nil
	}
	sdk, ok := stack.Serialize.Get("OperationSerializer")
	if !ok {
		return nil
	}
	_, err := stack.Serialize.Swap("OperationSerializer", &leanCreateSnapshotsSerializer{sdk: sdk})
	return err
}

type leanCreateSnapshotsSerializer struct {
	sdk middleware.SerializeMiddleware
}

// ID keeps the SDK's id, so middlewares placed relative to it stay where they were.
func (*leanCreateSnapshotsSerializer) ID() string { return "OperationSerializer" }

func (m *leanCreateSnapshotsSerializer) HandleSerialize(ctx context.Context, in middleware.SerializeInput, next middleware.SerializeHandler) (middleware.SerializeOutput, middleware.Metadata, error) {
	request, ok := in.Request.(*smithyhttp.Request)
	input, isInput := in.Parameters.(*ec2.CreateSnapshotsInput)
	if !ok || !isInput || input == nil || !leanSerializable(input) {
		return m.sdk.HandleSerialize(ctx, in, next)
	}
	_, span := tracing.StartSpan(ctx, "OperationSerializer")
	// The path and method as the SDK's serializer sets them for the operation path "/".
	if len(request.URL.Path) == 0 {
		request.URL.Path = "/"
	} else {
		request.URL.Path = path.Join(request.URL.Path, "/")
		if request.URL.Path != "/" {
			request.URL.Path += "/"
		}
	}
	request.Method = "POST"
	enc, err := httpbinding.NewEncoder(request.URL.Path, request.URL.RawQuery, request.Header)
	if err != nil {
		span.End()
		return middleware.SerializeOutput{}, middleware.Metadata{}, &smithy.SerializationError{Err: err}
	}
	enc.SetHeader("Content-Type").String("application/x-www-form-urlencoded")
	body := createSnapshotsBody(input)
	if request, err = request.SetStream(bytes.NewReader(body)); err != nil {
		span.End()
		return middleware.SerializeOutput{}, middleware.Metadata{}, &smithy.SerializationError{Err: err}
	}
	if request.Request, err = enc.Encode(request.Request); err != nil {
		span.End()
		return middleware.SerializeOutput{}, middleware.Metadata{}, &smithy.SerializationError{Err: err}
	}
	in.Request = request
	span.End()
	return next.HandleSerialize(ctx, in)
}

// leanSerializable reports whether createSnapshotsBody writes every member input sets.
func leanSerializable(in *ec2.CreateSnapshotsInput) bool {
	return in.CopyTagsFromSource == "" && in.DryRun == nil && in.Location == "" && in.OutpostArn == nil &&
		(in.InstanceSpecification == nil || in.InstanceSpecification.ExcludeDataVolumeIds == nil)
}

// createSnapshotsBody is the query body the SDK's serializer writes for in (see
// leanSerializable): the keys it builds (flat lists numbered from 1, a list element that sets
// nothing still takes its number), sorted, each pair escaped with url.QueryEscape.
//
// The pairs are written in the SDK's sorted order straight into the body, without building and
// sorting the keys: Action, Description, InstanceSpecification.ExcludeBootVolume and .InstanceId,
// TagSpecification.N..., Version sort in that order; within a specification ResourceType
// sorts before Tag.M, and Key before Value; the numbers N and M sort as their decimal strings
// do (10 before 2: the '.' after a shorter number sorts before any digit), which decimalOrder
// gives. The keys are letters, digits and dots, which url.QueryEscape leaves as they are.
func createSnapshotsBody(in *ec2.CreateSnapshotsInput) []byte {
	// The raw size, each key counted at its longest; escaping grows most values little.
	size := len("Action=CreateSnapshots&Version=2016-11-15")
	if in.Description != nil {
		size += len("&Description=") + len(*in.Description)
	}
	if s := in.InstanceSpecification; s != nil {
		size += len("&InstanceSpecification.ExcludeBootVolume=false&InstanceSpecification.InstanceId=")
		if s.InstanceId != nil {
			size += len(*s.InstanceId)
		}
	}
	for i := range in.TagSpecifications {
		spec := &in.TagSpecifications[i]
		size += len("&TagSpecification.NN.ResourceType=") + len(spec.ResourceType)
		for j := range spec.Tags {
			size += 2*len("&TagSpecification.NN.Tag.NN.Value=") + len(aws.ToString(spec.Tags[j].Key)) + len(aws.ToString(spec.Tags[j].Value))
		}
	}
	b := make([]byte, 0, size+size/8)
	b = append(b, "Action=CreateSnapshots"...)
	if in.Description != nil {
		b = append(b, "&Description="...)
		b = appendQueryEscape(b, *in.Description)
	}
	if s := in.InstanceSpecification; s != nil {
		if s.ExcludeBootVolume != nil {
			b = append(b, "&InstanceSpecification.ExcludeBootVolume="...)
			b = strconv.AppendBool(b, *s.ExcludeBootVolume)
		}
		if s.InstanceId != nil {
			b = append(b, "&InstanceSpecification.InstanceId="...)
			b = appendQueryEscape(b, *s.InstanceId)
		}
	}
	var specOrder, tagOrder [9]int
	for _, i := range decimalOrder(len(in.TagSpecifications), &specOrder) {
		spec := &in.TagSpecifications[i-1]
		if spec.ResourceType != "" {
			b = append(b, "&TagSpecification."...)
			b = strconv.AppendInt(b, int64(i), 10)
			b = append(b, ".ResourceType="...)
			b = appendQueryEscape(b, string(spec.ResourceType))
		}
		for _, j := range decimalOrder(len(spec.Tags), &tagOrder) {
			tag := &spec.Tags[j-1]
			for _, member := range [2]struct {
				name  string
				value *string
			}{{".Key=", tag.Key}, {".Value=", tag.Value}} {
				if member.value == nil {
					continue
				}
				b = append(b, "&TagSpecification."...)
				b = strconv.AppendInt(b, int64(i), 10)
				b = append(b, ".Tag."...)
				b = strconv.AppendInt(b, int64(j), 10)
				b = append(b, member.name...)
				b = appendQueryEscape(b, *member.value)
			}
		}
	}
	return append(b, "&Version=2016-11-15"...)
}

// decimalOrder returns 1..n sorted as their decimal strings sort (1, 10, 11, 2, ...), in small
// when n fits (up to 9, the order is 1..n).
func decimalOrder(n int, small *[9]int) []int {
	var order []int
	if n <= len(small) {
		order = small[:n]
	} else {
		order = make([]int, n)
	}
	for i := range order {
		order[i] = i + 1
	}
	if n > 9 {
		slices.SortFunc(order, func(a, b int) int {
			return strings.Compare(strconv.Itoa(a), strconv.Itoa(b))
		})
	}
	return order
}

// appendQueryEscape appends url.QueryEscape(s) to b, without building the escaped string: a
// space becomes '+', a byte url.QueryEscape leaves alone stays, any other byte becomes %XX in
// upper-case hex (TestAppendQueryEscapeIsQueryEscape checks every byte).
func appendQueryEscape(b []byte, s string) []byte {
	const hex = "0123456789ABCDEF"
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case unreservedQueryByte(c):
			b = append(b, c)
		case c == ' ':
			b = append(b, '+')
		default:
			b = append(b, '%', hex[c>>4], hex[c&15])
		}
	}
	return b
}

// unreservedQueryByte reports whether url.QueryEscape leaves c as it is.
func unreservedQueryByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
}
