package advisory

import (
	"cmp"
	"encoding/json"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/gocsaf/csaf/v3/csaf"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// kbPattern finds Microsoft KB numbers in remediation URLs and details
// ("https://support.microsoft.com/help/5002744", "…Search.aspx?q=KB5062553", "KB5062553").
var kbPattern = regexp.MustCompile(`(?i)(?:\bKB|/help/|q=KB)(\d{6,8})\b`)

// nevraPattern reads an RPM "name-epoch:version-release.arch" (Red Hat product ids).
var nevraPattern = regexp.MustCompile(`([A-Za-z0-9_.+-]+)-(\d+):([^-:]+)-([^-:]+)\.([a-z0-9_]+)$`)

// rhelCPE reads the RHEL major version from a CPE ("cpe:/o:redhat:enterprise_linux:8::baseos").
var rhelCPE = regexp.MustCompile(`^cpe:(?:/|2\.3:)[ao]:redhat:enterprise_linux:(\d+)`)

type csafProduct struct {
	name, line, cpe, purl, ref string
}

func str(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// parseCSAF reads a CSAF 2.0 document. It is validated against the CSAF JSON schema (built
// into the CSAF module, offline) first; the first violations name the field. A Microsoft
// document whose fixes are KB articles gives one patch per KB; any other document one patch,
// its tracking id.
func parseCSAF(doc Document) ([]*typesv1.Patch, string, error) {
	var generic any
	if err := json.Unmarshal(doc.Data, &generic); err != nil {
		return nil, "", docErr(doc.Name, "/", "not valid JSON: %v", err)
	}
	problems, err := csaf.ValidateCSAF(generic)
	if err != nil {
		return nil, "", docErr(doc.Name, "/", "CSAF schema validation failed: %v", err)
	}
	if len(problems) > 0 {
		field, rule, _ := strings.Cut(problems[0], ": ")
		if len(problems) > 1 {
			rule += " (and " + strconv.Itoa(len(problems)-1) + " more schema violations)"
		}
		return nil, "", docErr(doc.Name, cmp.Or(field, "/"), "CSAF schema: %s", rule)
	}
	var adv csaf.Advisory
	if err := json.Unmarshal(doc.Data, &adv); err != nil {
		return nil, "", docErr(doc.Name, "/", "CSAF document: %v", err)
	}
	d := adv.Document
	if d == nil || d.Tracking == nil || d.Tracking.ID == nil || d.Publisher == nil {
		return nil, "", docErr(doc.Name, "/document/tracking/id", "required")
	}
	id := string(*d.Tracking.ID)
	released, err := parseLooseTime(str(d.Tracking.InitialReleaseDate))
	if err != nil {
		return nil, "", docErr(doc.Name, "/document/tracking/initial_release_date", "%v", err)
	}
	updated, err := parseLooseTime(str(d.Tracking.CurrentReleaseDate))
	if err != nil {
		return nil, "", docErr(doc.Name, "/document/tracking/current_release_date", "%v", err)
	}
	products := indexProducts(adv.ProductTree)

	base := &typesv1.Patch{
		Id: id, Vendor: str(d.Publisher.Name), Title: str(d.Title),
		ReleasedAt: timestamp(released), UpdatedAt: timestamp(updated),
		Classification: classificationFromID(id),
	}
	if d.AggregateSeverity != nil {
		base.VendorSeverity = str(d.AggregateSeverity.Text)
	}
	if base.Classification == typesv1.Classification_CLASSIFICATION_UNSPECIFIED {
		category := ""
		if d.Category != nil {
			category = string(*d.Category)
		}
		if category == "csaf_security_advisory" || category == "csaf_vex" || len(adv.Vulnerabilities) > 0 {
			base.Classification = typesv1.Classification_CLASSIFICATION_SECURITY
		}
	}

	// What the document applies to: the products it lists as affected or fixed.
	relevant := map[string]bool{}
	fixed := map[string]bool{}
	for _, v := range adv.Vulnerabilities {
		if v.CVE != nil {
			base.Cves = append(base.Cves, string(*v.CVE))
		}
		if ps := v.ProductStatus; ps != nil {
			for _, list := range []*csaf.Products{ps.FirstAffected, ps.KnownAffected, ps.LastAffected, ps.Recommended} {
				addProducts(relevant, list)
			}
			for _, list := range []*csaf.Products{ps.Fixed, ps.FirstFixed} {
				addProducts(relevant, list)
				addProducts(fixed, list)
			}
		}
		for _, t := range v.Threats {
			if t.Category != nil && *t.Category == csaf.CSAFThreatCategoryImpact && base.VendorSeverity == "" {
				if severityRank(str(t.Details)) > severityRank(base.VendorSeverity) {
					base.VendorSeverity = str(t.Details)
				}
			}
		}
		for _, s := range v.Scores {
			noteCSAFScore(base, s)
		}
		for _, r := range v.Remediations {
			if r.RestartRequired != nil && r.RestartRequired.Category != nil {
				switch *r.RestartRequired.Category {
				case csaf.CSAFRestartRequiredCategoryMachine, csaf.CSAFRestartRequiredCategorySystem:
					base.RebootRequired = true
				}
			}
		}
	}
	if len(relevant) == 0 {
		for pid := range products {
			relevant[pid] = true
		}
	}
	applyProducts(base, products, relevant)
	for pid := range fixed {
		if pv := packageOf(products[pid]); pv != nil {
			base.Packages = append(base.Packages, pv)
			base.RebootRequired = base.RebootRequired || isKernel(pv.Name)
		}
	}

	if kbs := microsoftKBs(d, adv.Vulnerabilities); len(kbs) > 0 {
		return kbPatches(base, kbs, products, adv.Vulnerabilities), id, nil
	}
	return []*typesv1.Patch{base}, id, nil
}

func addProducts(set map[string]bool, list *csaf.Products) {
	if list == nil {
		return
	}
	for _, p := range *list {
		if p != nil {
			set[string(*p)] = true
		}
	}
}

func noteCSAFScore(p *typesv1.Patch, s *csaf.Score) {
	switch {
	case s.CVSS3 != nil && s.CVSS3.BaseScore != nil:
		if *s.CVSS3.BaseScore > p.CvssScore {
			p.CvssScore = *s.CVSS3.BaseScore
			if s.CVSS3.VectorString != nil {
				p.CvssVector = string(*s.CVSS3.VectorString)
			}
		}
	case s.CVSS2 != nil && s.CVSS2.BaseScore != nil:
		if *s.CVSS2.BaseScore > p.CvssScore {
			p.CvssScore = *s.CVSS2.BaseScore
			if s.CVSS2.VectorString != nil {
				p.CvssVector = string(*s.CVSS2.VectorString)
			}
		}
	}
}

// indexProducts maps every product id of the tree to its name, its product line (the nearest
// product_name branch, or product_family), and its identification helpers.
func indexProducts(pt *csaf.ProductTree) map[string]csafProduct {
	out := map[string]csafProduct{}
	if pt == nil {
		return out
	}
	var walk func(bs csaf.Branches, line, family string)
	walk = func(bs csaf.Branches, line, family string) {
		for _, b := range bs {
			if b == nil {
				continue
			}
			l, f := line, family
			if b.Category != nil {
				switch *b.Category {
				case csaf.CSAFBranchCategoryProductName:
					l = str(b.Name)
				case csaf.CSAFBranchCategoryProductFamily:
					f = str(b.Name)
				}
			}
			if b.Product != nil {
				addFullName(out, b.Product, cmp.Or(l, f))
			}
			walk(b.Branches, l, f)
		}
	}
	walk(pt.Branches, "", "")
	if pt.FullProductNames != nil {
		for _, fpn := range *pt.FullProductNames {
			addFullName(out, fpn, "")
		}
	}
	if pt.RelationShips != nil {
		for _, r := range *pt.RelationShips {
			if r == nil || r.FullProductName == nil || r.FullProductName.ProductID == nil {
				continue
			}
			parent := out[str((*string)(r.RelatesToProductReference))]
			component := out[str((*string)(r.ProductReference))]
			out[string(*r.FullProductName.ProductID)] = csafProduct{
				name: str(r.FullProductName.Name), line: cmp.Or(parent.line, parent.name),
				cpe: parent.cpe, purl: component.purl, ref: str((*string)(r.ProductReference)),
			}
		}
	}
	return out
}

func addFullName(out map[string]csafProduct, fpn *csaf.FullProductName, line string) {
	if fpn == nil || fpn.ProductID == nil {
		return
	}
	p := csafProduct{name: str(fpn.Name), line: cmp.Or(line, str(fpn.Name))}
	if h := fpn.ProductIdentificationHelper; h != nil {
		if h.CPE != nil {
			p.cpe = string(*h.CPE)
		}
		if h.PURL != nil {
			p.purl = string(*h.PURL)
		}
	}
	out[string(*fpn.ProductID)] = p
}

// familyOf names a product line's OS family: RHEL from its CPE, otherwise the line's slug.
func familyOf(p csafProduct) string {
	if m := rhelCPE.FindStringSubmatch(p.cpe); m != nil {
		return "rhel-" + m[1]
	}
	return Slug(p.line)
}

func applyProducts(p *typesv1.Patch, products map[string]csafProduct, ids map[string]bool) {
	for pid := range ids {
		prod, ok := products[pid]
		if !ok {
			continue
		}
		p.Products = append(p.Products, prod.line)
		if f := familyOf(prod); f != "" {
			p.OsFamilies = append(p.OsFamilies, f)
		}
	}
}

// packageOf reads a fixed package from a product's purl (pkg:rpm/…, pkg:deb/…) or from a Red
// Hat style "name-epoch:version-release.arch" product reference.
func packageOf(p csafProduct) *typesv1.PackageVersion {
	if strings.HasPrefix(p.purl, "pkg:rpm/") || strings.HasPrefix(p.purl, "pkg:deb/") {
		rest := strings.TrimPrefix(strings.TrimPrefix(p.purl, "pkg:rpm/"), "pkg:deb/")
		rest, query, _ := strings.Cut(rest, "?")
		path, version, ok := strings.Cut(rest, "@")
		if !ok {
			return nil
		}
		name := path[strings.LastIndex(path, "/")+1:]
		name, _ = url.PathUnescape(name)
		version, _ = url.PathUnescape(version)
		pv := &typesv1.PackageVersion{Name: name}
		pv.Epoch, pv.Version, pv.Release = splitVersion(version)
		if q, err := url.ParseQuery(query); err == nil {
			pv.Arch = q.Get("arch")
			pv.Epoch = cmp.Or(q.Get("epoch"), pv.Epoch)
			pv.Ecosystem = q.Get("distro")
		}
		return pv
	}
	if m := nevraPattern.FindStringSubmatch(p.ref); m != nil {
		name := m[1]
		if i := strings.LastIndex(name, ":"); i >= 0 {
			name = name[i+1:]
		}
		return &typesv1.PackageVersion{Name: name, Epoch: m[2], Version: m[3], Release: m[4], Arch: m[5]}
	}
	return nil
}

type kbFix struct {
	kb       string
	products map[string]bool
	cves     []string
	date     string
	reboot   bool
}

// microsoftKBs collects the KB articles of a Microsoft document's vendor fixes.
func microsoftKBs(d *csaf.Document, vulns csaf.Vulnerabilities) []*kbFix {
	if !strings.Contains(strings.ToLower(str(d.Publisher.Name)), "microsoft") {
		return nil
	}
	byKB := map[string]*kbFix{}
	var order []string
	for _, v := range vulns {
		for _, r := range v.Remediations {
			if r.Category == nil || *r.Category != csaf.CSAFRemediationCategoryVendorFix {
				continue
			}
			m := kbPattern.FindStringSubmatch(str(r.URL))
			if m == nil {
				m = kbPattern.FindStringSubmatch(str(r.Details))
			}
			if m == nil {
				continue
			}
			kb := "KB" + m[1]
			fix := byKB[kb]
			if fix == nil {
				fix = &kbFix{kb: kb, products: map[string]bool{}, date: str(r.Date)}
				byKB[kb] = fix
				order = append(order, kb)
			}
			addProducts(fix.products, r.ProductIds)
			if v.CVE != nil {
				fix.cves = append(fix.cves, string(*v.CVE))
			}
			if r.RestartRequired != nil && r.RestartRequired.Category != nil {
				c := *r.RestartRequired.Category
				fix.reboot = fix.reboot || c == csaf.CSAFRestartRequiredCategoryMachine || c == csaf.CSAFRestartRequiredCategorySystem
			}
		}
	}
	out := make([]*kbFix, 0, len(order))
	for _, kb := range order {
		out = append(out, byKB[kb])
	}
	return out
}

// kbPatches makes one patch per KB from the document-level patch.
func kbPatches(base *typesv1.Patch, kbs []*kbFix, products map[string]csafProduct, vulns csaf.Vulnerabilities) []*typesv1.Patch {
	out := make([]*typesv1.Patch, 0, len(kbs))
	for _, fix := range kbs {
		p := &typesv1.Patch{
			Id: fix.kb, Vendor: base.Vendor, Title: fix.kb + ": " + base.Title,
			Classification: typesv1.Classification_CLASSIFICATION_SECURITY,
			VendorSeverity: base.VendorSeverity, Cves: fix.cves, Kbs: []string{fix.kb},
			ReleasedAt: base.ReleasedAt, UpdatedAt: base.UpdatedAt, RebootRequired: fix.reboot,
		}
		if t, err := parseLooseTime(fix.date); err == nil && !t.IsZero() {
			p.ReleasedAt = timestamp(t)
		}
		applyProducts(p, products, fix.products)
		for _, v := range vulns {
			for _, s := range v.Scores {
				if s.Products != nil && slices.ContainsFunc(*s.Products, func(pid *csaf.ProductID) bool { return pid != nil && fix.products[string(*pid)] }) {
					noteCSAFScore(p, s)
				}
			}
		}
		out = append(out, p)
	}
	return out
}
