package cloudsim_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// benchFleets are the memory-only emulators, one per fleet size, shared by the benchmarks of a
// run (building 100,000 instances once, not once per b.N). They keep no files.
var benchFleets sync.Map

type benchFleet struct {
	srv   *cloudsim.Server
	c     clients
	ids   []string
	creds aws.Credentials // the tenant's temporary credentials, for requests signed by hand
}

// fleet is the shared memory-only fleet of n instances.
func fleet(b *testing.B, n int) *benchFleet {
	b.Helper()
	if f, ok := benchFleets.Load(n); ok {
		return f.(*benchFleet)
	}
	f := newFleet(b, n, "")
	benchFleets.Store(n, f)
	return f
}

// persistedFleet is a fleet of n instances whose state is kept in the benchmark's temporary
// directory (the mutation log written on every change, as patchd runs it); it is closed and the
// directory removed when the benchmark ends.
func persistedFleet(b *testing.B, n int) *benchFleet {
	b.Helper()
	f := newFleet(b, n, b.TempDir())
	b.Cleanup(func() { require.NoError(b, f.srv.Close()) })
	return f
}

func newFleet(b *testing.B, n int, stateDir string) *benchFleet {
	b.Helper()
	start := time.Now()
	cfg := cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(n)}, StateDir: stateDir,
		Timing: cloudsim.Timing{Snapshot: time.Minute, Command: time.Minute}}
	srv, err := cloudsim.New(cfg)
	require.NoError(b, err)
	srv.Start()
	b.Logf("built a fleet of %d instances (state dir %q) in %s", n, cfg.StateDir, time.Since(start).Round(time.Millisecond))
	tenant := tenantConfig(b, srv, acmeID)
	creds, err := tenant.Credentials.Retrieve(b.Context())
	require.NoError(b, err)
	return &benchFleet{srv: srv, c: newClients(tenant), ids: srv.InstanceIDs(acmeID, region), creds: creds}
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
	return signWith(b, f, f.creds, service, header, body)
}

func signWith(b *testing.B, f *benchFleet, creds aws.Credentials, service string, header http.Header, body string) *signed {
	b.Helper()
	return signAt(b, f.srv.URL(), creds, service, header, body)
}

// signAt signs a request to the emulator at endpoint.
func signAt(b *testing.B, endpoint string, creds aws.Credentials, service string, header http.Header, body string) *signed {
	b.Helper()
	req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, endpoint+"/", strings.NewReader(body))
	require.NoError(b, err)
	maps.Copy(req.Header, header)
	sum := sha256.Sum256([]byte(body))
	require.NoError(b, v4.NewSigner().SignHTTP(b.Context(), creds, req, hex.EncodeToString(sum[:]), service, region, time.Now()))
	return &signed{url: endpoint + "/", header: req.Header, body: []byte(body), client: benchHTTP}
}

func (s *signed) send(b *testing.B) error {
	_, err := s.do(b, false)
	return err
}

// do sends the request; with keep it returns the response body.
func (s *signed) do(b *testing.B, keep bool) ([]byte, error) {
	req, err := http.NewRequestWithContext(b.Context(), http.MethodPost, s.url, bytes.NewReader(s.body))
	if err != nil {
		return nil, err
	}
	req.Header = s.header.Clone()
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body []byte
	if keep || resp.StatusCode != http.StatusOK {
		body, err = io.ReadAll(resp.Body)
	} else {
		_, err = io.Copy(io.Discard, resp.Body)
	}
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %d: %s", resp.StatusCode, body)
	}
	return body, nil
}

func formHeader() http.Header {
	return http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=utf-8"}}
}

func jsonHeader(op string) http.Header {
	return http.Header{"Content-Type": {"application/x-amz-json-1.1"}, "X-Amz-Target": {"AmazonSSM." + op}}
}

// BenchmarkServerThroughput measures the emulator alone: requests signed with the SDK's SigV4
// signer before the clock starts (cloudsim does not check clock skew, so a signed request can be
// replayed) sent by a plain net/http client, 32 at once, against 100,000 instances; one
// sub-benchmark per operation Patchwave calls. BenchmarkOperations pays for the SDK clients'
// own work on the same 2 cores; this one shows what the server can take.
//
// Each sub-benchmark reports ops/s (wall) and ops/cpu-s: calls per second of the process's CPU
// time (getrusage, user + system, over the timed calls only), which is what "on 2 cores" means
// when neighbours take the cores. The process is client and server at once, so the CPU is both
// sides' (the client's net/http is about a third of it). A page reports items/s as well.
func BenchmarkServerThroughput(b *testing.B) { serverThroughput(b, fleet(b, 100_000)) }

// BenchmarkServerThroughputPersisted is BenchmarkServerThroughput against 10,000 instances kept
// in a state directory (b.TempDir: removed at the end): every change appends to the mutation
// log, as under patchd.
func BenchmarkServerThroughputPersisted(b *testing.B) {
	serverThroughput(b, persistedFleet(b, 10_000))
}

// throughputOp is one operation of serverThroughput. prepare runs before the clock starts and
// returns the request of call i (0..n-1): most calls replay one request, the ones that consume
// what they name (DeleteSnapshot, CancelCommand) or should spread over the fleet (CreateTags,
// DeleteTags) get one request per call. items is what one call returns (a page's size).
type throughputOp struct {
	name    string
	items   int
	prepare func(b *testing.B, n int) func(i int) *signed
}

func serverThroughput(b *testing.B, f *benchFleet) {
	id := f.ids[len(f.ids)/2]
	for i := len(f.ids) / 2; i < len(f.ids); i++ { // an instance with an SSM agent
		if info, ok := f.srv.Instance(f.ids[i]); ok && info.Agent {
			id = f.ids[i]
			break
		}
	}
	spread := func(i int) string { return f.ids[(len(f.ids)/3+i*7919)%len(f.ids)] }
	ec2Req := func(b *testing.B, body string) *signed {
		return signedRequest(b, f, "ec2", formHeader(), "Version=2016-11-15&Action="+body)
	}
	ssmReq := func(b *testing.B, op, body string) *signed { return signedRequest(b, f, "ssm", jsonHeader(op), body) }
	replay := func(req func(b *testing.B) *signed) func(b *testing.B, n int) func(int) *signed {
		return func(b *testing.B, _ int) func(int) *signed {
			r := req(b)
			return func(int) *signed { return r }
		}
	}
	perCall := func(req func(b *testing.B, i int) *signed) func(b *testing.B, n int) func(int) *signed {
		return func(b *testing.B, n int) func(int) *signed {
			reqs := make([]*signed, n)
			for i := range reqs {
				reqs[i] = req(b, i)
			}
			return func(i int) *signed { return reqs[i] }
		}
	}
	// Resources the reads name, created once.
	snapID := firstMatch(b, mustDo(b, ec2Req(b, "CreateSnapshots&InstanceSpecification.InstanceId="+id)), snapIDRe)
	taskID := firstMatch(b, mustDo(b, ec2Req(b, "CreateReplaceRootVolumeTask&InstanceId="+id)), taskIDRe)
	cmdID := firstMatch(b, mustDo(b, ssmReq(b, "SendCommand",
		`{"DocumentName":"AWS-RunPatchBaseline","InstanceIds":["`+id+`"],"Parameters":{"Operation":["Scan"]}}`)), cmdIDRe)
	acct, ok := f.srv.Account(acmeID)
	require.True(b, ok)
	providerKey, providerSecret := f.srv.ProviderCredentials()
	provider := aws.Credentials{AccessKeyID: providerKey, SecretAccessKey: providerSecret}

	ops := []throughputOp{
		{name: "DescribeInstances/by-id", prepare: replay(func(b *testing.B) *signed {
			return ec2Req(b, "DescribeInstances&InstanceId.1="+id)
		})},
		{name: "DescribeInstances/tag-page-50", items: 50, prepare: replay(func(b *testing.B) *signed {
			return ec2Req(b, "DescribeInstances&MaxResults=50&Filter.1.Name=tag%3APatchWave&Filter.1.Value.1=2")
		})},
		{name: "DescribeInstanceStatus/by-id", prepare: replay(func(b *testing.B) *signed {
			return ec2Req(b, "DescribeInstanceStatus&IncludeAllInstances=true&InstanceId.1="+id)
		})},
		{name: "CreateSnapshots", prepare: replay(func(b *testing.B) *signed {
			return ec2Req(b, "CreateSnapshots&InstanceSpecification.InstanceId="+id)
		})},
		{name: "DescribeSnapshots/by-id", prepare: replay(func(b *testing.B) *signed {
			return ec2Req(b, "DescribeSnapshots&Owner.1=self&SnapshotId.1="+snapID)
		})},
		{name: "DeleteSnapshot", prepare: func(b *testing.B, n int) func(int) *signed {
			// n snapshots to delete, made by CreateSnapshots calls on spread instances.
			var snaps []string
			for i := 0; len(snaps) < n; i++ {
				body := mustDo(b, ec2Req(b, "CreateSnapshots&InstanceSpecification.InstanceId="+spread(i)))
				for _, m := range snapIDRe.FindAllSubmatch(body, -1) {
					snaps = append(snaps, string(m[1]))
				}
			}
			return perCall(func(b *testing.B, i int) *signed { return ec2Req(b, "DeleteSnapshot&SnapshotId="+snaps[i]) })(b, n)
		}},
		{name: "CreateTags", prepare: perCall(func(b *testing.B, i int) *signed {
			return ec2Req(b, "CreateTags&ResourceId.1="+spread(i)+"&Tag.1.Key=bench&Tag.1.Value="+strconv.Itoa(i%7))
		})},
		{name: "DeleteTags", prepare: perCall(func(b *testing.B, i int) *signed {
			return ec2Req(b, "DeleteTags&ResourceId.1="+spread(i)+"&Tag.1.Key=bench")
		})},
		{name: "CreateReplaceRootVolumeTask", prepare: replay(func(b *testing.B) *signed {
			return ec2Req(b, "CreateReplaceRootVolumeTask&InstanceId="+id)
		})},
		{name: "DescribeReplaceRootVolumeTasks/by-id", prepare: replay(func(b *testing.B) *signed {
			return ec2Req(b, "DescribeReplaceRootVolumeTasks&ReplaceRootVolumeTaskId.1="+taskID)
		})},
		{name: "RebootInstances", prepare: replay(func(b *testing.B) *signed {
			return ec2Req(b, "RebootInstances&InstanceId.1="+id)
		})},
		{name: "SendCommand", prepare: replay(func(b *testing.B) *signed {
			return ssmReq(b, "SendCommand", `{"DocumentName":"AWS-RunPatchBaseline","InstanceIds":["`+id+`"],"Parameters":{"Operation":["Scan"]}}`)
		})},
		{name: "ListCommandInvocations/by-command", prepare: replay(func(b *testing.B) *signed {
			return ssmReq(b, "ListCommandInvocations", `{"CommandId":"`+cmdID+`","Details":true}`)
		})},
		{name: "GetCommandInvocation", prepare: replay(func(b *testing.B) *signed {
			return ssmReq(b, "GetCommandInvocation", `{"CommandId":"`+cmdID+`","InstanceId":"`+id+`"}`)
		})},
		{name: "CancelCommand", prepare: func(b *testing.B, n int) func(int) *signed {
			cmds := make([]string, n)
			for i := range cmds {
				cmds[i] = firstMatch(b, mustDo(b, ssmReq(b, "SendCommand",
					`{"DocumentName":"AWS-RunPatchBaseline","InstanceIds":["`+spread(i)+`"],"Parameters":{"Operation":["Scan"]}}`)), cmdIDRe)
			}
			return perCall(func(b *testing.B, i int) *signed {
				return ssmReq(b, "CancelCommand", `{"CommandId":"`+cmds[i]+`"}`)
			})(b, n)
		}},
		{name: "DescribeInstanceInformation/by-id", prepare: replay(func(b *testing.B) *signed {
			return ssmReq(b, "DescribeInstanceInformation", `{"Filters":[{"Key":"InstanceIds","Values":["`+id+`"]}]}`)
		})},
		{name: "DescribeInstancePatches", prepare: replay(func(b *testing.B) *signed {
			return ssmReq(b, "DescribeInstancePatches", `{"InstanceId":"`+id+`"}`)
		})},
		{name: "DescribeInstancePatchStates", prepare: replay(func(b *testing.B) *signed {
			return ssmReq(b, "DescribeInstancePatchStates", `{"InstanceIds":["`+id+`"]}`)
		})},
		{name: "AssumeRole", prepare: replay(func(b *testing.B) *signed {
			return signWith(b, f, provider, "sts", formHeader(), "Action=AssumeRole&Version=2011-06-15&RoleSessionName=bench&RoleArn="+
				url.QueryEscape(acct.RoleARN)+"&ExternalId="+url.QueryEscape(acct.ExternalID))
		})},
		{name: "GetCallerIdentity", prepare: replay(func(b *testing.B) *signed {
			return signedRequest(b, f, "sts", formHeader(), "Action=GetCallerIdentity&Version=2011-06-15")
		})},
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) {
			req := op.prepare(b, b.N)
			b.SetParallelism(16) // 16 x GOMAXPROCS callers
			var next atomic.Int64
			cpu0 := processCPU()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := req(int(next.Add(1) - 1)).send(b); err != nil {
						b.Errorf("%s: %v", op.name, err)
						return
					}
				}
			})
			wall, cpu := time.Since(start).Seconds(), (processCPU() - cpu0).Seconds()
			b.ReportMetric(float64(b.N)/wall, "ops/s")
			b.ReportMetric(float64(b.N)/cpu, "ops/cpu-s")
			if op.items > 0 {
				b.ReportMetric(float64(b.N*op.items)/wall, "items/s")
				b.ReportMetric(float64(b.N*op.items)/cpu, "items/cpu-s")
			}
		})
	}
}

var (
	snapIDRe = regexp.MustCompile(`<snapshotId>(snap-[0-9a-f]+)</snapshotId>`)
	taskIDRe = regexp.MustCompile(`<replaceRootVolumeTaskId>(replacevol-[0-9a-f]+)</replaceRootVolumeTaskId>`)
	cmdIDRe  = regexp.MustCompile(`"CommandId":"([0-9a-f-]+)"`)
)

func mustDo(b *testing.B, s *signed) []byte {
	b.Helper()
	body, err := s.do(b, true)
	require.NoError(b, err)
	return body
}

func firstMatch(b *testing.B, body []byte, re *regexp.Regexp) string {
	b.Helper()
	m := re.FindSubmatch(body)
	require.NotNil(b, m, "%s not in %s", re, body)
	return string(m[1])
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
