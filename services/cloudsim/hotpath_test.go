package cloudsim

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// The hot paths rewritten without allocations (ids, SigV4, forms) must give exactly what the
// straightforward code gives: ids and request ids are part of the persisted state and of what
// clients see, and a signature either verifies or it does not.

func TestHashesAreTheStreamingSHA256OfSeedAndParts(t *testing.T) {
	streaming := func(seed int64, parts ...string) [32]byte {
		h := sha256.New()
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(seed))
		h.Write(b[:])
		for _, p := range parts {
			h.Write([]byte(p))
			h.Write([]byte{0})
		}
		var out [32]byte
		copy(out[:], h.Sum(nil))
		return out
	}
	long := strings.Repeat("x", 500) // past the stack buffer
	for _, parts := range [][]string{{}, {"request", "1"}, {"i", "42"}, {"reservation", "i-0123456789abcdef0"}, {long, "y"}, {"", ""}} {
		for _, seed := range []int64{0, 1, -7, 1 << 62} {
			want := streaming(seed, parts...)
			require.Equal(t, want, hashBytes(seed, parts...))
			require.Equal(t, hex.EncodeToString(want[:])[:17], hashHex(seed, 17, parts...))
			require.Equal(t, hex.EncodeToString(want[:]), hashHex(seed, 64, parts...))
		}
	}
}

func TestRequestIDsAreTheHashOfTheirSequenceNumber(t *testing.T) {
	s := &Server{cfg: Config{Seed: 99}}
	for n := 1; n <= 3; n++ {
		h := hashHex(99, 32, "request", strconv.Itoa(n))
		require.Equal(t, h[0:8]+"-"+h[8:12]+"-"+h[12:16]+"-"+h[16:20]+"-"+h[20:32], s.requestID())
	}
}

func TestHMACIsCryptoHMAC(t *testing.T) {
	for _, key := range []string{"", "k", "AWS4secret", strings.Repeat("k", 64), strings.Repeat("k", 65), strings.Repeat("z", 200)} {
		for _, data := range []string{"", "20261203", strings.Repeat("d", 300)} {
			m := hmac.New(sha256.New, []byte(key))
			m.Write([]byte(data))
			got := hmacSHA256([]byte(key), []byte(data))
			require.Equal(t, m.Sum(nil), got[:], "key %d bytes, data %d bytes", len(key), len(data))
		}
	}
}

func TestHeaderValuesAreTrimmedAsStringsFields(t *testing.T) {
	for _, v := range []string{"", " ", "a", "  a  b\t\tc \n", "x-amz-date", "a,b , c", "\v\fq\r"} {
		require.Equal(t, strings.Join(strings.Fields(v), " "), string(appendTrimmedValue(nil, v)), "%q", v)
	}
}

func TestParseFormIsURLParseQuery(t *testing.T) {
	for _, q := range []string{
		"",
		"Action=DescribeInstances&Version=2016-11-15",
		"Filter.1.Name=tag%3APatchWave&Filter.1.Value.1=2&Filter.1.Value.2=a+b",
		"a=1&a=2&b=&c&&d=%41%42",
		"k%20ey=v%2Fal",
		"Tag.1.Key=x&Tag.1.Value=%E2%9C%93",
	} {
		want, wantErr := url.ParseQuery(q)
		got, err := parseForm(q)
		require.NoError(t, wantErr)
		require.NoError(t, err, "%q", q)
		require.Equal(t, want, got, "%q", q)
	}
	for _, q := range []string{"a=1;b=2", "a=%zz", "%=1"} {
		_, wantErr := url.ParseQuery(q)
		_, err := parseForm(q)
		require.Error(t, wantErr)
		require.EqualError(t, err, wantErr.Error(), "%q", q)
	}
}

func TestParseAuthReadsEveryField(t *testing.T) {
	a, err := parseAuth("AWS4-HMAC-SHA256 Credential=AKIA1/20261203/us-east-1/ec2/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc")
	require.NoError(t, err)
	require.Equal(t, sigAuth{AccessKey: "AKIA1", Date: "20261203", Region: "us-east-1", Service: "ec2",
		SignedHeaders: "host;x-amz-date", Signature: "abc"}, a)
	for _, bad := range []string{"", "AWS4-HMAC-SHA256 ", "Bearer x",
		"AWS4-HMAC-SHA256 Credential=AKIA1/20261203/us-east-1/ec2, SignedHeaders=host, Signature=abc",
		"AWS4-HMAC-SHA256 Credential=AKIA1/20261203/us-east-1/ec2/other, SignedHeaders=host, Signature=abc",
		"AWS4-HMAC-SHA256 Credential=AKIA1/20261203/us-east-1/ec2/aws4_request/x, SignedHeaders=host, Signature=abc",
		"AWS4-HMAC-SHA256 Credential=AKIA1/20261203/us-east-1/ec2/aws4_request, Signature=abc",
		"AWS4-HMAC-SHA256 Credential=AKIA1/20261203/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature"} {
		_, err := parseAuth(bad)
		require.ErrorIs(t, err, errNoAuth, "%q", bad)
	}
}

func TestXMLTimeIsTheLayoutFormat(t *testing.T) {
	for _, tm := range []time.Time{{}, time.Date(2026, 12, 3, 13, 4, 5, 987654321, time.FixedZone("x", -5*3600)),
		time.Date(9, 1, 1, 0, 0, 0, 1e6, time.UTC), time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC),
		time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC), time.Unix(1<<33, 5e8)} {
		require.Equal(t, tm.UTC().Format(xmlTimeLayout), xmlTime(tm))
	}
}
