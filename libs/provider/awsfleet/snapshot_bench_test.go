package awsfleet_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/provider/awsfleet"
	"github.com/patchwave/patchwave/libs/testkit/cloudtest"
)

// BenchmarkCreateSnapshotSet measures the adapter's client side of one CreateSnapshots call,
// the call a wave makes once per instance: the request built as the adapter builds it, the
// adapter's EC2 client (its stack options: metrics, limiter, lean decoders) and its HTTP client
// over a canned transport that answers with cloudsim's answer for an instance with its volumes
// and tags (no emulator, no network). Run:
//
//	cd libs/provider/awsfleet && go test -run '^$' -bench CreateSnapshotSet -benchmem .
func BenchmarkCreateSnapshotSet(b *testing.B) {
	env := cloudtest.Start(b, cloudtest.Options{})
	tg := env.Target("acme")
	insts := env.Discover(b, provider.DiscoverQuery{Tenant: "acme"})
	require.NotEmpty(b, insts)
	req := provider.SnapshotRequest{Tenant: "acme", RunID: "bench", InstanceID: insts[0].ID,
		Tags: map[string]string{"change": "CHG-1042"}}
	set := provider.SnapshotSetID(req.Tenant, req.RunID, req.InstanceID)

	plain := env.EC2(b, tg)
	rec := &recordingHTTP{inner: plain.Options().HTTPClient, op: "CreateSnapshots", bodys: map[string][][]byte{}}
	c := ec2.New(plain.Options(), func(o *ec2.Options) { o.HTTPClient = rec })
	_, err := c.CreateSnapshots(b.Context(), &ec2.CreateSnapshotsInput{
		InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(req.InstanceID)},
		TagSpecifications: []ec2types.TagSpecification{{ResourceType: ec2types.ResourceTypeSnapshot,
			Tags: []ec2types.Tag{{Key: aws.String(awsfleet.TagSnapshotSet), Value: aws.String(set)}}}},
	})
	require.NoError(b, err)
	body := rec.bodys["CreateSnapshots"][0]

	adapter, err := env.Fleet.EC2Client(b.Context(), tg)
	require.NoError(b, err)
	client := ec2.New(adapter.Options(), func(o *ec2.Options) {
		o.HTTPClient = awsfleet.AdapterHTTPClient(cannedHTTP{status: http.StatusOK, body: body}, 30*time.Second)
	})
	ctx := context.Background()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := awsfleet.CreateSnapshotSet(ctx, client, set, "a1b2c3d4", req); err != nil {
			b.Fatal(err)
		}
	}
}
