package awsfleet

import (
	"bytes"
	"context"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

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
// for byte (the same keys, sorted as the SDK sorts them, escaped with url.QueryEscape), from a
// short list of pairs, and sets the same method, path and Content-Type. An input with a member
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

type queryPair struct{ key, value string }

// createSnapshotsBody is the query body the SDK's serializer writes for in (see
// leanSerializable): the keys it builds (flat lists numbered from 1, a list element that sets
// nothing still takes its number), sorted, each pair escaped with url.QueryEscape.
func createSnapshotsBody(in *ec2.CreateSnapshotsInput) []byte {
	pairs := make([]queryPair, 0, 8+2*6)
	pairs = append(pairs, queryPair{"Action", "CreateSnapshots"}, queryPair{"Version", "2016-11-15"})
	if in.Description != nil {
		pairs = append(pairs, queryPair{"Description", *in.Description})
	}
	if s := in.InstanceSpecification; s != nil {
		if s.ExcludeBootVolume != nil {
			pairs = append(pairs, queryPair{"InstanceSpecification.ExcludeBootVolume", strconv.FormatBool(*s.ExcludeBootVolume)})
		}
		if s.InstanceId != nil {
			pairs = append(pairs, queryPair{"InstanceSpecification.InstanceId", *s.InstanceId})
		}
	}
	for i := range in.TagSpecifications {
		spec := &in.TagSpecifications[i]
		prefix := "TagSpecification." + strconv.Itoa(i+1) + "."
		if spec.ResourceType != "" {
			pairs = append(pairs, queryPair{prefix + "ResourceType", string(spec.ResourceType)})
		}
		for j := range spec.Tags {
			tag := &spec.Tags[j]
			tagPrefix := prefix + "Tag." + strconv.Itoa(j+1) + "."
			if tag.Key != nil {
				pairs = append(pairs, queryPair{tagPrefix + "Key", *tag.Key})
			}
			if tag.Value != nil {
				pairs = append(pairs, queryPair{tagPrefix + "Value", *tag.Value})
			}
		}
	}
	slices.SortFunc(pairs, func(a, b queryPair) int { return strings.Compare(a.key, b.key) })
	size := 0
	for _, p := range pairs {
		size += len(p.key) + len(p.value) + 2
	}
	// Escaping grows a value by at most 2 bytes per byte; most grow little.
	b := make([]byte, 0, size+size/4)
	for i, p := range pairs {
		if i > 0 {
			b = append(b, '&')
		}
		b = appendQueryEscape(b, p.key)
		b = append(b, '=')
		b = appendQueryEscape(b, p.value)
	}
	return b
}

// appendQueryEscape appends url.QueryEscape(s) to b, without the copy when s needs no escape.
func appendQueryEscape(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if !unreservedQueryByte(s[i]) {
			return append(b, url.QueryEscape(s)...)
		}
	}
	return append(b, s...)
}

// unreservedQueryByte reports whether url.QueryEscape leaves c as it is.
func unreservedQueryByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~'
}
