package advisory

import (
	"bytes"
	"encoding/xml"
	"regexp"
	"strings"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// updateinfo.xml as yum/dnf repositories publish it (Amazon Linux, Rocky, Alma, Oracle...).
type uiUpdates struct {
	XMLName xml.Name   `xml:"updates"`
	Updates []uiUpdate `xml:"update"`
}

type uiUpdate struct {
	From            string        `xml:"from,attr"`
	Status          string        `xml:"status,attr"`
	Type            string        `xml:"type,attr"`
	ID              string        `xml:"id"`
	Title           string        `xml:"title"`
	Issued          uiDate        `xml:"issued"`
	Updated         uiDate        `xml:"updated"`
	Release         string        `xml:"release"`
	Severity        string        `xml:"severity"`
	Summary         string        `xml:"summary"`
	RebootSuggested string        `xml:"reboot_suggested"`
	References      []uiReference `xml:"references>reference"`
	Collections     []uiColl      `xml:"pkglist>collection"`
}

type uiDate struct {
	Date string `xml:"date,attr"`
}

type uiReference struct {
	Href string `xml:"href,attr"`
	ID   string `xml:"id,attr"`
	Type string `xml:"type,attr"`
}

type uiColl struct {
	Short    string      `xml:"short,attr"`
	Name     string      `xml:"name"`
	Packages []uiPackage `xml:"package"`
}

type uiPackage struct {
	Name            string `xml:"name,attr"`
	Epoch           string `xml:"epoch,attr"`
	Version         string `xml:"version,attr"`
	Release         string `xml:"release,attr"`
	Arch            string `xml:"arch,attr"`
	RebootSuggested string `xml:"reboot_suggested"`
}

// updateInfoVendors names the publisher by advisory id prefix.
var updateInfoVendors = []struct {
	pattern *regexp.Regexp
	vendor  string
}{
	{regexp.MustCompile(`^ALAS`), "Amazon Linux"},
	{regexp.MustCompile(`^AL[SBE]A-`), "AlmaLinux"},
	{regexp.MustCompile(`^RL[SBE]A-`), "Rocky Linux"},
	{regexp.MustCompile(`^RH[SBE]A-`), "Red Hat"},
	{regexp.MustCompile(`^EL[SBE]A-`), "Oracle Linux"},
	{regexp.MustCompile(`^FEDORA-`), "Fedora"},
}

// amazonFamily reads the OS family from Amazon Linux ids: ALAS2023-… is amazon-linux-2023,
// ALAS2-… amazon-linux-2, ALAS-… amazon-linux.
var amazonFamily = regexp.MustCompile(`^ALAS(\d*)-`)

// parseUpdateInfo reads every <update> of an updateinfo.xml as one patch.
func parseUpdateInfo(doc Document) ([]*typesv1.Patch, error) {
	var ui uiUpdates
	dec := xml.NewDecoder(bytes.NewReader(doc.Data))
	if err := dec.Decode(&ui); err != nil {
		return nil, docErr(doc.Name, "updates", "not an updateinfo.xml document: %v", err)
	}
	var out []*typesv1.Patch
	seen := map[string]int{}
	for i, u := range ui.Updates {
		field := fieldf("updates/update[%d]", i+1)
		id := strings.TrimSpace(u.ID)
		if id == "" {
			return nil, docErr(doc.Name, field+"/id", "required")
		}
		if j, dup := seen[id]; dup {
			return nil, docErr(doc.Name, field+"/id", "%q: duplicate of update[%d]", id, j+1)
		}
		seen[id] = i
		issued, err := parseLooseTime(u.Issued.Date)
		if err != nil {
			return nil, docErr(doc.Name, field+"/issued/@date", "%q: %v", u.Issued.Date, err)
		}
		updated, err := parseLooseTime(u.Updated.Date)
		if err != nil {
			return nil, docErr(doc.Name, field+"/updated/@date", "%q: %v", u.Updated.Date, err)
		}
		p := &typesv1.Patch{
			Id: id, Title: strings.TrimSpace(u.Title), VendorSeverity: strings.TrimSpace(u.Severity),
			ReleasedAt: timestamp(issued), UpdatedAt: timestamp(updated),
			RebootRequired: isTrue(u.RebootSuggested),
		}
		switch strings.ToLower(u.Type) {
		case "security":
			p.Classification = typesv1.Classification_CLASSIFICATION_SECURITY
		case "bugfix":
			p.Classification = typesv1.Classification_CLASSIFICATION_BUGFIX
		case "enhancement", "newpackage":
			p.Classification = typesv1.Classification_CLASSIFICATION_ENHANCEMENT
		default:
			p.Classification = classificationFromID(id)
		}
		for _, v := range updateInfoVendors {
			if v.pattern.MatchString(id) {
				p.Vendor = v.vendor
			}
		}
		if p.Vendor == "" {
			p.Vendor = strings.TrimSpace(u.From)
		}
		if m := amazonFamily.FindStringSubmatch(id); m != nil {
			p.OsFamilies = append(p.OsFamilies, strings.TrimSuffix("amazon-linux-"+m[1], "-"))
		}
		if rel := strings.TrimSpace(u.Release); rel != "" {
			p.Products = append(p.Products, rel)
			if len(p.OsFamilies) == 0 {
				p.OsFamilies = append(p.OsFamilies, Slug(rel))
			}
		}
		for _, r := range u.References {
			if strings.EqualFold(r.Type, "cve") {
				p.Cves = append(p.Cves, cves(r.ID, r.Href)...)
			}
		}
		for ci, c := range u.Collections {
			if name := strings.TrimSpace(c.Name); name != "" {
				p.Products = append(p.Products, name)
			}
			for pi, pk := range c.Packages {
				if pk.Name == "" || pk.Version == "" {
					return nil, docErr(doc.Name, fieldf("%s/pkglist/collection[%d]/package[%d]", field, ci+1, pi+1), "name and version are required")
				}
				p.Packages = append(p.Packages, &typesv1.PackageVersion{
					Name: pk.Name, Epoch: pk.Epoch, Version: pk.Version, Release: pk.Release, Arch: pk.Arch,
					Ecosystem: strings.TrimSpace(u.Release),
				})
				p.RebootRequired = p.RebootRequired || isTrue(pk.RebootSuggested) || isKernel(pk.Name)
			}
		}
		if len(p.OsFamilies) == 0 && len(u.Collections) > 0 {
			p.OsFamilies = append(p.OsFamilies, Slug(u.Collections[0].Name))
		}
		out = append(out, p)
	}
	if len(out) == 0 {
		return nil, docErr(doc.Name, "updates/update", "at least one update is required")
	}
	return out, nil
}

func isTrue(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "yes":
		return true
	}
	return false
}
