package cloudsim

import (
	"bytes"
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// marshalLikeWriteJSON is what writeJSON wrote through encoding/json: Encode, HTML escaped,
// without the newline.
func marshalLikeWriteJSON(t *testing.T, v any) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, json.NewEncoder(&b).Encode(v))
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// TestJSONStringHTMLIsEncodingJSON: appendJSONStringHTML writes the bytes encoding/json writes
// for every kind of string: escapes, HTML characters, U+2028/U+2029, non-ASCII and invalid
// UTF-8.
func TestJSONStringHTMLIsEncodingJSON(t *testing.T) {
	for _, s := range append(jsonStringCases(), "\b\f", "a\u2028b\u2029c", "\xe2\x80", "x\xed\xa0\x80y", "&amp;<>") {
		t.Run(strconv.Quote(s), func(t *testing.T) {
			require.Equal(t, string(marshalLikeWriteJSON(t, s)), string(appendJSONStringHTML([]byte("x"), s)[1:]))
		})
	}
}

// TestHandWrittenJSONEqualsEncodingJSON: the hand-written SSM answers are byte for byte what
// encoding/json writes for the same values, full (every string awkward, every time set) and
// empty (nil lists, nil times, empty strings, omitted members).
func TestHandWrittenJSONEqualsEncodingJSON(t *testing.T) {
	at := time.Date(2026, 12, 4, 19, 30, 1, 234_000_000, time.UTC)
	for i, s := range jsonStringCases() {
		plugin := ssmPlugin{Name: s, Status: s, StatusDetails: s, ResponseCode: -i, ResponseStartDateTime: epochPtr(at),
			ResponseFinishDateTime: epochPtr(at.Add(time.Duration(i) * time.Millisecond)), Output: s, StandardOutputURL: s,
			StandardErrorURL: s, OutputS3Region: s, OutputS3BucketName: s, OutputS3KeyPrefix: s}
		inv := ssmInvocation{CommandID: s, InstanceID: s, InstanceName: s, Comment: s, DocumentName: s, DocumentVersion: s,
			RequestedDateTime: epochPtr(at), Status: s, StatusDetails: s, TraceOutput: s, StandardOutputURL: s,
			StandardErrorURL: s, CommandPlugins: []ssmPlugin{plugin, {}}, ServiceRole: s}
		info := ssmInstanceInfo{InstanceID: s, PingStatus: s, LastPingDateTime: epochPtr(at), AgentVersion: s, IsLatestVersion: i%2 == 0,
			PlatformType: s, PlatformName: s, PlatformVersion: s, ResourceType: s, IPAddress: s, ComputerName: s, SourceID: s, SourceType: s}
		state := ssmPatchState{InstanceID: s, PatchGroup: s, BaselineID: s, SnapshotID: s, InstallOverrideList: s, InstalledCount: i,
			InstalledOtherCount: i + 1, InstalledPendingRebootCount: i + 2, InstalledRejectedCount: i + 3, MissingCount: i + 4,
			FailedCount: i + 5, UnreportedNotApplicable: i + 6, NotApplicableCount: i + 7, AvailableSecurityUpdate: i + 8,
			OperationStartTime: epochOf(at), OperationEndTime: epochOf(at.Add(time.Second)), Operation: s, RebootOption: s,
			CriticalNonCompliantCount: i + 9, SecurityNonCompliantCount: i + 10, OtherNonCompliantCount: i + 11}
		for name, v := range map[string]jsonAppender{
			"invocations":             &ssmInvocationsPage{CommandInvocations: []ssmInvocation{inv, {}, {CommandPlugins: []ssmPlugin{}}}, NextToken: s},
			"invocations, empty":      &ssmInvocationsPage{CommandInvocations: []ssmInvocation{}},
			"invocations, nil":        &ssmInvocationsPage{},
			"instance information":    &ssmInstanceInfoPage{InstanceInformationList: []ssmInstanceInfo{info, {}}, NextToken: s},
			"instance information, 0": &ssmInstanceInfoPage{InstanceInformationList: []ssmInstanceInfo{}},
			"patch states":            &ssmPatchStatesPage{InstancePatchStates: []ssmPatchState{state, {}}, NextToken: s},
			"patch states, nil":       &ssmPatchStatesPage{},
		} {
			t.Run(strconv.Quote(s)+"/"+name, func(t *testing.T) {
				require.Equal(t, string(marshalLikeWriteJSON(t, v)), string(v.appendJSON(nil)))
			})
		}
	}
}
