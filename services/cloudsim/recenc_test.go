package cloudsim

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func recencEntities() map[string]any {
	t0 := time.Date(2026, 12, 3, 9, 30, 0, 123456789, time.UTC)
	t1 := t0.Add(90 * time.Second).In(time.FixedZone("x", 3600))
	p1 := &patchRecord{ID: "KB1", Title: `Fix "quotes" \ and <html> & ünïcode`, KBID: "KB1", Classification: "SecurityUpdates",
		Severity: "Critical", State: "INSTALLED", InstalledTime: t1}
	p2 := &patchRecord{ID: "pkg\u0001ctl", Title: "t", Classification: "c", Severity: "s", State: "MISSING"}
	full := &instance{ID: "i-0123", Account: "111", Region: "us-east-1", AZ: "us-east-1a", Ord: 42, State: "running",
		StateSince: t0, LaunchTime: t0, Tags: map[string]string{"PatchWave": "2", "Name": "web\t1"}, OS: "amazon-linux-2023",
		InstanceType: "t3.micro", ImageID: "ami-1", PrivateIP: "10.0.0.1",
		Volumes: []*volume{{ID: "vol-1", Device: "/dev/xvda", SizeGiB: 8, Tags: map[string]string{"a": "b"}, AttachTime: t0}, {ID: "vol-2", Device: "/dev/xvdb", SizeGiB: 100}},
		Agent:   true, AgentDropped: true, Impaired: true, BootedAt: t0, RebootUntil: t1,
		Patches:          map[string]*patchRecord{"KB1": p1, "pkg\u0001ctl": p2},
		LastOp:           &patchOp{Operation: "Install", RebootOption: "NoReboot", InstallOverrideList: "s3://b/k", SnapshotID: "snap-1", Start: t0, End: t1},
		FailNextInstalls: 2, FailNextSnaps: 1, pending: []effect{{at: t0}}}
	return map[string]any{
		"instance/full":  full,
		"instance/empty": &instance{ID: "i-1", Tags: map[string]string{}, Patches: map[string]*patchRecord{}},
		"snapshot/full": &snapshot{ID: "snap-1", Account: "111", Region: "r", Ord: 7, VolumeID: "vol-1", VolumeSize: 8, InstanceID: "i-1",
			Root: true, Description: "d", Tags: map[string]string{"run": "r1"}, Start: t0, EndAt: t1, Final: "completed",
			Patches: map[string]*patchRecord{"KB1": p1}},
		"snapshot/empty": &snapshot{},
		"invocation/full": &invocation{CommandID: "c-1", InstanceID: "i-1", Account: "111", Region: "r", Ord: 9, Requested: t0,
			PendingUntil: t0, EffectAt: t1, EndAt: t1, Final: "Success", FinalDetails: "Success", ResponseCode: 0, Output: "line 1\nline 2",
			Rendered: true, OS: "windows", Stderr: "e", Plugin: "PatchWindows", Operation: "Install", RebootOption: "RebootIfNeeded",
			OverrideList: "o", SnapshotID: "s", Results: []patchRecord{*p1, *p2}, Reboot: true, CancelledAt: t1, Applied: true},
		"invocation/empty": &invocation{},
		"command/full": &command{ID: "c-1", Account: "111", Region: "r", Ord: 3, DocumentName: "AWS-RunPatchBaseline", Comment: "wave 1 \xff not UTF-8\r\n",
			Parameters: map[string][]string{"Operation": {"Install"}, "Empty": {}, "Nil": nil}, InstanceIDs: []string{"i-1", "i-2"},
			Requested: t0, TimeoutSeconds: 600, MaxConcurrency: "50", MaxErrors: "0"},
		"command/empty": &command{},
	}
}

// TestRecordEncodingMatchesJSON: the hand-written appenders write the same JSON members as
// encoding/json does (compared as decoded values, so map order and escaping do not matter), and
// the line reads back into the same entity.
func TestRecordEncodingMatchesJSON(t *testing.T) {
	for name, v := range recencEntities() {
		t.Run(name, func(t *testing.T) {
			_, ok := appendValue(nil, v)
			require.True(t, ok, "written without reflection")
			want, err := json.Marshal(v)
			require.NoError(t, err)
			var b bytes.Buffer
			require.NoError(t, encodeRecord(&b, entityKey{"kind\"x", "id/é"}, v))
			line := b.Bytes()
			require.Equal(t, byte('\n'), line[len(line)-1])
			require.Equal(t, 1, bytes.Count(line, []byte("\n")), "one line per record")
			var r record
			require.NoError(t, json.Unmarshal(line, &r))
			require.Equal(t, "kind\"x", r.Kind)
			require.Equal(t, "id/é", r.ID)
			var got, exp map[string]any
			require.NoError(t, json.Unmarshal(r.Value, &got))
			require.NoError(t, json.Unmarshal(want, &exp))
			require.Equal(t, exp, got)
		})
	}
}

func TestDeletionRecord(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, encodeRecord(&b, entityKey{"snapshot", "snap-1"}, nil))
	require.True(t, strings.HasSuffix(b.String(), "}\n"), "one line")
	require.JSONEq(t, `{"k":"snapshot","id":"snap-1","d":true}`, b.String())
}

// BenchmarkEncodeRecord is the state log's cost per changed entity.
func BenchmarkEncodeRecord(b *testing.B) {
	for _, name := range []string{"instance/full", "snapshot/full", "invocation/full", "command/full"} {
		v := recencEntities()[name]
		b.Run(name, func(b *testing.B) {
			var buf bytes.Buffer
			b.ReportAllocs()
			for b.Loop() {
				buf.Reset()
				if err := encodeRecord(&buf, entityKey{"instance", "i-0123"}, v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// jsonStringCases are strings that exercise every branch of appendJSONStringHTML and plainText:
// plain runs, escapes at the start, middle and end, every control character, non-ASCII and
// invalid UTF-8.
func jsonStringCases() []string {
	cases := []string{"", "i-0123456789abcdef0", `"`, `\`, `a"b\c`, `"quoted" at both ends"`, "tab\there", "new\nline\n",
		"\r\n", "\x00nul", "del\x7f", "ünïcode", "日本語 and ascii", "\u2028\u2029", "emoji 😀", "bad \xff byte", "\xc3",
		"mixed \"\xff\" \\ ü", "<html> & 'apos'", "\xef\xbf\xbd replacement", strings.Repeat("long plain run ", 40)}
	var ctl strings.Builder
	for c := range 0x20 {
		ctl.WriteByte(byte(c))
		ctl.WriteByte('x')
	}
	return append(cases, ctl.String())
}

// TestJSONStringDecodesAsEncodingJSON: whatever the string, appendJSONStringHTML (the state
// log's strings and the SSM answers') writes a JSON string that decodes to what encoding/json's
// own encoding decodes to (the same string for
// valid UTF-8, U+FFFD for bad bytes), appended after what the buffer held.
func TestJSONStringDecodesAsEncodingJSON(t *testing.T) {
	for _, s := range jsonStringCases() {
		t.Run(strconv.Quote(s), func(t *testing.T) {
			got := appendJSONStringHTML([]byte("prefix"), s)
			require.True(t, bytes.HasPrefix(got, []byte("prefix")))
			want, err := json.Marshal(s)
			require.NoError(t, err)
			var ours, theirs string
			require.NoError(t, json.Unmarshal(got[len("prefix"):], &ours), "%s", got)
			require.NoError(t, json.Unmarshal(want, &theirs))
			require.Equal(t, theirs, ours, "the decoded strings")
			if utf8.ValidString(s) {
				require.Equal(t, s, ours)
			}
		})
	}
}
