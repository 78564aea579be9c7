package advisory

import (
	"cmp"
	"strings"

	"github.com/ossf/osv-schema/bindings/go/osvschema"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/structpb"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// osvUnmarshal tolerates fields newer schema versions add.
var osvUnmarshal = protojson.UnmarshalOptions{DiscardUnknown: true}

// osvVendors names the publisher of OSV ids by prefix.
var osvVendors = []struct{ prefix, vendor string }{
	{"USN-", "Ubuntu"}, {"UBUNTU-", "Ubuntu"}, {"DSA-", "Debian"}, {"DLA-", "Debian"}, {"DTSA-", "Debian"},
	{"GO-", "Go"}, {"ALSA-", "AlmaLinux"}, {"ALBA-", "AlmaLinux"}, {"ALEA-", "AlmaLinux"},
	{"RLSA-", "Rocky Linux"}, {"RXSA-", "Rocky Linux"}, {"GHSA-", "GitHub"}, {"PYSEC-", "PyPI"},
	{"RUSTSEC-", "RustSec"}, {"ALPINE-", "Alpine"}, {"RHSA-", "Red Hat"}, {"SUSE-", "SUSE"},
}

// parseOSV reads one OSV vulnerability as one patch: the id, its fixed versions per package
// and ecosystem, the vendor's priority (Ubuntu's) or the CVSS score computed from the vector.
func parseOSV(doc Document) ([]*typesv1.Patch, string, error) {
	var v osvschema.Vulnerability
	if err := osvUnmarshal.Unmarshal(doc.Data, &v); err != nil {
		return nil, "", docErr(doc.Name, "/", "not an OSV document: %v", err)
	}
	if v.GetId() == "" {
		return nil, "", docErr(doc.Name, "/id", "required")
	}
	if len(v.GetAffected()) == 0 {
		return nil, "", docErr(doc.Name, "/affected", "at least one affected package is required")
	}
	p := &typesv1.Patch{
		Id:             v.GetId(),
		Title:          cmp.Or(v.GetSummary(), firstLine(v.GetDetails())),
		Classification: typesv1.Classification_CLASSIFICATION_SECURITY,
		ReleasedAt:     timestamp(v.GetPublished().AsTime()),
		UpdatedAt:      timestamp(v.GetModified().AsTime()),
	}
	if v.GetPublished() == nil {
		p.ReleasedAt = nil
	}
	if v.GetModified() == nil {
		p.UpdatedAt = nil
	}
	for _, pv := range osvVendors {
		if strings.HasPrefix(v.GetId(), pv.prefix) {
			p.Vendor = pv.vendor
		}
	}
	p.Cves = append(cves(v.GetId()), cves(v.GetAliases()...)...)
	p.Cves = append(p.Cves, cves(v.GetUpstream()...)...)
	noteSeverity := func(sev []*osvschema.Severity) {
		for _, s := range sev {
			switch s.GetType() {
			case osvschema.Severity_CVSS_V3:
				if score, ok := cvss3BaseScore(s.GetScore()); ok && score > p.CvssScore {
					p.CvssScore, p.CvssVector = score, s.GetScore()
				}
			case osvschema.Severity_Ubuntu:
				if severityRank(s.GetScore()) > severityRank(p.VendorSeverity) {
					p.VendorSeverity = s.GetScore()
				}
			}
		}
	}
	noteSeverity(v.GetSeverity())
	packaged := 0
	for i, a := range v.GetAffected() {
		pkg := a.GetPackage()
		if pkg == nil && len(a.GetRanges()) > 0 {
			continue // a source repository's commits (GIT ranges), no package to install
		}
		if pkg.GetName() == "" || pkg.GetEcosystem() == "" {
			return nil, "", docErr(doc.Name, fieldf("/affected/%d/package", i), "name and ecosystem are required")
		}
		packaged++
		if p.Vendor == "" {
			p.Vendor, _, _ = strings.Cut(pkg.GetEcosystem(), ":")
		}
		p.Products = append(p.Products, pkg.GetName())
		p.OsFamilies = append(p.OsFamilies, Slug(pkg.GetEcosystem()))
		p.RebootRequired = p.RebootRequired || isKernel(pkg.GetName())
		noteSeverity(a.GetSeverity())
		for _, r := range a.GetRanges() {
			for _, e := range r.GetEvents() {
				if e.GetFixed() == "" {
					continue
				}
				pv := &typesv1.PackageVersion{Name: pkg.GetName(), Ecosystem: pkg.GetEcosystem()}
				if r.GetType() == osvschema.Range_ECOSYSTEM {
					pv.Epoch, pv.Version, pv.Release = splitVersion(e.GetFixed())
				} else {
					pv.Version = e.GetFixed()
				}
				p.Packages = append(p.Packages, pv)
			}
		}
		// Ubuntu lists the binary packages built from the fixed source package.
		for _, b := range structList(a.GetEcosystemSpecific(), "binaries") {
			name, version := structString(b, "binary_name"), structString(b, "binary_version")
			if name == "" || version == "" {
				continue
			}
			pv := &typesv1.PackageVersion{Name: name, Ecosystem: pkg.GetEcosystem()}
			pv.Epoch, pv.Version, pv.Release = splitVersion(version)
			p.Packages = append(p.Packages, pv)
			p.RebootRequired = p.RebootRequired || strings.HasPrefix(name, "linux-image")
		}
		// Ubuntu's per-CVE priorities and scores.
		if cm := structField(a.GetDatabaseSpecific(), "cves_map"); cm != nil {
			for _, c := range structList(cm.GetStructValue(), "cves") {
				p.Cves = append(p.Cves, cves(structString(c, "id"))...)
				for _, s := range structList(c, "severity") {
					switch structString(s, "type") {
					case "CVSS_V3":
						if score, ok := cvss3BaseScore(structString(s, "score")); ok && score > p.CvssScore {
							p.CvssScore, p.CvssVector = score, structString(s, "score")
						}
					case "Ubuntu":
						if severityRank(structString(s, "score")) > severityRank(p.VendorSeverity) {
							p.VendorSeverity = structString(s, "score")
						}
					}
				}
			}
		}
	}
	if packaged == 0 {
		return nil, "", docErr(doc.Name, "/affected", "no affected entry names a package (only source repositories): nothing to patch")
	}
	return []*typesv1.Patch{p}, v.GetId(), nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	line, _, _ := strings.Cut(s, "\n")
	if len(line) > 200 {
		line = line[:200]
	}
	return line
}

func structField(s *structpb.Struct, name string) *structpb.Value {
	if s == nil {
		return nil
	}
	return s.GetFields()[name]
}

func structList(s *structpb.Struct, name string) []*structpb.Struct {
	v := structField(s, name)
	if v == nil {
		return nil
	}
	var out []*structpb.Struct
	for _, e := range v.GetListValue().GetValues() {
		if st := e.GetStructValue(); st != nil {
			out = append(out, st)
		}
	}
	return out
}

func structString(s *structpb.Struct, name string) string {
	return structField(s, name).GetStringValue()
}
