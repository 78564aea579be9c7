package awsfleet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	ssmtypes "github.com/aws/aws-sdk-go-v2/service/ssm/types"
	"github.com/aws/smithy-go"
	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/provider"
	"github.com/patchwave/patchwave/libs/ratelimit"
)

func TestConfigValidate(t *testing.T) {
	accs := provider.StaticAccounts{}
	tests := []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{name: "the defaults with accounts are valid", cfg: Config{Accounts: accs}},
		{
			name:    "accounts are required",
			cfg:     Config{},
			wantErr: []string{"Accounts is required"},
		},
		{
			name: "every bad field is named",
			cfg: Config{
				Accounts:     accs,
				Endpoint:     "localhost:4566",
				AccessKeyID:  "AKIA",
				Retry:        RetryConfig{MaxAttempts: -1},
				Limits:       Limits{EC2: ratelimit.Limit{Rate: 0, Burst: 1}, SSM: ratelimit.Limit{Rate: 1, Burst: 1}, S3: ratelimit.Limit{Rate: 1, Burst: 1}, STS: ratelimit.Limit{Rate: 1, Burst: 1}},
				InstallLists: InstallListConfig{Bucket: "Bad_Bucket"},
				Concurrency:  -2,
			},
			wantErr: []string{
				"Endpoint must be an http(s) URL",
				"AccessKeyID/SecretAccessKey must be given both or neither",
				"Retry.MaxAttempts must be >= 1",
				"Limits.EC2 rate limit: Rate must be > 0",
				"InstallLists.Bucket must make an S3 bucket name",
				"Concurrency must be >= 1",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.setDefaults()
			err := cfg.Validate()
			if len(tt.wantErr) == 0 {
				require.NoError(t, err)
				return
			}
			for _, w := range tt.wantErr {
				require.ErrorContains(t, err, w)
			}
		})
	}
}

func TestConfigLogValueMasksSecrets(t *testing.T) {
	cfg := Config{AccessKeyID: "AKIAEXAMPLE", SecretAccessKey: "s3cret", SessionToken: "tok"}
	v := cfg.LogValue().String()
	require.Contains(t, v, "AKIAEXAMPLE")
	require.NotContains(t, v, "s3cret")
	require.NotContains(t, v, "tok ")
}

func TestOSFamily(t *testing.T) {
	tests := []struct{ name, version, want string }{
		{"Amazon Linux", "2023", "amazon-linux-2023"},
		{"Amazon Linux", "2", "amazon-linux-2"},
		{"Ubuntu", "22.04", "ubuntu-22.04"},
		{"Ubuntu", "24.04.1", "ubuntu-24.04"},
		{"Microsoft Windows Server 2022 Datacenter", "10.0.20348", "windows-server-2022"},
		{"Microsoft Windows Server 2019 Datacenter", "10.0.17763", "windows-server-2019"},
		{"Red Hat Enterprise Linux", "9.2", "rhel-9"},
		{"Red Hat Enterprise Linux Server", "7.9", "rhel-7"},
		{"CentOS Linux", "7.9.2009", "centos-7"},
		{"Rocky Linux", "9.3", "rocky-9"},
		{"AlmaLinux", "9.3", "almalinux-9"},
		{"Debian GNU/Linux", "12", "debian-12"},
		{"SLES", "15.5", "sles-15"},
		{"Oracle Linux Server", "8.9", "oracle-linux-8"},
		{"FreeBSD", "14.0", "freebsd-14"},
		{"", "1", ""},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %s is %s", tt.name, tt.version, tt.want), func(t *testing.T) {
			require.Equal(t, tt.want, OSFamily(tt.name, tt.version))
		})
	}
}

func apiErr(code string) error {
	return &smithy.GenericAPIError{Code: code, Message: "the message of " + code}
}

func TestWrapErrMapsAWSCodes(t *testing.T) {
	tests := []struct {
		code      string
		kind      error
		retryable bool
	}{
		{"RequestLimitExceeded", provider.ErrThrottled, true},
		{"ThrottlingException", provider.ErrThrottled, true},
		{"UnauthorizedOperation", provider.ErrAccessDenied, false},
		{"AccessDeniedException", provider.ErrAccessDenied, false},
		{"InvalidParameterValue", provider.ErrInvalidArgument, false},
		{"ValidationException", provider.ErrInvalidArgument, false},
		{"InvalidInstanceID.Malformed", provider.ErrInvalidArgument, false},
		{"InvalidInstanceID.NotFound", provider.ErrNotFound, false},
		{"InvalidSnapshot.NotFound", provider.ErrNotFound, false},
		{"InvalidInstanceId", provider.ErrNotFound, false},
		{"IncorrectInstanceState", provider.ErrInstanceNotRunning, false},
		{"InternalError", nil, true},
		{"SomethingNew", nil, false},
	}
	for _, tt := range tests {
		t.Run(tt.code+" maps to its sentinel", func(t *testing.T) {
			err := wrapErr("ec2 DescribeInstances", "111111111111", apiErr(tt.code))
			if tt.kind != nil {
				require.ErrorIs(t, err, tt.kind)
			}
			require.Equal(t, tt.retryable, provider.IsRetryable(err))
			require.ErrorContains(t, err, "ec2 DescribeInstances in account 111111111111")
			require.ErrorContains(t, err, tt.code+": the message of "+tt.code)
		})
	}
}

func TestWrapErrOfARoleThatCannotBeAssumedIsAccessDenied(t *testing.T) {
	role := "arn:aws:iam::111111111111:role/patchwave"
	for _, code := range []string{"AccessDenied", "InvalidParameterValue", "NoSuchEntity"} {
		t.Run(code, func(t *testing.T) {
			err := wrapErr("ssm SendCommand", "111111111111", fmt.Errorf("sign: %w", &assumeRoleError{role: role, account: "111111111111", err: apiErr(code)}))
			require.ErrorIs(t, err, provider.ErrAccessDenied)
			require.False(t, provider.IsRetryable(err))
			require.ErrorContains(t, err, "ssm SendCommand in account 111111111111")
			require.ErrorContains(t, err, "assume role "+role)
		})
	}
}

func TestWrapErrKeepsCancellationAndMapsALimiterDeadlineToThrottled(t *testing.T) {
	err := wrapErr("ec2 DescribeInstances", "1", fmt.Errorf("op: %w", errors.Join(ratelimit.ErrDeadline)))
	require.ErrorIs(t, err, provider.ErrThrottled)
	require.True(t, provider.IsRetryable(err))
	err = wrapErr("ec2 DescribeInstances", "1", fmt.Errorf("op: %w", errors.ErrUnsupported))
	require.NotErrorIs(t, err, provider.ErrThrottled)
}

func TestInstallListYAMLListsEachPatchOnceSorted(t *testing.T) {
	got := string(InstallListYAML("bl-2026.11", []string{"openssl.x86_64", "KB5034441", `we"ird`, "KB5034441"}))
	require.Equal(t, "# Patchwave install list of baseline bl-2026.11\npatches:\n"+
		"  - id: \"KB5034441\"\n  - id: \"openssl.x86_64\"\n  - id: \"we\\\"ird\"\n", got)
	a := InstallListKey("lists/", "bl/2026 11", []string{"b", "a"})
	b := InstallListKey("lists/", "bl/2026 11", []string{"a", "b"})
	require.Equal(t, a, b, "the key depends on the set, not the order")
	require.True(t, strings.HasPrefix(a, "lists/bl_2026_11/"), a)
	require.NotEqual(t, a, InstallListKey("lists/", "bl/2026 11", []string{"a"}))
}

func snap(id, attempt, volume string, start time.Time, state ec2types.SnapshotState, progress string, root bool) ec2types.Snapshot {
	tags := []ec2types.Tag{
		{Key: aws.String(TagAttempt), Value: aws.String(attempt)},
		{Key: aws.String(TagRun), Value: aws.String("run-1")},
		{Key: aws.String(TagInstance), Value: aws.String("i-1")},
		{Key: aws.String("team"), Value: aws.String("blue")},
	}
	if root {
		tags = append(tags, ec2types.Tag{Key: aws.String(TagRoot), Value: aws.String("true")})
	}
	return ec2types.Snapshot{SnapshotId: aws.String(id), VolumeId: aws.String(volume), StartTime: aws.Time(start),
		State: state, Progress: aws.String(progress), Tags: tags, StateMessage: aws.String("disk on fire")}
}

func TestPickAttemptKeepsTheFirstStartedAttempt(t *testing.T) {
	t0 := time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
	first := []ec2types.Snapshot{snap("snap-b1", "bbbb", "vol-1", t0, "pending", "0%", false), snap("snap-b2", "bbbb", "vol-2", t0.Add(time.Millisecond), "pending", "0%", false)}
	second := []ec2types.Snapshot{snap("snap-a1", "aaaa", "vol-1", t0.Add(time.Second), "pending", "0%", false)}
	keep, drop := pickAttempt(append(append([]ec2types.Snapshot{}, second...), first...))
	require.ElementsMatch(t, first, keep)
	require.ElementsMatch(t, second, drop)

	tie := []ec2types.Snapshot{snap("snap-x", "bbbb", "vol-1", t0, "pending", "0%", false), snap("snap-y", "aaaa", "vol-1", t0, "pending", "0%", false)}
	keep, drop = pickAttempt(tie)
	require.Equal(t, "snap-y", *keep[0].SnapshotId, "a tie goes to the smaller attempt id")
	require.Equal(t, "snap-x", *drop[0].SnapshotId)

	keep, drop = pickAttempt(first)
	require.Len(t, keep, 2)
	require.Empty(t, drop)
}

func TestToSnapshotAggregatesVolumeStates(t *testing.T) {
	t0 := time.Date(2026, 11, 10, 9, 0, 0, 0, time.UTC)
	tg := provider.Target{Tenant: "acme", Account: "111111111111", Region: "eu-central-1"}
	tests := []struct {
		name     string
		snaps    []ec2types.Snapshot
		state    provider.SnapshotState
		progress int
	}{
		{
			name:  "all completed is completed",
			snaps: []ec2types.Snapshot{snap("snap-2", "a", "vol-b", t0, "completed", "100%", false), snap("snap-1", "a", "vol-a", t0, "completed", "100%", true)},
			state: provider.SnapshotCompleted, progress: 100,
		},
		{
			name:  "one pending is pending, at the least progress",
			snaps: []ec2types.Snapshot{snap("snap-2", "a", "vol-b", t0, "pending", "40%", false), snap("snap-1", "a", "vol-a", t0, "completed", "100%", true)},
			state: provider.SnapshotPending, progress: 40,
		},
		{
			name:  "one in error is error even with another pending",
			snaps: []ec2types.Snapshot{snap("snap-2", "a", "vol-b", t0, "error", "10%", false), snap("snap-1", "a", "vol-a", t0, "pending", "60%", true)},
			state: provider.SnapshotError, progress: 10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := toSnapshot(tg, "snapset-1", tt.snaps)
			require.Equal(t, tt.state, s.State)
			require.Equal(t, tt.progress, s.Progress)
			require.Equal(t, "snap-1", s.RootSnapshotID)
			require.Equal(t, []string{"snap-1", "snap-2"}, s.VolumeSnapshotIDs, "root first")
			require.Equal(t, map[string]string{"team": "blue"}, s.Tags)
			require.Equal(t, "run-1", s.RunID)
			require.Equal(t, "i-1", s.InstanceID)
			if tt.state == provider.SnapshotError {
				require.Contains(t, s.Error, "snap-2: disk on fire")
			}
		})
	}
}

func TestToInstallationMapsInvocationStatuses(t *testing.T) {
	tg := provider.Target{Tenant: "acme", Account: "111111111111", Region: "eu-central-1"}
	tests := []struct {
		status string
		want   provider.InstallState
	}{
		{"Pending", provider.InstallInProgress},
		{"InProgress", provider.InstallInProgress},
		{"Delayed", provider.InstallInProgress},
		{"Cancelling", provider.InstallInProgress},
		{"Success", provider.InstallSucceeded},
		{"Failed", provider.InstallFailed},
		{"Undeliverable", provider.InstallFailed},
		{"TimedOut", provider.InstallTimedOut},
		{"Cancelled", provider.InstallCancelled},
	}
	for _, tt := range tests {
		t.Run(tt.status+" is "+string(tt.want), func(t *testing.T) {
			in := toInstallation(tg, ssmtypes.CommandInvocation{
				CommandId: aws.String("cmd-1"), InstanceId: aws.String("i-1"), Comment: aws.String("patchwave run=run-7"),
				Status: ssmtypes.CommandInvocationStatus(tt.status), StatusDetails: aws.String(tt.status),
			})
			require.Equal(t, tt.want, in.State)
			require.Equal(t, "cmd-1/i-1", in.ID)
			require.Equal(t, "run-7", in.RunID)
		})
	}
}

func TestToHealth(t *testing.T) {
	status := func(state ec2types.InstanceStateName, inst, sys ec2types.SummaryStatus) ec2types.InstanceStatus {
		return ec2types.InstanceStatus{
			InstanceState:  &ec2types.InstanceState{Name: state},
			InstanceStatus: &ec2types.InstanceStatusSummary{Status: inst},
			SystemStatus:   &ec2types.InstanceStatusSummary{Status: sys},
		}
	}
	online := ssmtypes.InstanceInformation{InstanceId: aws.String("i-1"), PingStatus: ssmtypes.PingStatusOnline}
	lost := ssmtypes.InstanceInformation{InstanceId: aws.String("i-1"), PingStatus: ssmtypes.PingStatusConnectionLost}
	tests := []struct {
		name    string
		status  ec2types.InstanceStatus
		info    ssmtypes.InstanceInformation
		healthy bool
		init    bool
		detail  string
	}{
		{"running with checks ok and agent online is healthy", status("running", "ok", "ok"), online, true, false, "agent online"},
		{"a stopped instance is not healthy", status("stopped", "not-applicable", "not-applicable"), online, false, false, "instance is stopped"},
		{"an impaired instance is not healthy", status("running", "impaired", "ok"), online, false, false, "instance status impaired"},
		{"an instance without agent is not healthy", status("running", "ok", "ok"), ssmtypes.InstanceInformation{}, false, false, "agent none"},
		{"checks initializing after a reboot is initializing", status("running", "initializing", "ok"), lost, false, true, "initializing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := toHealth(tt.status, tt.info)
			require.Equal(t, tt.healthy, h.Healthy)
			require.Equal(t, tt.init, h.Initializing)
			require.Contains(t, h.Detail, tt.detail)
		})
	}
}

func TestHTTPClientBoundsEachAttemptWithTheTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow-body" {
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
		}
		if r.URL.Path != "/fast" {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		_, _ = w.Write([]byte("ok"))
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	c := NewHTTPClient(HTTPConfig{Timeout: 100 * time.Millisecond})
	get := func(path string) (*http.Response, error) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, srv.URL+path, nil)
		require.NoError(t, err)
		return c.Do(req)
	}

	t.Run("an answer within the timeout is read whole", func(t *testing.T) {
		resp, err := get("/fast")
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		require.Equal(t, "ok", string(body))
	})
	t.Run("headers later than the timeout fail the attempt as a deadline", func(t *testing.T) {
		resp, err := get("/slow-headers")
		if resp != nil {
			_ = resp.Body.Close()
		}
		require.ErrorIs(t, err, context.DeadlineExceeded)
	})
	t.Run("a body later than the timeout fails its read as a deadline", func(t *testing.T) {
		resp, err := get("/slow-body")
		require.NoError(t, err)
		_, err = io.ReadAll(resp.Body)
		require.ErrorIs(t, err, context.DeadlineExceeded)
		require.NoError(t, resp.Body.Close())
	})
}

// countingWriter counts the writes net/http makes to a connection (it is no io.ByteWriter,
// so Request.Write buffers as the transport does).
type countingWriter struct {
	writes int
	buf    bytes.Buffer
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.writes++
	return w.buf.Write(p)
}

func (w *countingWriter) String() string { return w.buf.String() }

// closeRecorder is a request body that is not an in-memory reader net/http knows, as the
// SDK's is not, and records its Close.
type closeRecorder struct {
	io.Reader
	closed bool
}

func (b *closeRecorder) Close() error { b.closed = true; return nil }

func TestHTTPClientSendsASmallRequestBodyWithItsHeaders(t *testing.T) {
	const payload = "Action=CreateSnapshots&Version=2016-11-15&InstanceSpecification.InstanceId=i-0123"
	t.Run("a small body is given to the transport in memory, so headers and body are one write", func(t *testing.T) {
		body := &closeRecorder{Reader: strings.NewReader(payload)}
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://ec2.local/", body)
		require.NoError(t, err)
		req.ContentLength = int64(len(payload))
		require.NoError(t, inMemoryBody(req))
		require.True(t, body.closed, "the SDK's body is closed once copied")
		var w countingWriter
		require.NoError(t, req.Write(&w))
		require.Equal(t, 1, w.writes, w.String())
		require.True(t, strings.HasSuffix(w.String(), "\r\n\r\n"+payload), w.String())
	})
	t.Run("the SDK's body as it is would be two writes", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://ec2.local/", &closeRecorder{Reader: strings.NewReader(payload)})
		require.NoError(t, err)
		req.ContentLength = int64(len(payload))
		var w countingWriter
		require.NoError(t, req.Write(&w))
		require.Equal(t, 2, w.writes)
	})
	t.Run("small, large and unknown-length bodies reach the server whole", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, err := io.ReadAll(r.Body) // whole, before answering: HTTP/1 here is not full duplex
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			_, _ = w.Write(b)
		}))
		t.Cleanup(srv.Close)
		c := NewHTTPClient(HTTPConfig{})
		for _, tt := range []struct {
			name   string
			body   string
			length int64
		}{
			{"small", payload, int64(len(payload))},
			{"larger than the in-memory limit", strings.Repeat("x", 200<<10), 200 << 10},
			{"unknown length", payload, -1},
		} {
			t.Run(tt.name, func(t *testing.T) {
				body := &closeRecorder{Reader: strings.NewReader(tt.body)}
				req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, srv.URL, body)
				require.NoError(t, err)
				req.ContentLength = tt.length
				resp, err := c.Do(req)
				require.NoError(t, err)
				got, err := io.ReadAll(resp.Body)
				require.NoError(t, err)
				require.NoError(t, resp.Body.Close())
				require.Equal(t, http.StatusOK, resp.StatusCode)
				require.Len(t, got, len(tt.body))
				if tt.body != string(got) { // not require.Equal: a 200 KB diff is no help
					t.Fatal("the server got another body")
				}
				require.True(t, body.closed)
			})
		}
	})
	t.Run("a body shorter than its length fails the attempt", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://ec2.local/", &closeRecorder{Reader: strings.NewReader("short")})
		require.NoError(t, err)
		req.ContentLength = 100
		require.ErrorIs(t, inMemoryBody(req), io.ErrUnexpectedEOF)
	})
}

func TestWorkersRunEveryFunctionAtOnceAndAreReused(t *testing.T) {
	w := newWorkers()
	t.Run("as many functions run at once as are given, nested ones too", func(t *testing.T) {
		const n = 8
		var started, release sync.WaitGroup
		started.Add(n)
		release.Add(1)
		done := make(chan struct{}, n)
		for range n {
			w.run(func() {
				started.Done()
				release.Wait()
				inner := make(chan struct{})
				w.run(func() { close(inner) }) // a nested run never waits for a free worker
				<-inner
				done <- struct{}{}
			})
		}
		started.Wait() // all n run at once: none waited for another
		release.Done()
		for range n {
			<-done
		}
	})
	t.Run("a worker that finished takes the next function", func(t *testing.T) {
		first := make(chan struct{})
		w.run(func() { close(first) })
		<-first
		// The worker is now waiting on w.ch (or about to): a send is taken by it, not by a
		// new goroutine, once it is there.
		require.Eventually(t, func() bool {
			select {
			case w.ch <- func() {}:
				return true
			default:
				return false
			}
		}, 5*time.Second, time.Millisecond)
	})
}

func TestAppendQueryEscapeIsQueryEscape(t *testing.T) {
	for c := range 256 {
		s := string([]byte{byte(c)})
		require.Equal(t, url.QueryEscape(s), string(appendQueryEscape(nil, s)), "byte %#x", c)
	}
	for _, s := range []string{"", "plain", "patchwave pre-patch snapshot run=r-1 instance=i-1", "patchwave:tenant",
		"a+b&c=d/e?f#g", "ünïcödé ✓", "100%", "\x00\xff"} {
		require.Equal(t, url.QueryEscape(s), string(appendQueryEscape([]byte("x="), s))[2:], "%q", s)
	}
}

func TestSnapshotTagsAreTheAdaptersThenTheRequestsByKey(t *testing.T) {
	r := provider.SnapshotRequest{Tenant: "acme", RunID: "r-1", InstanceID: "i-1",
		Tags: map[string]string{"zone": "b", "change": "CHG-1", "owner": ""}}
	var got [][2]string
	for _, tag := range snapshotTags("set-1", "a1", r) {
		got = append(got, [2]string{aws.ToString(tag.Key), aws.ToString(tag.Value)})
	}
	require.Equal(t, [][2]string{
		{TagTenant, "acme"}, {TagRun, "r-1"}, {TagInstance, "i-1"}, {TagSnapshotSet, "set-1"}, {TagAttempt, "a1"},
		{"change", "CHG-1"}, {"owner", ""}, {"zone", "b"},
	}, got)
	require.Len(t, snapshotTags("set-1", "a1", provider.SnapshotRequest{Tenant: "acme", RunID: "r-1", InstanceID: "i-1"}), 5)
}
