package catalog_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"

	"github.com/patchwave/patchwave/libs/testkit"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	"github.com/patchwave/patchwave/services/catalog"
)

var samples = []string{"amazon-linux-2023/updateinfo.xml", "microsoft/2026-Nov.xml", "ubuntu/USN-7700-1.json", "redhat/rhsa-2026_1001.json"}

func poll(t *testing.T, e *env, name string) *catalogv1.PollSourceResponse {
	t.Helper()
	resp, err := e.client.PollSource(as(t.Context(), "ops@provider"), &catalogv1.PollSourceRequest{Name: name})
	require.NoError(t, err)
	return resp
}

func TestDirectorySourceIngestsEveryDocumentAndABadOneStopsNothing(t *testing.T) {
	dir := t.TempDir()
	for _, s := range samples {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, filepath.Dir(s)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, s), sampleDoc(t, s), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(dir, "broken.json"), []byte(`{"id":"USN-1-1"}`), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "README.txt"), []byte("not a feed"), 0o644))
	e := start(t, catalog.Config{Sources: []catalog.Source{{Name: "samples", Kind: catalog.KindDir, Dir: dir}}}, catalog.Deps{})

	// The scheduled first poll runs at start; a poll on demand waits for it, then finds
	// nothing new.
	require.Eventually(t, func() bool {
		src, err := e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "samples"})
		return err == nil && src.GetSource().GetLastSuccessAt() != nil
	}, 10*time.Second, 10*time.Millisecond)
	src, err := e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "samples"})
	require.NoError(t, err)
	s := src.GetSource()
	require.Equal(t, int32(5), s.GetLastDocuments())
	require.Equal(t, int32(1), s.GetLastFailedDocuments())
	require.Len(t, s.GetLastFailures(), 1)
	require.Contains(t, s.GetLastFailures()[0], `broken.json": field "/affected"`)
	require.True(t, t0.Add(24*time.Hour).Equal(s.GetNextPollAt().AsTime()), "daily by default")
	require.Len(t, catalogEvents(t, e.js, "catalog.patch.discovered"), 8)
	polled := waitCatalogEvents(t, e.js, "catalog.source.polled", 1)
	require.Len(t, polled, 1)
	require.Equal(t, int32(8), polled[0].Data.(*eventsv1.SourcePolled).GetPatchesDiscovered())

	again := poll(t, e, "samples")
	require.Zero(t, again.GetPatchesDiscovered()+again.GetPatchesUpdated())
	require.Len(t, catalogEvents(t, e.js, "catalog.>"), 9, "an unchanged feed publishes nothing")

	_, err = e.client.PollSource(as(t.Context(), "ops@provider"), &catalogv1.PollSourceRequest{Name: "nope"})
	requireCode(t, err, codes.NotFound, `source "nope"`)
}

// etagServer serves documents with ETags and answers 304 to a matching If-None-Match.
type etagServer struct {
	mu          sync.Mutex
	docs        map[string][]byte
	notModified atomic.Int32
	served      atomic.Int32
	failing     map[string]bool
}

func (s *etagServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing[r.URL.Path] {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
		return
	}
	doc, ok := s.docs[r.URL.Path]
	if !ok {
		http.NotFound(w, r)
		return
	}
	sum := sha256.Sum256(doc)
	etag := `"` + hex.EncodeToString(sum[:8]) + `"`
	w.Header().Set("ETag", etag)
	w.Header().Set("Last-Modified", "Tue, 10 Nov 2026 08:00:00 GMT")
	if r.Header.Get("If-None-Match") == etag {
		s.notModified.Add(1)
		w.WriteHeader(http.StatusNotModified)
		return
	}
	s.served.Add(1)
	_, _ = w.Write(doc)
}

func TestHTTPSourceSendsItsValidatorsAndAFailingSourceIsRetriedReportedAndBlocksNoOther(t *testing.T) {
	good := &etagServer{docs: map[string][]byte{
		"/al2023/updateinfo.xml":  sampleDoc(t, "amazon-linux-2023/updateinfo.xml"),
		"/ubuntu/USN-7700-1.json": sampleDoc(t, "ubuntu/USN-7700-1.json"),
	}}
	goodSrv := httptest.NewServer(good)
	t.Cleanup(goodSrv.Close)
	bad := &etagServer{failing: map[string]bool{"/feed.xml": true}}
	badSrv := httptest.NewServer(bad)
	t.Cleanup(badSrv.Close)

	e := start(t, catalog.Config{Sources: []catalog.Source{
		{Name: "down", Kind: catalog.KindHTTP, URLs: []string{badSrv.URL + "/feed.xml"}},
		{Name: "vendors", Kind: catalog.KindHTTP, URLs: []string{goodSrv.URL + "/al2023/updateinfo.xml", goodSrv.URL + "/ubuntu/USN-7700-1.json"}},
	}}, catalog.Deps{})
	require.Eventually(t, func() bool {
		v, err1 := e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "vendors"})
		d, err2 := e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "down"})
		return err1 == nil && err2 == nil && v.GetSource().GetLastSuccessAt() != nil && d.GetSource().GetConsecutiveFailures() == 1
	}, 10*time.Second, 10*time.Millisecond, "the failing source does not hold the other back")
	v, err := e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "vendors"})
	require.NoError(t, err)
	require.Len(t, v.GetSource().GetValidators(), 2)
	require.Equal(t, int32(2), good.served.Load())
	waitCatalogEvents(t, e.js, "catalog.source.polled", 1)
	waitCatalogEvents(t, e.js, "catalog.source.failed", 1)

	// The next poll asks with If-None-Match and gets 304s: nothing is read or published.
	before := len(catalogEvents(t, e.js, "catalog.>"))
	resp := poll(t, e, "vendors")
	require.Zero(t, resp.GetDocuments())
	require.Equal(t, int32(2), good.notModified.Load())
	require.Len(t, catalogEvents(t, e.js, "catalog.>"), before)

	d, err := e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "down"})
	require.NoError(t, err)
	src := d.GetSource()
	require.Contains(t, src.GetLastError(), "503 Service Unavailable")
	require.True(t, t0.Add(time.Minute).Equal(src.GetNextPollAt().AsTime()), "retried after the first backoff, %s", src.GetNextPollAt().AsTime())
	_, err = e.client.PollSource(as(t.Context(), "ops@provider"), &catalogv1.PollSourceRequest{Name: "down"})
	requireCode(t, err, codes.Unavailable, "source down", "503")
	d, err = e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "down"})
	require.NoError(t, err)
	require.Equal(t, int32(2), d.GetSource().GetConsecutiveFailures())
	require.True(t, t0.Add(2*time.Minute).Equal(d.GetSource().GetNextPollAt().AsTime()), "the backoff doubles")
	failed := catalogEvents(t, e.js, "catalog.source.failed")
	require.Len(t, failed, 2)
	require.Equal(t, int32(2), failed[1].Data.(*eventsv1.SourceFailed).GetConsecutiveFailures())

	// Back up: the next poll succeeds and clears the failure count.
	bad.mu.Lock()
	bad.failing = nil
	bad.docs = map[string][]byte{"/feed.xml": sampleDoc(t, "microsoft/2026-Nov.xml")}
	bad.mu.Unlock()
	resp = poll(t, e, "down")
	require.Equal(t, int32(2), resp.GetPatchesDiscovered())
	require.Zero(t, resp.GetSource().GetConsecutiveFailures())
}

func TestS3SourceReadsTheObjectsOfAPrefixFromARealS3Emulator(t *testing.T) {
	faker := gofakes3.New(s3mem.New())
	srv := httptest.NewServer(faker.Server())
	t.Cleanup(srv.Close)
	client := s3.New(s3.Options{
		Region: "eu-west-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
	})
	_, err := client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String("feeds")})
	require.NoError(t, err)
	for i, s := range samples {
		_, err := client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("feeds"), Key: aws.String(fmt.Sprintf("vendors/%d-%s", i, filepath.Base(s))), Body: bytes.NewReader(sampleDoc(t, s))})
		require.NoError(t, err)
	}
	_, err = client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String("feeds"), Key: aws.String("other/ignored.json"), Body: bytes.NewReader([]byte("{}"))})
	require.NoError(t, err)

	// The catalog builds its own client from the source's location, as in production.
	e := start(t, catalog.Config{Sources: []catalog.Source{{Name: "mirror", Kind: catalog.KindS3, S3: catalog.S3Location{
		Bucket: "feeds", Prefix: "vendors/", Region: "eu-west-1", Endpoint: srv.URL, UsePathStyle: true,
		AccessKeyID: "AKIDTEST", SecretAccessKey: "secret",
	}}}}, catalog.Deps{})
	require.Eventually(t, func() bool {
		src, err := e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "mirror"})
		return err == nil && src.GetSource().GetLastSuccessAt() != nil
	}, 10*time.Second, 10*time.Millisecond)
	src, err := e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "mirror"})
	require.NoError(t, err)
	require.Equal(t, int32(4), src.GetSource().GetLastDocuments())
	require.Zero(t, src.GetSource().GetLastFailedDocuments())
	require.Equal(t, "s3://feeds/vendors/", src.GetSource().GetLocation())
	require.Len(t, catalogEvents(t, e.js, "catalog.patch.discovered"), 8)

	again := poll(t, e, "mirror")
	require.Zero(t, again.GetDocuments(), "unchanged ETags are not read again")
}

func TestCSAFProviderSourceDiscoversAdvisoriesThroughProviderMetadataAndROLIE(t *testing.T) {
	advisory := sampleDoc(t, "redhat/rhsa-2026_1001.json")
	sum := sha256.Sum256(advisory)
	var base string
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/csaf/provider-metadata.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{
  "canonical_url": "%[1]s/.well-known/csaf/provider-metadata.json",
  "distributions": [{"rolie": {"feeds": [{"summary": "WHITE advisories", "tlp_label": "WHITE", "url": "%[1]s/.well-known/csaf/feed-tlp-white.json"}]}}],
  "last_updated": "2026-11-06T10:00:00Z",
  "list_on_CSAF_aggregators": true,
  "metadata_version": "2.0",
  "mirror_on_CSAF_aggregators": true,
  "public_openpgp_keys": [{"fingerprint": "8D5F0D5E3A8D1F1B8D5F0D5E3A8D1F1B8D5F0D5E", "url": "%[1]s/.well-known/csaf/openpgp/key.asc"}],
  "publisher": {"category": "vendor", "name": "Example Vendor PSIRT", "namespace": "https://vendor.example"},
  "role": "csaf_trusted_provider"
}`, base)
	})
	mux.HandleFunc("/.well-known/csaf/feed-tlp-white.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"feed": {
  "id": "example-csaf-feed-tlp-white", "title": "Example CSAF feed (TLP:WHITE)",
  "link": [{"rel": "self", "href": "%[1]s/.well-known/csaf/feed-tlp-white.json"}],
  "category": [{"scheme": "urn:ietf:params:rolie:category:information-type", "term": "csaf"}],
  "updated": "2026-11-06T10:00:00Z",
  "entry": [{
    "id": "RHSA-2026:1001", "title": "sudo security update",
    "link": [
      {"rel": "self", "href": "%[1]s/.well-known/csaf/white/2026/rhsa-2026_1001.json"},
      {"rel": "hash", "href": "%[1]s/.well-known/csaf/white/2026/rhsa-2026_1001.json.sha256"},
      {"rel": "signature", "href": "%[1]s/.well-known/csaf/white/2026/rhsa-2026_1001.json.asc"}
    ],
    "published": "2026-11-04T09:30:00Z", "updated": "2026-11-06T10:00:00Z",
    "content": {"type": "application/json", "src": "%[1]s/.well-known/csaf/white/2026/rhsa-2026_1001.json"},
    "format": {"schema": "https://docs.oasis-open.org/csaf/csaf/v2.0/csaf_json_schema.json", "version": "2.0"}
  }]
}}`, base)
	})
	mux.HandleFunc("/.well-known/csaf/white/2026/rhsa-2026_1001.json", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("ETag", `"rhsa-2026-1001-v2"`)
		_, _ = w.Write(advisory)
	})
	mux.HandleFunc("/.well-known/csaf/white/2026/rhsa-2026_1001.json.sha256", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintf(w, "%x  rhsa-2026_1001.json\n", sum)
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	base = srv.URL

	for name, provider := range map[string]string{
		"by the metadata's URL":               srv.URL + "/.well-known/csaf/provider-metadata.json",
		"by the domain (the well-known path)": strings.TrimPrefix(srv.URL, "https://"),
	} {
		t.Run(name, func(t *testing.T) {
			e := start(t, catalog.Config{Sources: []catalog.Source{{Name: "vendor-csaf", Kind: catalog.KindCSAFProvider, Provider: provider}}},
				catalog.Deps{HTTPClient: srv.Client()})
			require.Eventually(t, func() bool {
				src, err := e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "vendor-csaf"})
				return err == nil && (src.GetSource().GetLastSuccessAt() != nil || src.GetSource().GetLastError() != "")
			}, 10*time.Second, 10*time.Millisecond)
			src, err := e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "vendor-csaf"})
			require.NoError(t, err)
			require.Empty(t, src.GetSource().GetLastError())
			require.Equal(t, int32(1), src.GetSource().GetLastDocuments())
			got, err := e.client.GetPatch(t.Context(), &catalogv1.GetPatchRequest{PatchId: "RHSA-2026:1001"})
			require.NoError(t, err)
			require.Equal(t, "vendor-csaf", got.GetPatch().GetPatch().GetSources()[0].GetSource())
			require.Equal(t, srv.URL+"/.well-known/csaf/white/2026/rhsa-2026_1001.json", got.GetPatch().GetPatch().GetSources()[0].GetName())
		})
	}
}

func TestAFailingSourceIsRetriedOnTheClockWithABackoffAndCounted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "not-yet")
	reg := prometheus.NewRegistry()
	e := start(t, catalog.Config{Sources: []catalog.Source{{Name: "late", Kind: catalog.KindDir, Dir: dir}}}, catalog.Deps{Registerer: reg})
	failures := func() int32 {
		src, err := e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "late"})
		require.NoError(t, err)
		return src.GetSource().GetConsecutiveFailures()
	}
	require.Eventually(t, func() bool { return failures() == 1 }, 10*time.Second, 10*time.Millisecond, "the first poll runs at start")

	// The retry waits for its backoff on the clock: 1 minute, then 2.
	e.clock.Advance(59 * time.Second)
	require.Never(t, func() bool { return failures() != 1 }, 100*time.Millisecond, 10*time.Millisecond)
	e.clock.Advance(time.Second)
	require.Eventually(t, func() bool { return failures() == 2 }, 10*time.Second, 10*time.Millisecond)
	e.clock.Advance(2 * time.Minute)
	require.Eventually(t, func() bool { return failures() == 3 }, 10*time.Second, 10*time.Millisecond)
	require.InDelta(t, 3, counter(t, reg, "patchwave_catalog_source_polls_total", "failed"), 0)

	// The directory appears: the next retry succeeds, and the next poll is a day later.
	require.NoError(t, os.MkdirAll(dir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "USN-7700-1.json"), sampleDoc(t, "ubuntu/USN-7700-1.json"), 0o644))
	e.clock.Advance(4 * time.Minute)
	require.Eventually(t, func() bool { return failures() == 0 }, 10*time.Second, 10*time.Millisecond)
	src, err := e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "late"})
	require.NoError(t, err)
	require.True(t, e.clock.Now().Add(24*time.Hour).Equal(src.GetSource().GetNextPollAt().AsTime()))
	require.InDelta(t, 1, counter(t, reg, "patchwave_catalog_source_polls_total", "ok"), 0)
	require.Len(t, catalogEvents(t, e.js, "catalog.source.failed"), 3)
}

// counter reads a counter of reg with the given outcome label.
func counter(t *testing.T, reg *prometheus.Registry, name, outcome string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func TestTwoReplicasPollASourceOnce(t *testing.T) {
	dir := t.TempDir()
	for _, s := range samples {
		require.NoError(t, os.WriteFile(filepath.Join(dir, filepath.Base(s)), sampleDoc(t, s), 0o644))
	}
	ns := testkit.StartNATS(t)
	nc := ns.Connect(t)
	cfg := catalog.Config{Sources: []catalog.Source{{Name: "samples", Kind: catalog.KindDir, Dir: dir}}}
	clock := newClock(t0)
	a := startOn(t, nc, cfg, catalog.Deps{Clock: clock})
	b := startOn(t, nc, cfg, catalog.Deps{Clock: clock})
	for _, e := range []*env{a, b} {
		require.Eventually(t, func() bool {
			src, err := e.client.GetSource(t.Context(), &catalogv1.GetSourceRequest{Name: "samples"})
			return err == nil && src.GetSource().GetLastSuccessAt() != nil
		}, 10*time.Second, 10*time.Millisecond)
	}
	require.Len(t, waitCatalogEvents(t, a.js, "catalog.source.polled", 1), 1, "one replica took the scheduled poll")
	require.Len(t, catalogEvents(t, a.js, "catalog.patch.discovered"), 8)
	// Both replicas answer from their own mirror.
	for _, e := range []*env{a, b} {
		list, err := e.client.ListPatches(t.Context(), &catalogv1.ListPatchesRequest{})
		require.NoError(t, err)
		require.Len(t, list.GetPatches(), 8)
	}
}
