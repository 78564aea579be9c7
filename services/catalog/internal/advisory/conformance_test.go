package advisory_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/advisory"
)

// fixtures is where the shared real advisories live, read in place (never copied into the
// repository): ../shared/fixtures/advisories from the repository's root.
const fixtures = "../../../../../shared/fixtures/advisories"

func parseFixture(t *testing.T, rel string) (advisory.Format, map[string]*typesv1.Patch) {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(fixtures, rel))
	require.NoError(t, err, "the shared fixtures must be at %s", fixtures)
	format, ps, err := advisory.Parse(advisory.Document{Name: filepath.Base(rel), Data: data, Source: "conformance"}, "")
	require.NoError(t, err)
	out := map[string]*typesv1.Patch{}
	for _, p := range ps {
		require.Len(t, p.GetSources(), 1)
		require.Equal(t, advisory.Digest(data), p.GetSources()[0].GetDigest())
		require.Equal(t, string(format), p.GetSources()[0].GetFormat())
		require.Equal(t, filepath.Base(rel), p.GetSources()[0].GetName())
		out[p.GetId()] = p
	}
	return format, out
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		panic(err)
	}
	return t
}

func pkg(name, epoch, version, release, arch, ecosystem string) *typesv1.PackageVersion {
	return &typesv1.PackageVersion{Name: name, Epoch: epoch, Version: version, Release: release, Arch: arch, Ecosystem: ecosystem}
}

// want are values a reader finds in the document; zero fields are not checked.
type want struct {
	vendor, title, vendorSeverity, cvssVector string
	severity                                  typesv1.Severity
	classification                            typesv1.Classification
	cves, families, products, kbs, supersedes []string
	packages                                  []*typesv1.PackageVersion
	somePackages                              []*typesv1.PackageVersion
	cvss                                      float64
	released, updated                         string
	reboot                                    bool
}

func check(t *testing.T, p *typesv1.Patch, w want) {
	t.Helper()
	require.NotNil(t, p)
	require.Equal(t, w.vendor, p.GetVendor())
	if w.title != "" {
		require.Equal(t, w.title, p.GetTitle())
	}
	require.Equal(t, w.severity, p.GetSeverity())
	require.Equal(t, w.classification, p.GetClassification())
	require.Equal(t, w.vendorSeverity, p.GetVendorSeverity())
	require.Equal(t, w.cves, p.GetCves())
	require.Equal(t, w.families, p.GetOsFamilies())
	require.Equal(t, w.families[0], p.GetOsFamily())
	if w.products != nil {
		require.Equal(t, w.products, p.GetProducts())
	}
	require.Equal(t, w.kbs, p.GetKbs())
	require.Equal(t, w.supersedes, p.GetSupersedes())
	if w.packages != nil {
		require.Len(t, p.GetPackages(), len(w.packages))
		for i := range w.packages {
			require.Equal(t, w.packages[i].String(), p.GetPackages()[i].String())
		}
	}
	for _, sp := range w.somePackages {
		found := false
		for _, got := range p.GetPackages() {
			found = found || got.String() == sp.String()
		}
		require.True(t, found, "package %v among %v", sp, p.GetPackages())
	}
	require.InDelta(t, w.cvss, p.GetCvssScore(), 0.001)
	require.Equal(t, w.cvssVector, p.GetCvssVector())
	require.True(t, utc(w.released).Equal(p.GetReleasedAt().AsTime()), "released %s, got %s", w.released, p.GetReleasedAt().AsTime())
	if w.updated == "" {
		require.Nil(t, p.GetUpdatedAt())
	} else {
		require.True(t, utc(w.updated).Equal(p.GetUpdatedAt().AsTime()), "updated %s, got %s", w.updated, p.GetUpdatedAt().AsTime())
	}
	require.Equal(t, w.reboot, p.GetRebootRequired())
}

const (
	security = typesv1.Classification_CLASSIFICATION_SECURITY
	critical = typesv1.Severity_SEVERITY_CRITICAL
	high     = typesv1.Severity_SEVERITY_HIGH
	medium   = typesv1.Severity_SEVERITY_MEDIUM
	low      = typesv1.Severity_SEVERITY_LOW
	none     = typesv1.Severity_SEVERITY_UNSPECIFIED
)

// TestConformance parses every document of the shared fixtures and checks the normalized
// fields against what the documents say (the comments quote where).
func TestConformance(t *testing.T) {
	// Every fixture is covered below; a new one fails here until it is.
	files, err := filepath.Glob(filepath.Join(fixtures, "*", "*"))
	require.NoError(t, err)
	require.Len(t, files, 11, "the shared fixtures must be at %s", fixtures)

	t.Run("Red Hat RHSA-2021:5186 (CSAF)", func(t *testing.T) {
		format, ps := parseFixture(t, "csaf/rhsa-2021_5186.json")
		require.Equal(t, advisory.CSAF, format)
		require.Len(t, ps, 1)
		check(t, ps["RHSA-2021:5186"], want{
			vendor: "Red Hat Product Security", // document.publisher.name
			title:  "Red Hat Security Advisory: OpenShift Container Platform 4.6.52 security update",
			// document.aggregate_severity.text "Critical"
			vendorSeverity: "Critical", severity: critical, classification: security,
			cves:     []string{"CVE-2021-4104", "CVE-2021-4125"}, // vulnerabilities[].cve
			families: []string{"red-hat-openshift-container-platform-4.6"},
			products: []string{"Red Hat OpenShift Container Platform 4.6"},    // product_tree product_name branch
			released: "2021-12-16T22:34:00Z", updated: "2021-12-16T22:34:00Z", // tracking dates
		})
	})
	t.Run("Red Hat RHSA-2019:1862, an informational notice without vulnerabilities (CSAF)", func(t *testing.T) {
		_, ps := parseFixture(t, "csaf/rhsa-2019_1862.json")
		check(t, ps["RHSA-2019:1862"], want{
			vendor: "Red Hat Product Security", vendorSeverity: "Low", severity: low,
			classification: security, // RHSA: a security advisory id
			families:       []string{"red-hat-openshift-enterprise"},
			products:       []string{"Red Hat OpenShift Enterprise"},
			released:       "2019-07-26T06:38:00Z", updated: "2019-07-26T06:38:00Z",
		})
	})
	t.Run("Cisco cisco-sa-20180328-smi2 (CSAF)", func(t *testing.T) {
		_, ps := parseFixture(t, "csaf/cisco-sa-20180328-smi2.json")
		check(t, ps["cisco-sa-20180328-smi2"], want{
			vendor: "Cisco PSIRT", severity: critical, classification: security,
			cves: []string{"CVE-2018-0171"},
			// scores[0].cvss_v3: baseScore 9.8
			cvss: 9.8, cvssVector: "CVSS:3.0/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H",
			families: []string{"cisco-ios-xe-software", "ios"},
			products: []string{"Cisco IOS XE Software", "IOS"},
			released: "2018-03-28T16:00:00Z", updated: "2018-04-17T15:08:41Z",
		})
	})
	t.Run("BSI BSI-2022-0001 (CSAF)", func(t *testing.T) {
		_, ps := parseFixture(t, "csaf/bsi-2022-0001.json")
		check(t, ps["BSI-2022-0001"], want{
			vendor: "Bundesamt für Sicherheit in der Informationstechnik", vendorSeverity: "Moderate",
			severity: medium, classification: security, cves: []string{"CVE-2022-27193"},
			cvss: 6.1, cvssVector: "CVSS:3.1/AV:L/AC:L/PR:N/UI:R/S:U/C:H/I:N/A:L/E:F/RL:O/RC:C",
			families: []string{"cvrf-csaf-converter"}, products: []string{"CVRF-CSAF-Converter"},
			released: "2022-03-17T13:03:42.105Z", updated: "2022-03-17T13:03:42.105Z",
		})
	})
	t.Run("Microsoft msrc_CVE-2025-49706: one patch per KB (CSAF)", func(t *testing.T) {
		_, ps := parseFixture(t, "csaf/msrc_cve-2025-49706.json")
		require.Len(t, ps, 3)
		// remediations: vendor_fix support.microsoft.com/help/5002744 for product 3 (SharePoint
		// Enterprise Server 2016), 5002741 for 2 (Server 2019), 5002751 for 1 (Subscription Edition).
		for kb, product := range map[string]string{
			"KB5002744": "Microsoft SharePoint Enterprise Server 2016",
			"KB5002741": "Microsoft SharePoint Server 2019",
			"KB5002751": "Microsoft SharePoint Server Subscription Edition",
		} {
			check(t, ps[kb], want{
				vendor: "Microsoft Security Response Center", title: kb + ": Microsoft SharePoint Server Spoofing Vulnerability",
				vendorSeverity: "Important", severity: high, classification: security,
				cves: []string{"CVE-2025-49706"}, kbs: []string{kb},
				cvss: 6.5, cvssVector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:L/I:L/A:N/E:F/RL:O/RC:C",
				families: []string{advisory.Slug(product)}, products: []string{product},
				released: "2025-07-08T07:00:00Z", updated: "2025-07-31T07:00:00Z",
			})
			require.Equal(t, "msrc_CVE-2025-49706", ps[kb].GetSources()[0].GetDocumentId())
		}
	})
	t.Run("Ubuntu USN-2300-1: CVE from the upstream ids, CVSS computed from the vector (OSV)", func(t *testing.T) {
		format, ps := parseFixture(t, "osv/USN-2300-1.json")
		require.Equal(t, advisory.OSV, format)
		check(t, ps["USN-2300-1"], want{
			vendor: "Ubuntu", title: "lzo2 vulnerability",
			// cves_map: Ubuntu priority "medium"; CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H is 8.8
			vendorSeverity: "medium", severity: medium, classification: security,
			cves: []string{"CVE-2014-4607"}, // upstream: UBUNTU-CVE-2014-4607 (aliases is empty)
			cvss: 8.8, cvssVector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:R/S:U/C:H/I:H/A:H",
			families: []string{"ubuntu-14.04"}, products: []string{"lzo2"},
			packages: []*typesv1.PackageVersion{
				pkg("liblzo2-2", "", "2.06", "1.2ubuntu1.1", "", "Ubuntu:14.04:LTS"),
				pkg("lzo2", "", "2.06", "1.2ubuntu1.1", "", "Ubuntu:14.04:LTS"),
			},
			released: "2014-07-24T13:15:23Z", updated: "2026-04-27T14:11:21Z",
		})
	})
	t.Run("Ubuntu USN-6500-1: two releases, five CVEs (OSV)", func(t *testing.T) {
		_, ps := parseFixture(t, "osv/USN-6500-1.json")
		check(t, ps["USN-6500-1"], want{
			vendor: "Ubuntu", title: "squid vulnerabilities", vendorSeverity: "medium", severity: medium, classification: security,
			cves: []string{"CVE-2023-46724", "CVE-2023-46728", "CVE-2023-46846", "CVE-2023-46847", "CVE-2023-46848"},
			// the highest CVSS in cves_map: CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:L/A:N is 9.3
			cvss: 9.3, cvssVector: "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:C/C:H/I:L/A:N",
			families: []string{"ubuntu-20.04", "ubuntu-22.04"}, products: []string{"squid"},
			somePackages: []*typesv1.PackageVersion{
				pkg("squid", "", "4.10", "1ubuntu1.8", "", "Ubuntu:20.04:LTS"),
				pkg("squid", "", "5.7", "0ubuntu0.22.04.2", "", "Ubuntu:22.04:LTS"),
				pkg("squid-openssl", "", "5.7", "0ubuntu0.22.04.2", "", "Ubuntu:22.04:LTS"),
			},
			released: "2023-11-21T15:42:49Z", updated: "2026-04-27T14:11:32Z",
		})
		require.Len(t, ps["USN-6500-1"].GetPackages(), 11, "squid and 4 binaries on 20.04, squid and 5 binaries on 22.04")
	})
	t.Run("Ubuntu USN-7500-1: a kernel needs a reboot (OSV)", func(t *testing.T) {
		_, ps := parseFixture(t, "osv/USN-7500-1.json")
		check(t, ps["USN-7500-1"], want{
			vendor: "Ubuntu", title: "linux-azure vulnerabilities", severity: none, classification: security,
			cves:     []string{"CVE-2024-56653", "CVE-2025-21953"},
			families: []string{"ubuntu-24.04"}, products: []string{"linux-azure"},
			somePackages: []*typesv1.PackageVersion{
				pkg("linux-azure", "", "6.8.0", "1028.33", "", "Ubuntu:24.04:LTS"),
				pkg("linux-image-unsigned-6.8.0-1028-azure", "", "6.8.0", "1028.33", "", "Ubuntu:24.04:LTS"),
			},
			released: "2025-05-07T09:21:51.696137Z", updated: "2025-07-16T04:48:52Z", reboot: true,
		})
	})
	t.Run("Debian DSA-3029-1: CVE from the aliases (OSV)", func(t *testing.T) {
		_, ps := parseFixture(t, "osv/DSA-3029-1.json")
		check(t, ps["DSA-3029-1"], want{
			vendor: "Debian", title: "nginx - security update", severity: none, classification: security,
			cves: []string{"CVE-2014-3616"}, families: []string{"debian-7"}, products: []string{"nginx"},
			packages: []*typesv1.PackageVersion{pkg("nginx", "", "1.2.1", "2.2+wheezy3", "", "Debian:7")},
			released: "2014-09-20T00:00:00Z", // no "modified"
		})
	})
	t.Run("Go GO-2022-0969: semver fixes, year-1 modified means unknown (OSV)", func(t *testing.T) {
		_, ps := parseFixture(t, "osv/GO-2022-0969.json")
		check(t, ps["GO-2022-0969"], want{
			vendor: "Go", severity: none, classification: security,
			cves: []string{"CVE-2022-27664"}, families: []string{"go"}, products: []string{"golang.org/x/net", "stdlib"},
			packages: []*typesv1.PackageVersion{
				pkg("golang.org/x/net", "", "0.0.0-20220906165146-f3363e06e74c", "", "", "Go"),
				pkg("stdlib", "", "1.18.6", "", "", "Go"),
				pkg("stdlib", "", "1.19.1", "", "", "Go"),
			},
			released: "2022-09-12T20:23:06Z",
		})
	})
	t.Run("Rocky Linux 8 updateinfo.xml: three updates", func(t *testing.T) {
		format, ps := parseFixture(t, "updateinfo/rocky-updateinfo.xml")
		require.Equal(t, advisory.UpdateInfo, format)
		require.Len(t, ps, 3)
		check(t, ps["RLSA-2021:2575"], want{
			vendor: "Rocky Linux", title: "Moderate: lz4 security update", vendorSeverity: "Moderate", severity: medium,
			classification: security, cves: []string{"CVE-2021-3520"},
			families: []string{"rocky-linux-8"}, products: []string{"Rocky Linux 8"},
			packages: []*typesv1.PackageVersion{pkg("lz4", "0", "1.8.3", "3.el8_4", "x86_64", "Rocky Linux 8")},
			// issued 2021-07-22 03:13:55, updated 2021-06-29 00:00:00 (earlier: as published)
			released: "2021-07-22T03:13:55Z", updated: "2021-06-29T00:00:00Z",
		})
		check(t, ps["RLSA-2021:3057"], want{
			vendor: "Rocky Linux", vendorSeverity: "Important", severity: high, classification: security,
			cves:     []string{"CVE-2021-22543", "CVE-2021-22555", "CVE-2021-3609"},
			families: []string{"rocky-linux-8"},
			packages: []*typesv1.PackageVersion{pkg("kernel", "0", "4.18.0", "305.12.1.el8_4", "x86_64", "Rocky Linux 8")},
			released: "2021-08-12T21:14:23Z", updated: "2021-08-10T00:00:00Z", reboot: true,
		})
		check(t, ps["RLSA-2019:1972"], want{
			vendor: "Rocky Linux", vendorSeverity: "Important", severity: high, classification: security,
			cves: []string{"CVE-2019-8324"}, families: []string{"rocky-linux-8"},
			products: []string{"Rocky Linux 8", "none-appstream-rpms__ruby"},
			packages: []*typesv1.PackageVersion{
				pkg("rubygem-abrt", "0", "0.3.0", "4.module+el8.5.0+738+032c9c02", "noarch", "Rocky Linux 8"),
				pkg("rubygem-bson", "0", "4.3.0", "2.module+el8.4.0+592+03ff458a", "x86_64", "Rocky Linux 8"),
			},
			released: "2019-07-30T11:16:25Z", updated: "2023-02-02T12:55:31Z",
		})
	})
}
