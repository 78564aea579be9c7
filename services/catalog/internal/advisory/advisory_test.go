package advisory_test

import (
	"io/fs"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/advisory"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
	"github.com/patchwave/patchwave/services/catalog/samplefeeds"
)

func sample(t *testing.T, name string) advisory.Document {
	t.Helper()
	data, err := fs.ReadFile(samplefeeds.Files, name)
	require.NoError(t, err)
	return advisory.Document{Name: name, Data: data}
}

func byID(ps []*typesv1.Patch) map[string]*typesv1.Patch {
	out := map[string]*typesv1.Patch{}
	for _, p := range ps {
		out[p.GetId()] = p
	}
	return out
}

func TestSampleFeedsParse(t *testing.T) {
	t.Run("the Amazon Linux updateinfo gives four patches with packages, severity, reboot and classification", func(t *testing.T) {
		format, ps, err := advisory.Parse(sample(t, "amazon-linux-2023/updateinfo.xml"), "")
		require.NoError(t, err)
		require.Equal(t, advisory.UpdateInfo, format)
		m := byID(ps)
		require.Len(t, m, 4)
		openssl := m["ALAS2023-2026-1001"]
		require.Equal(t, "Amazon Linux", openssl.GetVendor())
		require.Equal(t, []string{"amazon-linux-2023"}, openssl.GetOsFamilies())
		require.Equal(t, typesv1.Severity_SEVERITY_CRITICAL, openssl.GetSeverity())
		require.Equal(t, []string{"CVE-2026-21430", "CVE-2026-21431"}, openssl.GetCves())
		require.Equal(t, "openssl", openssl.GetPackages()[0].GetName())
		require.Equal(t, "1", openssl.GetPackages()[0].GetEpoch())
		require.Equal(t, "3.2.2", openssl.GetPackages()[0].GetVersion())
		require.Equal(t, "1.amzn2023.0.3", openssl.GetPackages()[0].GetRelease())
		require.False(t, openssl.GetRebootRequired())
		require.True(t, m["ALAS2023-2026-1007"].GetRebootRequired(), "reboot_suggested on the kernel package")
		require.Equal(t, typesv1.Classification_CLASSIFICATION_BUGFIX, m["ALAS2023-2026-0412"].GetClassification())
		require.Equal(t, typesv1.Classification_CLASSIFICATION_ENHANCEMENT, m["ALAS2023-2026-0088"].GetClassification())
		require.Equal(t, "2026-11-10T18:23:00Z", openssl.GetReleasedAt().AsTime().Format("2006-01-02T15:04:05Z"))
	})
	t.Run("the MSRC CVRF document gives one patch per KB with its CVEs, products and supersedence", func(t *testing.T) {
		format, ps, err := advisory.Parse(sample(t, "microsoft/2026-Nov.xml"), "")
		require.NoError(t, err)
		require.Equal(t, advisory.CVRF, format)
		m := byID(ps)
		require.Len(t, m, 2, "the Release Notes remediation names no new KB")
		ws22 := m["KB5070001"]
		require.Equal(t, []string{"CVE-2026-40001", "CVE-2026-40002"}, ws22.GetCves())
		require.Equal(t, []string{"windows-server-2022"}, ws22.GetOsFamilies(), "Server Core is the same family")
		require.Equal(t, []string{"Windows Server 2022", "Windows Server 2022 (Server Core installation)"}, ws22.GetProducts())
		require.Equal(t, []string{"KB5066001"}, ws22.GetSupersedes())
		require.Equal(t, typesv1.Severity_SEVERITY_CRITICAL, ws22.GetSeverity())
		require.InDelta(t, 9.8, ws22.GetCvssScore(), 0.001)
		require.True(t, ws22.GetRebootRequired())
		require.Equal(t, "2026-Nov", ws22.GetSources()[0].GetDocumentId())
		require.Equal(t, []string{"CVE-2026-40001"}, m["KB5070002"].GetCves())
	})
	t.Run("the Red Hat CSAF advisory reads the RHEL family from the CPE and the package from the purl", func(t *testing.T) {
		_, ps, err := advisory.Parse(sample(t, "redhat/rhsa-2026_1001.json"), advisory.CSAF)
		require.NoError(t, err)
		p := byID(ps)["RHSA-2026:1001"]
		require.Equal(t, []string{"rhel-9"}, p.GetOsFamilies())
		require.Equal(t, "sudo", p.GetPackages()[0].GetName())
		require.Equal(t, "1.9.5p2", p.GetPackages()[0].GetVersion())
		require.Equal(t, "10.el9_4", p.GetPackages()[0].GetRelease())
		require.Equal(t, "x86_64", p.GetPackages()[0].GetArch())
		require.InDelta(t, 7.8, p.GetCvssScore(), 0.001)
	})
	t.Run("the Ubuntu notice takes the highest Ubuntu priority and the computed CVSS score", func(t *testing.T) {
		_, ps, err := advisory.Parse(sample(t, "ubuntu/USN-7700-1.json"), "")
		require.NoError(t, err)
		p := byID(ps)["USN-7700-1"]
		require.Equal(t, "medium", p.GetVendorSeverity())
		require.InDelta(t, 5.9, p.GetCvssScore(), 0.001) // AV:N/AC:H/PR:N/UI:N/S:U/C:H/I:N/A:N
		require.Equal(t, []string{"CVE-2026-30001", "CVE-2026-30002"}, p.GetCves())
	})
}

func TestParseRefusesBadDocuments(t *testing.T) {
	tests := []struct {
		name, doc    string
		format       advisory.Format
		field, inMsg string
	}{
		{"an empty document", "", "", "/", "empty document"},
		{"neither JSON nor XML", "hello", "", "/", "neither JSON nor XML"},
		{"JSON that is neither CSAF nor OSV", `{"foo":1}`, "", "/", "neither CSAF"},
		{"an XML root that is no feed", `<rss/>`, "", "/rss", "root element must be"},
		{"an OSV document without an id", `{"id":"","affected":[]}`, advisory.OSV, "/id", "required"},
		{"an OSV document without affected packages", `{"id":"USN-1-1"}`, advisory.OSV, "/affected", "at least one affected"},
		{"an OSV package without an ecosystem", `{"id":"USN-1-1","affected":[{"package":{"name":"x"}}]}`, advisory.OSV, "/affected/0/package", "name and ecosystem"},
		{"OSV with a wrong type", `{"id":7}`, advisory.OSV, "/", "not an OSV document"},
		{"OSV with source repositories only", `{"id":"OSV-2026-1","affected":[{"ranges":[{"type":"GIT","repo":"https://git.example/x","events":[{"introduced":"0"},{"fixed":"abc"}]}]}]}`, advisory.OSV, "/affected", "no affected entry names a package"},
		{"a CSAF document missing its tracking", `{"document":{"csaf_version":"2.0","category":"csaf_base","title":"t","publisher":{"category":"vendor","name":"v","namespace":"https://v.example"}}}`, "", "/document", "CSAF schema"},
		{"an update without an id", `<updates><update type="security"><id> </id></update></updates>`, "", "updates/update[1]/id", "required"},
		{"an update with a bad date", `<updates><update type="security"><id>X-1</id><issued date="yesterday"/></update></updates>`, "", "updates/update[1]/issued/@date", "not a date"},
		{"a duplicate update id", `<updates><update><id>X-1</id><release>R 1</release></update><update><id>X-1</id></update></updates>`, "", "updates/update[2]/id", "duplicate of update[1]"},
		{"a package without a version", `<updates><update><id>X-1</id><pkglist><collection><name>R 1</name><package name="a"/></collection></pkglist></update></updates>`, "", "updates/update[1]/pkglist/collection[1]/package[1]", "name and version"},
		{"an updateinfo without updates", `<updates></updates>`, "", "updates/update", "at least one update"},
		{"a CVRF document without an id", `<cvrfdoc><DocumentTracking><InitialReleaseDate>2026-01-01</InitialReleaseDate></DocumentTracking></cvrfdoc>`, "", "cvrfdoc/DocumentTracking/Identification/ID", "required"},
		{"a CVRF fix for an unknown product", `<cvrfdoc><DocumentTracking><Identification><ID>2026-Jan</ID></Identification><InitialReleaseDate>2026-01-13T08:00:00</InitialReleaseDate></DocumentTracking><Vulnerability><CVE>CVE-2026-1111</CVE><Remediations><Remediation Type="Vendor Fix"><Description>5000001</Description><ProductID>999</ProductID></Remediation></Remediations></Vulnerability></cvrfdoc>`, "", "cvrfdoc/Vulnerability[1]/Remediations/Remediation[1]/ProductID", `"999": not in the product tree`},
		{"a CVRF document without KB fixes", `<cvrfdoc><DocumentTracking><Identification><ID>2026-Jan</ID></Identification><InitialReleaseDate>2026-01-13</InitialReleaseDate></DocumentTracking></cvrfdoc>`, "", "cvrfdoc/Vulnerability/Remediations", "no Vendor Fix"},
		{"a document of another format than named", `<updates><update><id>X</id></update></updates>`, advisory.CSAF, "/", "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name+" is refused naming the document and the field", func(t *testing.T) {
			_, ps, err := advisory.Parse(advisory.Document{Name: "bad.doc", Data: []byte(tt.doc)}, tt.format)
			require.Nil(t, ps)
			var de *advisory.Error
			require.ErrorAs(t, err, &de, "got %v", err)
			require.Equal(t, "bad.doc", de.Document)
			require.Equal(t, tt.field, de.Field, "error: %v", err)
			require.Contains(t, de.Rule, tt.inMsg)
			require.ErrorIs(t, err, domain.ErrInvalid)
			require.True(t, strings.HasPrefix(err.Error(), `document "bad.doc": field "`), err.Error())
		})
	}
}

func TestParseFormat(t *testing.T) {
	for _, f := range []string{"csaf", "OSV", " updateinfo ", "cvrf", ""} {
		_, err := advisory.ParseFormat(f)
		require.NoError(t, err, f)
	}
	_, err := advisory.ParseFormat("rss")
	require.ErrorIs(t, err, domain.ErrInvalid)
	require.ErrorContains(t, err, `format "rss": must be one of csaf, osv, updateinfo, cvrf`)
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"Rocky Linux 8": "rocky-linux-8", "Ubuntu:22.04:LTS": "ubuntu-22.04", "Debian:7": "debian-7",
		"Windows Server 2022 (Server Core installation)": "windows-server-2022", "Go": "go", "AlmaLinux:9": "almalinux-9",
	} {
		require.Equal(t, want, advisory.Slug(in), in)
	}
}
