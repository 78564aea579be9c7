package cloudsim_test

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/sts"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/services/cloudsim"
)

// The server's own CPU per call (BenchmarkServerCPU): the emulator runs in a child process
// (this test binary started again with cpuChildEnv set, see TestMain), as patchbench's
// -cloudsim-process runs it, so that its CPU is read apart from the callers' (from
// /proc/<pid>/task/*/schedstat, in nanoseconds).

// cpuChildEnv carries the child's configuration (JSON cpuChildConfig).
const cpuChildEnv = "CLOUDSIM_BENCH_SERVER_CHILD"

type cpuChildConfig struct {
	Instances  int    `json:"instances"`
	StateDir   string `json:"state_dir"`
	Profile    string `json:"profile"`    // the child's CPU profile, written when it ends ("": none)
	MemProfile string `json:"memprofile"` // the child's allocation profile, likewise
}

// serverProfile is BenchmarkServerCPU's -server-cpuprofile: the server's CPU profile alone.
var (
	serverProfile    = flag.String("server-cpuprofile", "", "BenchmarkServerCPU: write the emulator's (the child's) CPU profile to this file")
	serverMemProfile = flag.String("server-memprofile", "", "BenchmarkServerCPU: write the emulator's allocation profile to this file")
)

// cpuChildHello is the child's first line: how to reach it and what it holds.
type cpuChildHello struct {
	URL        string   `json:"url"`
	Key        string   `json:"key"`
	Secret     string   `json:"secret"`
	RoleARN    string   `json:"role_arn"`
	ExternalID string   `json:"external_id"`
	Agents     []string `json:"agents"` // the instances with an SSM agent, in the fleet's order
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(cpuChildEnv); spec != "" {
		if err := runCPUChild(spec); err != nil {
			fmt.Fprintln(os.Stderr, "cloudsim bench child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// runCPUChild serves a fleet until its standard input closes.
func runCPUChild(spec string) error {
	var c cpuChildConfig
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		return err
	}
	srv, err := cloudsim.New(cloudsim.Config{Accounts: []cloudsim.AccountConfig{acmeConfig(c.Instances)}, StateDir: c.StateDir,
		Timing: cloudsim.Timing{Snapshot: time.Minute, Command: time.Minute}})
	if err != nil {
		return err
	}
	if c.Profile != "" {
		f, err := os.Create(c.Profile)
		if err != nil {
			return err
		}
		defer func() { _ = f.Close() }()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if c.MemProfile != "" {
		runtime.MemProfileRate = 4096
		defer func() {
			if f, err := os.Create(c.MemProfile); err == nil {
				_ = pprof.Lookup("allocs").WriteTo(f, 0)
				_ = f.Close()
			}
		}()
	}
	srv.Start()
	acct, _ := srv.Account(acmeID)
	hello := cpuChildHello{URL: srv.URL(), RoleARN: acct.RoleARN, ExternalID: acct.ExternalID}
	hello.Key, hello.Secret = srv.ProviderCredentials()
	for _, id := range srv.InstanceIDs(acmeID, region) {
		if info, ok := srv.Instance(id); ok && info.Agent {
			hello.Agents = append(hello.Agents, id)
		}
	}
	out := json.NewEncoder(os.Stdout)
	err = out.Encode(hello)
	// Each line read is a request for the allocation counters; the end of the input ends the
	// child.
	for in := bufio.NewScanner(os.Stdin); err == nil && in.Scan(); {
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		err = out.Encode(cpuChildMem{Mallocs: ms.Mallocs, Bytes: ms.TotalAlloc})
	}
	if cerr := srv.Close(); err == nil {
		err = cerr
	}
	return err
}

// cpuChildMem are the child's allocation counters (runtime.MemStats) so far.
type cpuChildMem struct {
	Mallocs uint64 `json:"mallocs"`
	Bytes   uint64 `json:"bytes"`
}

// cpuChild is the running child, seen from the benchmark.
type cpuChild struct {
	cmd   *exec.Cmd
	stdin io.Writer
	out   *bufio.Reader
	hello cpuChildHello
	creds aws.Credentials // the tenant's, from AssumeRole
}

// mem asks the child for its allocation counters.
func (p *cpuChild) mem(b *testing.B) cpuChildMem {
	b.Helper()
	_, err := io.WriteString(p.stdin, "mem\n")
	require.NoError(b, err)
	line, err := p.out.ReadBytes('\n')
	require.NoError(b, err)
	var m cpuChildMem
	require.NoError(b, json.Unmarshal(line, &m))
	return m
}

func startCPUChild(b *testing.B, instances int) *cpuChild {
	b.Helper()
	self, err := os.Executable()
	require.NoError(b, err)
	spec, err := json.Marshal(cpuChildConfig{Instances: instances, StateDir: filepath.Join(b.TempDir(), "state"), Profile: *serverProfile,
		MemProfile: *serverMemProfile})
	require.NoError(b, err)
	cmd := exec.Command(self)
	cmd.Env = append(os.Environ(), cpuChildEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	require.NoError(b, err)
	stdout, err := cmd.StdoutPipe()
	require.NoError(b, err)
	require.NoError(b, cmd.Start())
	b.Cleanup(func() {
		_ = stdin.Close() // the child flushes its state and exits
		require.NoError(b, cmd.Wait())
	})
	p := &cpuChild{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout)}
	line, err := p.out.ReadBytes('\n')
	require.NoError(b, err, "the child's first line")
	require.NoError(b, json.Unmarshal(line, &p.hello))
	require.NotEmpty(b, p.hello.Agents)
	cfg := aws.Config{Region: region, BaseEndpoint: aws.String(p.hello.URL), Retryer: func() aws.Retryer { return aws.NopRetryer{} },
		Credentials: credentials.NewStaticCredentialsProvider(p.hello.Key, p.hello.Secret, "")}
	out, err := sts.NewFromConfig(cfg).AssumeRole(context.Background(), &sts.AssumeRoleInput{
		RoleArn: aws.String(p.hello.RoleARN), RoleSessionName: aws.String("bench"), ExternalId: aws.String(p.hello.ExternalID)})
	require.NoError(b, err)
	p.creds = aws.Credentials{AccessKeyID: *out.Credentials.AccessKeyId, SecretAccessKey: *out.Credentials.SecretAccessKey,
		SessionToken: *out.Credentials.SessionToken}
	return p
}

// cpu is the child's CPU time so far: the sum over its threads of the time they ran.
func (p *cpuChild) cpu(b *testing.B) time.Duration {
	b.Helper()
	dir := "/proc/" + strconv.Itoa(p.cmd.Process.Pid) + "/task"
	tasks, err := os.ReadDir(dir)
	require.NoError(b, err)
	var sum time.Duration
	for _, t := range tasks {
		raw, err := os.ReadFile(filepath.Join(dir, t.Name(), "schedstat"))
		if os.IsNotExist(err) {
			continue // a thread that just ended
		}
		require.NoError(b, err)
		ns, err := strconv.ParseInt(strings.Fields(string(raw))[0], 10, 64)
		require.NoError(b, err)
		sum += time.Duration(ns)
	}
	return sum
}

// sign signs a request to the child once (cloudsim does not check clock skew, so it can be
// replayed).
func (p *cpuChild) sign(b *testing.B, service string, header http.Header, body string) *signed {
	b.Helper()
	return signAt(b, p.hello.URL, p.creds, service, header, body)
}

// BenchmarkServerCPU measures the server's own CPU per call (server-us/op), for the calls of a
// wave as the AWS adapter makes them (libs/provider/awsfleet: one CreateSnapshots per instance
// with its description and five tags, SSM calls of 50 instances, DescribeSnapshots by 50 set
// tags) and for their mix in a 10,000-instance wave's proportions. The emulator runs in a
// child process with 20,000 instances and a state directory, as patchd runs it; 32 callers.
// The callers' CPU (net/http client, signing done beforehand) is not counted.
func BenchmarkServerCPU(b *testing.B) {
	p := startCPUChild(b, 20_000)
	agents := p.hello.Agents
	var spread atomic.Int64
	next := func() int { return int(spread.Add(7919)) }
	batch := func(start int) []string {
		ids := make([]string, 50)
		for i := range ids {
			ids[i] = agents[(start+i*101)%len(agents)]
		}
		return ids
	}
	ec2Req := func(b *testing.B, body string) *signed {
		return p.sign(b, "ec2", formHeader(), "Version=2016-11-15&Action="+body)
	}
	ssmReq := func(b *testing.B, op, body string) *signed { return p.sign(b, "ssm", jsonHeader(op), body) }
	snapshot := func(b *testing.B, i int, set string) *signed {
		id := agents[i%len(agents)]
		return ec2Req(b, "CreateSnapshots&InstanceSpecification.InstanceId="+id+"&InstanceSpecification.ExcludeBootVolume=false"+
			"&Description="+url.QueryEscape("patchwave pre-patch snapshot run=run-1 instance="+id)+
			"&TagSpecification.1.ResourceType=snapshot"+
			"&TagSpecification.1.Tag.1.Key=patchwave%3Atenant&TagSpecification.1.Tag.1.Value=acme"+
			"&TagSpecification.1.Tag.2.Key=patchwave%3Arun&TagSpecification.1.Tag.2.Value=run-1"+
			"&TagSpecification.1.Tag.3.Key=patchwave%3Ainstance&TagSpecification.1.Tag.3.Value="+id+
			"&TagSpecification.1.Tag.4.Key=patchwave%3Asnapshot-set&TagSpecification.1.Tag.4.Value="+set+
			"&TagSpecification.1.Tag.5.Key=patchwave%3Aattempt&TagSpecification.1.Tag.5.Value=1")
	}
	// Resources the reads name, made once: 50 snapshot sets and a command on 50 instances.
	var sets []string
	for i := range 50 {
		sets = append(sets, "named-"+strconv.Itoa(i))
		mustDo(b, snapshot(b, i*7919, sets[i]))
	}
	cmdID := firstMatch(b, mustDo(b, sendCommand(b, ssmReq, batch(0))), cmdIDRe)

	ops := []struct {
		name    string
		weight  int // calls per 1,000 of a 10,000-instance wave (patchbench's cloud calls)
		prepare func(b *testing.B, n int) func(i int) *signed
	}{
		{"CreateSnapshots", 838, func(b *testing.B, n int) func(int) *signed {
			reqs := make([]*signed, n)
			for i := range reqs {
				n := next()
				reqs[i] = snapshot(b, n, "set-"+strconv.Itoa(n))
			}
			return func(i int) *signed { return reqs[i] }
		}},
		{"DescribeSnapshots/50-sets", 38, replayed(func(b *testing.B) *signed {
			form := "DescribeSnapshots&Owner.1=self&MaxResults=1000&Filter.1.Name=tag%3Apatchwave%3Asnapshot-set"
			for i, s := range sets {
				form += "&Filter.1.Value." + strconv.Itoa(i+1) + "=" + s
			}
			return ec2Req(b, form+"&Filter.2.Name=tag%3Apatchwave%3Atenant&Filter.2.Value.1=acme")
		})},
		{"SendCommand/50", 21, func(b *testing.B, n int) func(int) *signed {
			reqs := make([]*signed, min(n, 200))
			for i := range reqs {
				reqs[i] = sendCommand(b, ssmReq, batch(next()))
			}
			return func(i int) *signed { return reqs[i%len(reqs)] }
		}},
		{"ListCommandInvocations/50", 23, replayed(func(b *testing.B) *signed {
			return ssmReq(b, "ListCommandInvocations", `{"CommandId":"`+cmdID+`","Details":true,"MaxResults":50}`)
		})},
		{"DescribeInstancePatchStates/50", 19, replayed(func(b *testing.B) *signed {
			ids, _ := json.Marshal(batch(17))
			return ssmReq(b, "DescribeInstancePatchStates", `{"InstanceIds":`+string(ids)+`}`)
		})},
		{"DescribeInstanceInformation/50", 17, replayed(func(b *testing.B) *signed {
			ids, _ := json.Marshal(batch(29))
			return ssmReq(b, "DescribeInstanceInformation", `{"Filters":[{"Key":"InstanceIds","Values":`+string(ids)+`}]}`)
		})},
		{"DescribeInstances/50", 14, replayed(func(b *testing.B) *signed {
			form := "DescribeInstances"
			for i, id := range batch(31) {
				form += "&InstanceId." + strconv.Itoa(i+1) + "=" + id
			}
			return ec2Req(b, form)
		})},
		{"DescribeInstanceStatus/50", 10, replayed(func(b *testing.B) *signed {
			form := "DescribeInstanceStatus&IncludeAllInstances=true"
			for i, id := range batch(37) {
				form += "&InstanceId." + strconv.Itoa(i+1) + "=" + id
			}
			return ec2Req(b, form)
		})},
		{"CreateTags", 13, func(b *testing.B, n int) func(int) *signed {
			reqs := make([]*signed, n)
			for i := range reqs {
				reqs[i] = ec2Req(b, "CreateTags&ResourceId.1="+agents[next()%len(agents)]+"&Tag.1.Key=patchwave%3Astate&Tag.1.Value="+strconv.Itoa(i%7))
			}
			return func(i int) *signed { return reqs[i] }
		}},
	}
	measure := func(b *testing.B, req func(i int) *signed) {
		b.SetParallelism(16) // 16 x GOMAXPROCS callers
		var i atomic.Int64
		mem0 := p.mem(b)
		cpu0 := p.cpu(b)
		b.ResetTimer()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if err := req(int(i.Add(1) - 1)).send(b); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.StopTimer()
		cpu := p.cpu(b) - cpu0
		mem := p.mem(b)
		n := float64(b.N)
		b.ReportMetric(float64(cpu.Nanoseconds())/1e3/n, "server-us/op")
		b.ReportMetric(float64(mem.Mallocs-mem0.Mallocs)/n, "server-allocs/op")
		b.ReportMetric(float64(mem.Bytes-mem0.Bytes)/n, "server-B/op")
	}
	for _, op := range ops {
		b.Run(op.name, func(b *testing.B) { measure(b, op.prepare(b, b.N)) })
	}
	// The wave's mix: each call i is the operation that weighted round robin gives it.
	b.Run("wave-mix", func(b *testing.B) {
		total := 0
		for _, op := range ops {
			total += op.weight
		}
		order := make([]int, 0, total) // ops' indices, spread by their weights
		for range total {
			best, bestAt := 0, 2.0
			for j, op := range ops {
				// the op whose next turn (in units of the cycle) comes first
				at := (float64(countOf(order, j)) + 0.5) / float64(op.weight)
				if at < bestAt {
					best, bestAt = j, at
				}
			}
			order = append(order, best)
		}
		counts := make([]int, len(ops))
		for i := range b.N {
			counts[order[i%total]]++
		}
		reqs := make([]func(int) *signed, len(ops))
		for j, op := range ops {
			reqs[j] = op.prepare(b, max(counts[j], 1))
		}
		seen := make([]atomic.Int64, len(ops))
		measure(b, func(i int) *signed {
			j := order[i%total]
			return reqs[j](int(seen[j].Add(1) - 1))
		})
	})
}

func countOf(order []int, j int) int {
	n := 0
	for _, k := range order {
		if k == j {
			n++
		}
	}
	return n
}

func replayed(req func(b *testing.B) *signed) func(b *testing.B, n int) func(int) *signed {
	return func(b *testing.B, _ int) func(int) *signed {
		r := req(b)
		return func(int) *signed { return r }
	}
}

func sendCommand(b *testing.B, ssmReq func(b *testing.B, op, body string) *signed, ids []string) *signed {
	list, err := json.Marshal(ids)
	require.NoError(b, err)
	return ssmReq(b, "SendCommand", `{"DocumentName":"AWS-RunPatchBaseline","InstanceIds":`+string(list)+
		`,"Parameters":{"Operation":["Scan"]},"TimeoutSeconds":3600,"Comment":"patchwave scan run-1"}`)
}
