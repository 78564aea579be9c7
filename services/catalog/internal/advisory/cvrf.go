package advisory

import (
	"bytes"
	"encoding/xml"
	"regexp"
	"strconv"
	"strings"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// CVRF 1.2 as MSRC publishes its monthly security update documents (the local names; the
// cvrf, prod and vuln namespaces are not checked, so 1.1 documents read the same).
type cvrfDoc struct {
	XMLName         xml.Name          `xml:"cvrfdoc"`
	Title           string            `xml:"DocumentTitle"`
	Type            string            `xml:"DocumentType"`
	Publisher       cvrfPublisher     `xml:"DocumentPublisher"`
	Tracking        cvrfTracking      `xml:"DocumentTracking"`
	Products        []cvrfProductName `xml:"ProductTree>FullProductName"`
	Branches        []cvrfBranch      `xml:"ProductTree>Branch"`
	Vulnerabilities []cvrfVuln        `xml:"Vulnerability"`
}

type cvrfPublisher struct {
	Type           string `xml:"Type,attr"`
	ContactDetails string `xml:"ContactDetails"`
}

type cvrfTracking struct {
	ID                 string `xml:"Identification>ID"`
	Status             string `xml:"Status"`
	Version            string `xml:"Version"`
	InitialReleaseDate string `xml:"InitialReleaseDate"`
	CurrentReleaseDate string `xml:"CurrentReleaseDate"`
}

type cvrfProductName struct {
	ProductID string `xml:"ProductID,attr"`
	Name      string `xml:",chardata"`
}

type cvrfBranch struct {
	Type     string            `xml:"Type,attr"`
	Name     string            `xml:"Name,attr"`
	Products []cvrfProductName `xml:"FullProductName"`
	Branches []cvrfBranch      `xml:"Branch"`
}

type cvrfVuln struct {
	Title        string            `xml:"Title"`
	CVE          string            `xml:"CVE"`
	Threats      []cvrfThreat      `xml:"Threats>Threat"`
	Scores       []cvrfScoreSet    `xml:"CVSSScoreSets>ScoreSet"`
	Remediations []cvrfRemediation `xml:"Remediations>Remediation"`
}

type cvrfThreat struct {
	Type        string   `xml:"Type,attr"`
	Description string   `xml:"Description"`
	ProductIDs  []string `xml:"ProductID"`
}

type cvrfScoreSet struct {
	BaseScore  string   `xml:"BaseScore"`
	Vector     string   `xml:"Vector"`
	ProductIDs []string `xml:"ProductID"`
}

type cvrfRemediation struct {
	Type            string   `xml:"Type,attr"`
	Description     string   `xml:"Description"`
	URL             string   `xml:"URL"`
	Supercedence    string   `xml:"Supercedence"`
	ProductIDs      []string `xml:"ProductID"`
	RestartRequired string   `xml:"RestartRequired"`
	SubType         string   `xml:"SubType"`
}

var kbNumber = regexp.MustCompile(`^(?i:KB)?(\d{6,8})$`)

// parseCVRF reads an MSRC CVRF document: one patch per KB article named by a "Vendor Fix"
// remediation, with the products, CVEs, the highest severity and CVSS score of the
// vulnerabilities it fixes, the reboot it needs and the KBs it supersedes.
func parseCVRF(doc Document) ([]*typesv1.Patch, string, error) {
	var d cvrfDoc
	if err := xml.NewDecoder(bytes.NewReader(doc.Data)).Decode(&d); err != nil {
		return nil, "", docErr(doc.Name, "cvrfdoc", "not a CVRF document: %v", err)
	}
	docID := strings.TrimSpace(d.Tracking.ID)
	if docID == "" {
		return nil, "", docErr(doc.Name, "cvrfdoc/DocumentTracking/Identification/ID", "required")
	}
	released, err := parseLooseTime(d.Tracking.InitialReleaseDate)
	if err != nil || released.IsZero() {
		return nil, "", docErr(doc.Name, "cvrfdoc/DocumentTracking/InitialReleaseDate", "%q: required, a date", d.Tracking.InitialReleaseDate)
	}
	updated, err := parseLooseTime(d.Tracking.CurrentReleaseDate)
	if err != nil {
		return nil, "", docErr(doc.Name, "cvrfdoc/DocumentTracking/CurrentReleaseDate", "%q: %v", d.Tracking.CurrentReleaseDate, err)
	}
	names := map[string]string{}
	for _, p := range d.Products {
		names[p.ProductID] = strings.TrimSpace(p.Name)
	}
	var walk func([]cvrfBranch)
	walk = func(bs []cvrfBranch) {
		for _, b := range bs {
			for _, p := range b.Products {
				if _, ok := names[p.ProductID]; !ok {
					names[p.ProductID] = strings.TrimSpace(p.Name)
				}
			}
			walk(b.Branches)
		}
	}
	walk(d.Branches)

	byKB := map[string]*typesv1.Patch{}
	var order []string
	for vi, v := range d.Vulnerabilities {
		for ri, r := range v.Remediations {
			if !strings.EqualFold(strings.TrimSpace(r.Type), "Vendor Fix") {
				continue
			}
			m := kbNumber.FindStringSubmatch(strings.TrimSpace(r.Description))
			if m == nil {
				continue // a fix named by a build number or a link only, not a KB
			}
			if len(r.ProductIDs) == 0 {
				return nil, "", docErr(doc.Name, fieldf("cvrfdoc/Vulnerability[%d]/Remediations/Remediation[%d]/ProductID", vi+1, ri+1), "at least one product is required")
			}
			kb := "KB" + m[1]
			p := byKB[kb]
			if p == nil {
				p = &typesv1.Patch{
					Id: kb, Vendor: "Microsoft", Kbs: []string{kb},
					Title:          kb + ": " + strings.TrimSpace(d.Title),
					Classification: typesv1.Classification_CLASSIFICATION_SECURITY,
					ReleasedAt:     timestamp(released), UpdatedAt: timestamp(updated),
				}
				byKB[kb] = p
				order = append(order, kb)
			}
			if strings.TrimSpace(v.CVE) != "" {
				p.Cves = append(p.Cves, strings.TrimSpace(v.CVE))
			}
			ids := map[string]bool{}
			for _, pid := range r.ProductIDs {
				pid = strings.TrimSpace(pid)
				ids[pid] = true
				name := names[pid]
				if name == "" {
					return nil, "", docErr(doc.Name, fieldf("cvrfdoc/Vulnerability[%d]/Remediations/Remediation[%d]/ProductID", vi+1, ri+1), "%q: not in the product tree", pid)
				}
				p.Products = append(p.Products, name)
				p.OsFamilies = append(p.OsFamilies, Slug(name))
			}
			p.RebootRequired = p.RebootRequired || isTrue(r.RestartRequired)
			for _, s := range strings.FieldsFunc(r.Supercedence, func(c rune) bool { return c == ',' || c == ';' || c == ' ' }) {
				if sm := kbNumber.FindStringSubmatch(s); sm != nil {
					p.Supersedes = append(p.Supersedes, "KB"+sm[1])
				}
			}
			for _, t := range v.Threats {
				if strings.EqualFold(t.Type, "Severity") && overlaps(t.ProductIDs, ids) && severityRank(t.Description) > severityRank(p.VendorSeverity) {
					p.VendorSeverity = strings.TrimSpace(t.Description)
				}
			}
			for si, s := range v.Scores {
				if !overlaps(s.ProductIDs, ids) {
					continue
				}
				score, err := strconv.ParseFloat(strings.TrimSpace(s.BaseScore), 64)
				if err != nil || score < 0 || score > 10 {
					return nil, "", docErr(doc.Name, fieldf("cvrfdoc/Vulnerability[%d]/CVSSScoreSets/ScoreSet[%d]/BaseScore", vi+1, si+1), "%q: must be a number from 0 to 10", s.BaseScore)
				}
				if score > p.CvssScore {
					p.CvssScore, p.CvssVector = score, strings.TrimSpace(s.Vector)
				}
			}
		}
	}
	out := make([]*typesv1.Patch, 0, len(order))
	for _, kb := range order {
		out = append(out, byKB[kb])
	}
	if len(out) == 0 {
		return nil, "", docErr(doc.Name, "cvrfdoc/Vulnerability/Remediations", "no Vendor Fix remediation names a KB article")
	}
	return out, docID, nil
}

func overlaps(ids []string, set map[string]bool) bool {
	for _, id := range ids {
		if set[strings.TrimSpace(id)] {
			return true
		}
	}
	return false
}
