// Package advisory parses vendor advisory documents into normalized patches: CSAF 2.0 (with the
// CSAF project's module, validated against the schema offline), OSV (the OSV schema's protobuf
// bindings), RPM updateinfo.xml and MSRC CVRF 1.2 (encoding/xml with types of our own: no
// well-kept Go library exists for either). Every parser refuses a bad document with an *Error
// naming the document and the field; a document is never half-read.
package advisory

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
)

// Format is a document format.
type Format string

// Formats.
const (
	CSAF       Format = "csaf"
	OSV        Format = "osv"
	UpdateInfo Format = "updateinfo"
	CVRF       Format = "cvrf"
)

// Formats lists every format, for error messages and validation.
var Formats = []Format{CSAF, OSV, UpdateInfo, CVRF}

// MaxDocumentSize bounds one document (an MSRC monthly CVRF document is some 20 MiB).
const MaxDocumentSize = 64 << 20

// ParseFormat checks a format name; empty means "detect".
func ParseFormat(s string) (Format, error) {
	f := Format(strings.ToLower(strings.TrimSpace(s)))
	if f == "" || slices.Contains(Formats, f) {
		return f, nil
	}
	return "", domain.Invalid(fmt.Errorf("format %q: must be one of csaf, osv, updateinfo, cvrf (or empty to detect)", s))
}

// Document is one raw document.
type Document struct {
	// Name identifies the document in errors and provenance: a file name, URL or object key.
	Name string
	// Source is the configured feed source, or "import".
	Source string
	Data   []byte
}

// Digest returns "sha256:<hex>" of the document's bytes.
func (d Document) Digest() string { return Digest(d.Data) }

// Digest returns "sha256:<hex>" of data.
func Digest(data []byte) string {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Error is a document that cannot be read: it names the document, the field and the rule.
type Error struct {
	Document string
	// Field is a path into the document: a JSON pointer ("/document/tracking/id") or an XML
	// path ("updates/update[2]/id").
	Field string
	Rule  string
}

// Error reads `document "USN-1.json": field "/id": required`.
func (e *Error) Error() string {
	return fmt.Sprintf("document %q: field %q: %s", e.Document, e.Field, e.Rule)
}

// Is makes a document error an invalid argument.
func (e *Error) Is(target error) bool { return target == domain.ErrInvalid }

func docErr(doc, field, format string, args ...any) *Error {
	return &Error{Document: doc, Field: field, Rule: fmt.Sprintf(format, args...)}
}

// Detect tells the format of a document from its first element or keys.
func Detect(doc Document) (Format, error) {
	data := bytes.TrimLeft(bytes.TrimPrefix(doc.Data, []byte("\xef\xbb\xbf")), " \t\r\n")
	switch {
	case len(data) == 0:
		return "", docErr(doc.Name, "/", "empty document")
	case data[0] == '<':
		dec := xml.NewDecoder(bytes.NewReader(data))
		for {
			tok, err := dec.Token()
			if err != nil {
				return "", docErr(doc.Name, "/", "not well-formed XML: %v", err)
			}
			if se, ok := tok.(xml.StartElement); ok {
				switch se.Name.Local {
				case "updates":
					return UpdateInfo, nil
				case "cvrfdoc":
					return CVRF, nil
				}
				return "", docErr(doc.Name, "/"+se.Name.Local, "root element must be <updates> (updateinfo.xml) or <cvrfdoc> (CVRF 1.2)")
			}
		}
	case data[0] == '{':
		var top map[string]json.RawMessage
		if err := json.Unmarshal(data, &top); err != nil {
			return "", docErr(doc.Name, "/", "not valid JSON: %v", err)
		}
		if d, ok := top["document"]; ok {
			var inner struct {
				Version string `json:"csaf_version"`
			}
			if json.Unmarshal(d, &inner) == nil && inner.Version != "" {
				return CSAF, nil
			}
			return "", docErr(doc.Name, "/document/csaf_version", "required for a CSAF document")
		}
		if _, ok := top["id"]; ok {
			return OSV, nil
		}
		return "", docErr(doc.Name, "/", "JSON document is neither CSAF (no \"document\") nor OSV (no \"id\")")
	default:
		return "", docErr(doc.Name, "/", "neither JSON nor XML")
	}
}

// Parse reads doc in format (detected when empty) and returns its patches, each normalized,
// validated and carrying the document as its source.
func Parse(doc Document, format Format) (Format, []*typesv1.Patch, error) {
	if len(doc.Data) > MaxDocumentSize {
		return format, nil, docErr(doc.Name, "/", "larger than %d bytes", MaxDocumentSize)
	}
	if format == "" {
		f, err := Detect(doc)
		if err != nil {
			return "", nil, err
		}
		format = f
	}
	var (
		ps    []*typesv1.Patch
		docID string
		err   error
	)
	switch format {
	case CSAF:
		ps, docID, err = parseCSAF(doc)
	case OSV:
		ps, docID, err = parseOSV(doc)
	case UpdateInfo:
		ps, err = parseUpdateInfo(doc)
	case CVRF:
		ps, docID, err = parseCVRF(doc)
	default:
		return format, nil, domain.Invalid(fmt.Errorf("format %q: unknown", format))
	}
	if err != nil {
		return format, nil, err
	}
	if len(ps) == 0 {
		return format, nil, docErr(doc.Name, "/", "holds no patch")
	}
	digest := doc.Digest()
	source := doc.Source
	if source == "" {
		source = "import"
	}
	for i, p := range ps {
		id := docID
		if id == "" {
			id = p.GetId()
		}
		p.Sources = []*typesv1.AdvisorySource{{Format: string(format), Name: doc.Name, Digest: digest, Source: source, DocumentId: id}}
		if p.Severity == typesv1.Severity_SEVERITY_UNSPECIFIED {
			p.Severity = severityFromText(p.GetVendorSeverity())
		}
		if p.Severity == typesv1.Severity_SEVERITY_UNSPECIFIED {
			p.Severity = severityFromScore(p.GetCvssScore())
		}
		domain.Normalize(p)
		if err := domain.ValidatePatch(p); err != nil {
			return format, nil, docErr(doc.Name, fmt.Sprintf("patch[%d] %s", i, p.GetId()), "%v", err)
		}
	}
	return format, ps, nil
}

// severityFromText maps a vendor's severity word to the scale.
func severityFromText(s string) typesv1.Severity {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "critical", "urgent":
		return typesv1.Severity_SEVERITY_CRITICAL
	case "important", "high":
		return typesv1.Severity_SEVERITY_HIGH
	case "moderate", "medium":
		return typesv1.Severity_SEVERITY_MEDIUM
	case "low", "negligible":
		return typesv1.Severity_SEVERITY_LOW
	}
	return typesv1.Severity_SEVERITY_UNSPECIFIED
}

// severityRank orders vendor severity words for "the highest".
func severityRank(s string) int { return int(severityFromText(s)) }

// severityFromScore maps a CVSS v3 base score to its qualitative rating.
func severityFromScore(score float64) typesv1.Severity {
	switch {
	case score >= 9:
		return typesv1.Severity_SEVERITY_CRITICAL
	case score >= 7:
		return typesv1.Severity_SEVERITY_HIGH
	case score >= 4:
		return typesv1.Severity_SEVERITY_MEDIUM
	case score > 0:
		return typesv1.Severity_SEVERITY_LOW
	}
	return typesv1.Severity_SEVERITY_UNSPECIFIED
}

// classificationFromID reads the classification from Red Hat style ids (RHSA, RHBA, RHEA and
// the rebuilds' ALSA, RLSA, ELSA, ALAS...).
func classificationFromID(id string) typesv1.Classification {
	prefix, _, _ := strings.Cut(strings.ToUpper(id), "-")
	prefix = strings.TrimRight(prefix, "0123456789")
	switch {
	case prefix == "ALAS" || strings.HasSuffix(prefix, "SA"):
		return typesv1.Classification_CLASSIFICATION_SECURITY
	case strings.HasSuffix(prefix, "BA"):
		return typesv1.Classification_CLASSIFICATION_BUGFIX
	case strings.HasSuffix(prefix, "EA"):
		return typesv1.Classification_CLASSIFICATION_ENHANCEMENT
	}
	return typesv1.Classification_CLASSIFICATION_UNSPECIFIED
}

var (
	parenthetical = regexp.MustCompile(`\s*\([^)]*\)`)
	nonSlug       = regexp.MustCompile(`[^a-z0-9.]+`)
)

// Slug turns a product or release name into an OS family name: "Rocky Linux 8" is
// "rocky-linux-8", "Windows Server 2022 (Server Core installation)" is "windows-server-2022",
// "Ubuntu:22.04:LTS" is "ubuntu-22.04".
func Slug(name string) string {
	s := parenthetical.ReplaceAllString(name, "")
	s = strings.ToLower(strings.TrimSpace(s))
	s = strings.TrimSuffix(s, ":lts")
	s = strings.TrimSuffix(s, " lts")
	s = nonSlug.ReplaceAllString(s, "-")
	s = strings.Trim(s, "-.")
	if len(s) > 63 {
		s = strings.TrimRight(s[:63], "-.")
	}
	return s
}

// isKernel reports whether a package is a kernel, whose update needs a reboot.
func isKernel(name string) bool {
	return name == "linux" || name == "kernel" || strings.HasPrefix(name, "linux-") || strings.HasPrefix(name, "kernel-")
}

// splitVersion splits "[epoch:]version[-release]" as dpkg and rpm write it.
func splitVersion(v string) (epoch, version, release string) {
	if e, rest, ok := strings.Cut(v, ":"); ok && e != "" && strings.Trim(e, "0123456789") == "" {
		epoch, v = e, rest
	}
	if i := strings.LastIndex(v, "-"); i > 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

// cves returns every CVE id found in the strings (aliases, upstream ids like
// "UBUNTU-CVE-2014-4607").
func cves(ss ...string) []string {
	var out []string
	for _, s := range ss {
		out = append(out, domain.CVEPattern.FindAllString(s, -1)...)
	}
	return out
}

// timestamp returns t as a protobuf timestamp, nil for the zero time or year 1 (OSV's
// "0001-01-01T00:00:00Z" means unknown).
func timestamp(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() || t.Year() <= 1 {
		return nil
	}
	return timestamppb.New(t.UTC())
}

// parseLooseTime reads the dates vendors write: RFC 3339 with or without a zone,
// "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02" (all UTC) or Unix seconds.
func parseLooseTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05", "2006-01-02 15:04:05", "2006-01-02 15:04", "2006-01-02"} {
		if t, err := time.ParseInLocation(layout, s, time.UTC); err == nil {
			return t.UTC(), nil
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
		return time.Unix(n, 0).UTC(), nil
	}
	return time.Time{}, errors.New("not a date: want RFC 3339, \"YYYY-MM-DD[ hh:mm[:ss]]\" or Unix seconds")
}

func fieldf(format string, args ...any) string { return fmt.Sprintf(format, args...) }
