package cloudsim_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ssm"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/cloudsim"
)

// benchFleet is one emulator per fleet size, shared by the benchmarks of a run (building
// 100,000 instances once, not once per b.N).
var benchFleets sync.Map

type benchFleet struct {
	srv *cloudsim.Server
	c   clients
	ids []string
}

func fleet(b *testing.B, n int) *benchFleet { return newFleet(b, n, false) }

// newFleet builds (once per run) a fleet of n instances; persisted keeps its state in a
// directory (the mutation log written on every change, as patchd runs it).
func newFleet(b *testing.B, n int, persisted bool) *benchFleet {
	b.Helper()
	key := n
	if persisted {
		key = -n
	}
	if f, ok := benchFleets.Load(key); ok {
		return f.(*benchFleet)
	}
	start := time.Now()
	cfg := cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(n)},
		Timing: cloudsim.Timing{Snapshot: time.Minute, Command: time.Minute}}
	if persisted {
		dir, err := os.MkdirTemp("", "cloudsim-bench-")
		require.NoError(b, err)
		cfg.StateDir = dir // left behind with the process: a benchmark run has no cleanup hook
	}
	srv, err := cloudsim.New(cfg)
	require.NoError(b, err)
	srv.Start()
	b.Logf("built a fleet of %d instances (state dir %q) in %s", n, cfg.StateDir, time.Since(start).Round(time.Millisecond))
	f := &benchFleet{srv: srv, c: newClients(tenantConfig(b, srv, acmeID)), ids: srv.InstanceIDs(acmeID, region)}
	benchFleets.Store(key, f)
	return f
}

// BenchmarkOperations measures calls per second through the real SDK clients against a fleet of
// 100,000 instances, 32 callers at once, one sub-benchmark per operation and one mix.
func BenchmarkOperations(b *testing.B) {
	f := fleet(b, 100_000)
	var next atomic.Int64
	instance := func() string { return f.ids[int(next.Add(7919))%len(f.ids)] }
	ops := map[string]func() error{
		"DescribeInstances/by-id": func() error {
			_, err := f.c.ec2.DescribeInstances(b.Context(), &ec2.DescribeInstancesInput{InstanceIds: []string{instance()}})
			return err
		},
		"DescribeInstances/tag-page-50": func() error {
			_, err := f.c.ec2.DescribeInstances(b.Context(), &ec2.DescribeInstancesInput{MaxResults: aws.Int32(50),
				Filters: []ec2types.Filter{tagFilter("PatchWave", "2")}})
			return err
		},
		"CreateSnapshots": func() error {
			_, err := f.c.ec2.CreateSnapshots(b.Context(), &ec2.CreateSnapshotsInput{
				InstanceSpecification: &ec2types.InstanceSpecification{InstanceId: aws.String(instance())}})
			return err
		},
		"SendCommand": func() error {
			_, err := f.c.ssm.SendCommand(b.Context(), &ssm.SendCommandInput{DocumentName: aws.String("AWS-RunPatchBaseline"),
				InstanceIds: []string{instance()}, Parameters: map[string][]string{"Operation": {"Scan"}}})
			return err
		},
		"DescribeInstanceInformation/by-id": func() error {
			_, err := f.c.ssm.DescribeInstanceInformation(b.Context(), &ssm.DescribeInstanceInformationInput{
				Filters: []ssmtypes.InstanceInformationStringFilter{{Key: aws.String("InstanceIds"), Values: []string{instance()}}}})
			return err
		},
		"DescribeInstancePatches": func() error {
			_, err := f.c.ssm.DescribeInstancePatches(b.Context(), &ssm.DescribeInstancePatchesInput{InstanceId: aws.String(instance())})
			if err != nil && isCode(err, "InvalidInstanceId") {
				return nil // an agent-less instance
			}
			return err
		},
	}
	names := []string{"DescribeInstances/by-id", "DescribeInstances/tag-page-50", "CreateSnapshots", "SendCommand",
		"DescribeInstanceInformation/by-id", "DescribeInstancePatches"}
	run := func(b *testing.B, call func(i int64) error) {
		b.SetParallelism(16) // 16 x GOMAXPROCS callers
		var i atomic.Int64
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := call(i.Add(1)); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
	}
	for _, name := range names {
		b.Run(name, func(b *testing.B) { run(b, func(int64) error { return ops[name]() }) })
	}
	b.Run("mix", func(b *testing.B) {
		run(b, func(i int64) error { return ops[names[int(i)%len(names)]]() })
	})
}

// BenchmarkDescribeInstancesPage reads one page of 100 tag-filtered instances from the middle
// of fleets of growing size, through the SDK client and as a raw signed request: the cost per
// page stays flat because a page walks only the tag index from the token's position.
func BenchmarkDescribeInstancesPage(b *testing.B) {
	for _, n := range []int{1_000, 10_000, 100_000} {
		f := fleet(b, n)
		// A token from the middle of the fleet.
		size := min(1000, n/6)
		p := ec2.NewDescribeInstancesPaginator(f.c.ec2, &ec2.DescribeInstancesInput{MaxResults: aws.Int32(int32(size)),
			Filters: []ec2types.Filter{tagFilter("PatchWave", "2")}})
		var token *string
		for range max(1, n/6/size) {
			out, err := p.NextPage(b.Context())
			require.NoError(b, err)
			token = out.NextToken
		}
		b.Run("sdk/fleet-"+strconv.Itoa(n), func(b *testing.B) {
			in := &ec2.DescribeInstancesInput{MaxResults: aws.Int32(100), NextToken: token, Filters: []ec2types.Filter{tagFilter("PatchWave", "2")}}
			for b.Loop() {
				out, err := f.c.ec2.DescribeInstances(b.Context(), in)
				if err != nil {
					b.Fatal(err)
				}
				if len(out.Reservations) != 100 {
					b.Fatalf("page of %d", len(out.Reservations))
				}
			}
		})
		b.Run("server/fleet-"+strconv.Itoa(n), func(b *testing.B) {
			req := signedRequest(b, f, "ec2", formHeader(), "Action=DescribeInstances&Version=2016-11-15&MaxResults=100"+
				"&Filter.1.Name=tag%3APatchWave&Filter.1.Value.1=2&NextToken="+*token)
			for b.Loop() {
				if err := req.send(b); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// signed is a request signed once, sent again and again (cloudsim does not check clock skew).
type signed struct {
	url    string
	header http.Header
	body   []byte
	client *http.Client
}

var benchHTTP = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 128}}

func signedRequest(b *testing.B, f *benchFleet, service string, header http.Header, body string) *signed {
	b.Helper()
	creds, err := tenantConfig(b, f.srv, acmeID).Credentials.Retrieve(b.Context())
	require.NoError(b, err)
	req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, f.srv.URL()+"/", strings.NewReader(body))
	require.NoError(b, err)
	maps.Copy(req.Header, header)
	sum := sha256.Sum256([]byte(body))
	require.NoError(b, v4.NewSigner().SignHTTP(b.Context(), creds, req, hex.EncodeToString(sum[:]), service, region, time.Now()))
	return &signed{url: f.srv.URL() + "/", header: req.Header, body: []byte(body), client: benchHTTP}
}

func (s *signed) send(b *testing.B) error {
	req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, s.url, bytes.NewReader(s.body))
	if err != nil {
		return err
	}
	req.Header = s.header.Clone()
	resp, err := s.client.Do(req)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	return nil
}

func formHeader() http.Header {
	return http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"}}
}

func jsonHeader(op string) http.Header {
	return http.Header{"Content-Type": {"application/x-amz-json-1.1"}, "X-Amz-Target": {"AmazonSSM." + op}}
}

// BenchmarkServerThroughput measures the emulator alone: requests signed once with the SDK's
// SigV4 signer (cloudsim does not check clock skew, so a signed request can be replayed) sent by
// a plain net/http client, 32 at once, against 100,000 instances. BenchmarkOperations pays for
// the SDK clients' own work on the same 2 cores; this one shows what the server can take.
func BenchmarkServerThroughput(b *testing.B) { serverThroughput(b, fleet(b, 100_000)) }

// BenchmarkServerThroughputPersisted is BenchmarkServerThroughput against 10,000 instances kept
// in a state directory: every change appends to the mutation log, as under patchd.
func BenchmarkServerThroughputPersisted(b *testing.B) {
	serverThroughput(b, newFleet(b, 10_000, true))
}

func serverThroughput(b *testing.B, f *benchFleet) {
	id := f.ids[len(f.ids)/2]
	reqs := map[string]*signed{
		"DescribeInstances/by-id": signedRequest(b, f, "ec2", formHeader(), "Action=DescribeInstances&Version=2016-11-15&InstanceId.1="+id),
		"DescribeInstances/tag-page-50": signedRequest(b, f, "ec2", formHeader(),
			"Action=DescribeInstances&Version=2016-11-15&MaxResults=50&Filter.1.Name=tag%3APatchWave&Filter.1.Value.1=2"),
		"CreateSnapshots": signedRequest(b, f, "ec2", formHeader(), "Action=CreateSnapshots&Version=2016-11-15&InstanceSpecification.InstanceId="+id),
		"SendCommand": signedRequest(b, f, "ssm", jsonHeader("SendCommand"),
			`{"DocumentName":"AWS-RunPatchBaseline","InstanceIds":["`+id+`"],"Parameters":{"Operation":["Scan"]}}`),
		"DescribeInstanceInformation/by-id": signedRequest(b, f, "ssm", jsonHeader("DescribeInstanceInformation"),
			`{"Filters":[{"Key":"InstanceIds","Values":["`+id+`"]}]}`),
	}
	for _, name := range []string{"DescribeInstances/by-id", "DescribeInstances/tag-page-50", "CreateSnapshots", "SendCommand", "DescribeInstanceInformation/by-id"} {
		req := reqs[name]
		b.Run(name, func(b *testing.B) {
			b.SetParallelism(16)
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := req.send(b); err != nil {
						b.Errorf("%s: %v", name, err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "ops/s")
		})
	}
}
