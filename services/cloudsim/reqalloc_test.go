package cloudsim

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// The per-request allocations saved on the Query protocol's path (a pooled form, escapes
// unescaped into one array, a call's tag values in one string, ids built on the stack, shared
// Content-Length values, signed headers looked up without a canonical copy) must change
// nothing a client or the state sees.

func TestPooledFormParsesAsURLParseQueryAndItsStringsOutliveIt(t *testing.T) {
	queries := []string{
		"Action=CreateSnapshots&Description=patchwave+pre-patch+snapshot+run%3Drun-1" +
			"&TagSpecification.1.Tag.1.Key=patchwave%3Atenant&TagSpecification.1.Tag.1.Value=acme",
		"Action=DescribeInstances&InstanceId.1=i-1&InstanceId.2=i-2",
		"a=1&a=2&b=&c&&d=%41%42&e=%E2%9C%93+%2B",
		"",
		"Filter.1.Name=tag%3APatchWave&Filter.1.Value.1=2&Filter.1.Value.2=a+b",
	}
	var kept []url.Values // deep copies of what each parse gave, checked after the pool reused its form
	var views []url.Values
	for range 3 {
		for _, q := range queries {
			want, err := url.ParseQuery(q)
			require.NoError(t, err)
			qf := queryForms.Get().(*queryForm)
			require.Empty(t, qf.values, "a form from the pool holds nothing of the last call")
			require.NoError(t, qf.parse(q))
			require.Equal(t, want, qf.values, "%q", q)
			// A handler may keep the strings it read (not the form itself).
			view := url.Values{}
			for k, v := range qf.values {
				view[k] = append([]string(nil), v...)
			}
			views = append(views, view)
			kept = append(kept, want)
			qf.release()
		}
	}
	for i := range kept {
		require.Equal(t, kept[i], views[i], "call %d's strings after the form was reused", i)
	}
}

func TestUnescapeFormIsQueryUnescape(t *testing.T) {
	for _, s := range []string{"", "plain", "a+b", "%41", "%e2%9C%93", "100%25", "+%2B+", "%", "%4", "%zz", "a%4g", "%%41"} {
		want, wantErr := url.QueryUnescape(s)
		var buf []byte
		got, err := unescapeForm(&buf, s)
		if wantErr != nil {
			require.EqualError(t, err, wantErr.Error(), "%q", s)
			continue
		}
		require.NoError(t, err, "%q", s)
		require.Equal(t, want, got, "%q", s)
	}
}

func TestEscapedLenBoundsTheUnescapedBytes(t *testing.T) {
	for _, q := range []string{"", "a=1", "a=%41&b=c+d&e=f", "k%20=v&x=%2B%2B%2B", "a=b=c%20&d", "%41%42=%43;&z=+"} {
		n := 0
		for _, pair := range strings.Split(q, "&") {
			k, v, _ := strings.Cut(pair, "=")
			for _, s := range []string{k, v} {
				if u, err := url.QueryUnescape(s); err == nil && u != s {
					n += len(u)
				}
			}
		}
		require.GreaterOrEqual(t, escapedLen(q), n, "%q", q)
		require.LessOrEqual(t, escapedLen(q), len(q), "%q", q)
	}
}

func TestDetachedTagValuesAreTheValues(t *testing.T) {
	body := "acme&run-1&&i-0123456789abcdef0&set-1&1"
	parts := strings.Split(body, "&")
	m := map[string]string{}
	want := map[string]string{}
	for i, p := range parts {
		k := "patchwave:" + strconv.Itoa(i)
		m[k], want[k] = p, strings.Clone(p)
	}
	detachValues(m)
	require.Equal(t, want, m)
	empty := map[string]string{"a": ""}
	detachValues(empty)
	require.Equal(t, map[string]string{"a": ""}, empty)
	detachValues(nil)
}

func TestNewIDIsPrefixAndHashOfTheSequence(t *testing.T) {
	w := newWorld(42, Timing{})
	for _, prefix := range []string{"snap", "vol", "i", "rrvt", strings.Repeat("p", 40)} {
		for range 3 {
			next := w.meta.Seq + 1
			require.Equal(t, prefix+"-"+hashHex(42, 17, prefix, strconv.FormatUint(next, 10)), w.newID(prefix))
		}
	}
}

func TestContentLengthIsTheLengthInDecimal(t *testing.T) {
	for _, n := range []int{0, 1, 9, 10, 2047, 2048, 8191, 8192, 1 << 20} {
		require.Equal(t, []string{strconv.Itoa(n)}, contentLength(n))
		require.Equal(t, []string{strconv.Itoa(n)}, contentLength(n), "the second, shared value")
	}
}

func TestSignedHeaderValuesAreHeaderValues(t *testing.T) {
	h := http.Header{}
	for _, k := range []string{"X-Amz-Date", "Content-Type", "X-Amz-Security-Token", "X-Amz-Content-Sha256", "X-1a", "Odd_Name", "Very-" + strings.Repeat("Long-", 15) + "Name"} {
		h[http.CanonicalHeaderKey(k)] = []string{"v of " + k}
	}
	h["odd_name"] = []string{"kept as written"} // not a token textproto canonicalizes
	for _, name := range []string{"x-amz-date", "content-type", "x-amz-security-token", "x-amz-content-sha256", "X-AMZ-DATE",
		"x-1a", "odd_name", "absent", "", "-x", "very-" + strings.Repeat("long-", 15) + "name"} {
		require.Equal(t, h.Values(name), headerValues(h, name), "%q", name)
	}
}

func TestASnapshotSetIsIndexedAsItsSnapshotsOneByOne(t *testing.T) {
	tags := map[string]string{"patchwave:run": "run-1", "patchwave:set": "set-1", "empty": ""}
	one, together := newWorld(1, Timing{}), newWorld(1, Timing{})
	one.buildIndexes()
	together.buildIndexes()
	old := &snapshot{ID: "snap-0", Account: "111111111111", Region: "us-east-1", Ord: 1, Tags: map[string]string{"patchwave:run": "run-1"}}
	one.indexSnapshot(old)
	together.indexSnapshot(old)
	var set []*snapshot
	for i := range 3 {
		set = append(set, &snapshot{ID: "snap-" + strconv.Itoa(i+1), Account: "111111111111", Region: "us-east-1", Ord: uint64(i + 2), Tags: tags})
	}
	for _, s := range set {
		one.indexSnapshot(s)
	}
	together.indexSnapshotSet(set)
	together.indexSnapshotSet(nil)
	require.Equal(t, one.snapByRegion, together.snapByRegion)
	require.Equal(t, one.snapByTag, together.snapByTag)
	require.Len(t, together.snapByTag[tagKey{"111111111111", "us-east-1", "patchwave:run", "run-1", false}].items, 4)
}
