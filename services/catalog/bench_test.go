package catalog_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	"github.com/patchwave/patchwave/services/catalog"
)

// ubuntuNotice writes an OSV document shaped like Ubuntu's notices: one to three releases,
// the source package's fixed version, its binaries, and per-CVE priorities and CVSS vectors.
func ubuntuNotice(i int) string {
	releases := []string{"Ubuntu:20.04:LTS", "Ubuntu:22.04:LTS", "Ubuntu:24.04:LTS"}[:1+i%3]
	pkg := fmt.Sprintf("pkg%d", i%700)
	var affected []string
	for j, rel := range releases {
		version := fmt.Sprintf("%d.%d.%d-%dubuntu%d.%d", 1+i%9, i%13, j, 1+i%5, j, i%40)
		affected = append(affected, fmt.Sprintf(`{
      "package": {"ecosystem": %q, "name": %q, "purl": "pkg:deb/ubuntu/%s@%s?arch=source"},
      "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": %q}]}],
      "versions": ["%d.%d.0-1", "%d.%d.0-1ubuntu1"],
      "ecosystem_specific": {"binaries": [{"binary_name": %q, "binary_version": %q}, {"binary_name": "lib%s1", "binary_version": %q}], "availability": "No subscription required"},
      "database_specific": {"cves_map": {"ecosystem": %q, "cves": [
        {"id": "CVE-2026-%d", "severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H"}, {"type": "Ubuntu", "score": "medium"}]},
        {"id": "CVE-2026-%d", "severity": [{"type": "Ubuntu", "score": "low"}]}]}}
    }`, rel, pkg, pkg, version, version, 1+i%9, i%13, 1+i%9, i%13, pkg, version, pkg, version, rel, 10000+2*i, 10001+2*i))
	}
	return fmt.Sprintf(`{
  "schema_version": "1.7.0",
  "id": "USN-%d-1",
  "summary": "%s vulnerabilities",
  "details": "Several security issues were discovered in %s.\nAn attacker could possibly use these issues to cause a denial of service.\n",
  "aliases": [],
  "upstream": ["UBUNTU-CVE-2026-%d", "UBUNTU-CVE-2026-%d"],
  "related": [],
  "published": "2026-%02d-%02dT10:%02d:00Z",
  "modified": "2026-%02d-%02dT10:%02d:00Z",
  "affected": [%s],
  "references": [{"type": "ADVISORY", "url": "https://ubuntu.com/security/notices/USN-%d-1"}]
}`, 8000+i, pkg, pkg, 10000+2*i, 10001+2*i, 1+i%12, 1+i%28, i%60, 1+i%12, 1+i%28, i%60, strings.Join(affected, ","), 8000+i)
}

// benchCatalog hosts a catalog with a directory source on nc and returns its client.
func benchCatalog(b *testing.B, nc *nats.Conn, dir string) (catalogv1.CatalogServiceClient, func()) {
	b.Helper()
	svc, err := catalog.New(catalog.Config{Sources: []catalog.Source{{Name: "ubuntu", Kind: catalog.KindDir, Dir: dir, Format: "osv"}}},
		catalog.Deps{Clock: newClock(t0)})
	if err != nil {
		b.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h, err := host.New(ctx, host.Config{Name: "bench", Conn: nc, GRPCListener: lis, Bus: stagetest.BusConfig()}, svc)
	if err != nil {
		b.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	if err := h.Ready(ctx); err != nil {
		b.Fatal(err)
	}
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	return catalogv1.NewCatalogServiceClient(cc), func() {
		_ = cc.Close()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
	}
}

func catalogMessages(b *testing.B, js jetstream.JetStream) uint64 {
	b.Helper()
	s, err := js.Stream(context.Background(), "CATALOG_EVENTS")
	if err != nil {
		b.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	return info.State.Msgs
}

// BenchmarkIngestOSVFeed ingests a directory of 10,000 generated Ubuntu-shaped OSV notices
// (target: under 30 s on 2 cores), then re-ingests the unchanged feed with a restarted
// catalog, which reads and hashes every file again (target: under 10 s, zero events). Run it
// once: go test -run '^$' -bench IngestOSVFeed -benchtime 1x ./services/catalog/
func BenchmarkIngestOSVFeed(b *testing.B) {
	const docs = 10000
	dir := b.TempDir()
	for i := range docs {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("USN-%d-1.json", 8000+i)), []byte(ubuntuNotice(i)), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for b.Loop() {
		ns := testkit.StartNATS(b)
		nc := ns.Connect(b)
		js, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}

		start := time.Now()
		client, stop := benchCatalog(b, nc, dir)
		poll, err := client.PollSource(context.Background(), &catalogv1.PollSourceRequest{Name: "ubuntu"})
		if err != nil {
			b.Fatal(err)
		}
		// The scheduled first poll ran at start; PollSource waited for it and found nothing new.
		src, err := client.GetSource(context.Background(), &catalogv1.GetSourceRequest{Name: "ubuntu"})
		if err != nil {
			b.Fatal(err)
		}
		first := time.Since(start)
		events := catalogMessages(b, js)
		stop()
		if src.GetSource().GetLastFailedDocuments() != 0 || poll.GetFailedDocuments() != 0 {
			b.Fatalf("failed documents: %v", src.GetSource().GetLastFailures())
		}

		start = time.Now()
		client, stop = benchCatalog(b, nc, dir)
		again, err := client.PollSource(context.Background(), &catalogv1.PollSourceRequest{Name: "ubuntu"})
		if err != nil {
			b.Fatal(err)
		}
		second := time.Since(start)
		eventsAgain := catalogMessages(b, js) - events
		stop()

		b.ReportMetric(first.Seconds(), "ingest_s")
		b.ReportMetric(float64(docs)/first.Seconds(), "docs/s")
		b.ReportMetric(float64(events), "ingest_events")
		b.ReportMetric(second.Seconds(), "reingest_s")
		b.ReportMetric(float64(eventsAgain), "reingest_events")
		fmt.Printf("ingest of %d OSV documents: %.1fs (%.0f documents/s), %d events published\n", docs, first.Seconds(), float64(docs)/first.Seconds(), events)
		fmt.Printf("re-ingest of the unchanged feed by a restarted catalog: %.1fs, %d documents read, %d unchanged, %d events published\n",
			second.Seconds(), again.GetDocuments(), again.GetUnchanged(), eventsAgain)
	}
}
