package domain

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// ErrPatchNotFound is returned for a patch the catalog does not hold.
var ErrPatchNotFound = fmt.Errorf("patch %w", errNotFound)

// MaxPatchIDLength bounds a patch id.
const MaxPatchIDLength = 128

// ValidatePatchID checks a patch id as the vendor publishes it ("RHSA-2021:5186",
// "USN-7000-1", "KB5002744"): 1 to 128 printable characters, no white space, no '/'.
func ValidatePatchID(id string) error {
	if id == "" || len(id) > MaxPatchIDLength || strings.ContainsAny(id, " \t\r\n/") || strings.ContainsFunc(id, func(r rune) bool { return r < 0x21 || r == 0x7f }) {
		return Invalid(fmt.Errorf("patch id %q: required, 1-%d printable characters without white space or '/'", id, MaxPatchIDLength))
	}
	return nil
}

// PatchKey returns the KV key of a patch id: letters, digits, '-' and '_' stay, every other
// byte becomes "=XX" (hex), so "RHSA-2021:5186" is "RHSA-2021=3A5186". The mapping is
// one-to-one, so two ids never share a key.
func PatchKey(id string) string {
	var b strings.Builder
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}

// Record is a patch as the catalog keeps it: the merged patch, each document's contribution,
// and its certification.
type Record struct {
	// Patch is the merge of Contributions.
	Patch *typesv1.Patch
	// Contributions holds the patch as each source document states it, one per document id.
	Contributions []*typesv1.Patch
	State         typesv1.CertificationState
	History       []*typesv1.CertificationStep
	// ContentVersion is 1 when discovered and grows with each content change.
	ContentVersion int32
	DiscoveredAt   time.Time
	// Revision is the KV revision the record was read at (0 for a new one).
	Revision uint64
}

// documentID names the document a contribution came from.
func documentID(p *typesv1.Patch) string {
	if len(p.GetSources()) == 0 {
		return ""
	}
	return cmp.Or(p.GetSources()[0].GetDocumentId(), p.GetSources()[0].GetName())
}

// Ingest folds a freshly parsed patch (one document's view) into the record. It returns the
// names of the patch fields that changed (nil when nothing did: the same document again, or
// another with the same content). A new record (no contributions) is always changed.
func (r *Record) Ingest(p *typesv1.Patch, now time.Time) ([]string, error) {
	p = proto.CloneOf(p)
	Normalize(p)
	if r.Patch != nil && r.Patch.GetId() != p.GetId() {
		return nil, fmt.Errorf("ingest patch %q into record %q: ids differ", p.GetId(), r.Patch.GetId())
	}
	doc := documentID(p)
	contributions := slices.Clone(r.Contributions)
	replaced := false
	for i, c := range contributions {
		if documentID(c) == doc {
			if ContentEqual(c, p) && proto.Equal(c, p) {
				return nil, nil
			}
			contributions[i] = p
			replaced = true
		}
	}
	if !replaced {
		contributions = append(contributions, p)
	}
	merged := Merge(contributions)
	if r.Patch == nil {
		r.Patch, r.Contributions = merged, contributions
		r.State = typesv1.CertificationState_CERTIFICATION_STATE_NEW
		r.ContentVersion = 1
		r.DiscoveredAt = now.UTC()
		return ChangedFields(nil, merged), nil
	}
	changed := ChangedFields(r.Patch, merged)
	if len(changed) == 0 {
		// The same content from a re-formatted document: nothing to store or announce.
		return nil, nil
	}
	r.Patch, r.Contributions = merged, contributions
	r.ContentVersion++
	return changed, nil
}

// Normalize sorts and de-duplicates a patch's lists so that equal content compares equal.
func Normalize(p *typesv1.Patch) {
	p.Cves = sortedUnique(p.Cves)
	p.Products = sortedUnique(p.Products)
	p.Kbs = sortedUnique(p.Kbs)
	p.Supersedes = sortedUnique(p.Supersedes)
	fams := sortedUnique(append(p.OsFamilies, p.OsFamily))
	p.OsFamilies = fams
	if p.OsFamily == "" && len(fams) > 0 {
		p.OsFamily = fams[0]
	}
	slices.SortFunc(p.Packages, comparePackage)
	p.Packages = slices.CompactFunc(p.Packages, func(a, b *typesv1.PackageVersion) bool { return comparePackage(a, b) == 0 })
	if len(p.Packages) == 0 {
		p.Packages = nil
	}
	slices.SortFunc(p.Sources, func(a, b *typesv1.AdvisorySource) int {
		return cmp.Or(strings.Compare(a.GetDocumentId(), b.GetDocumentId()), strings.Compare(a.GetName(), b.GetName()))
	})
}

func sortedUnique(s []string) []string {
	out := make([]string, 0, len(s))
	for _, v := range s {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func comparePackage(a, b *typesv1.PackageVersion) int {
	return cmp.Or(strings.Compare(a.GetName(), b.GetName()), strings.Compare(a.GetEcosystem(), b.GetEcosystem()),
		strings.Compare(a.GetEpoch(), b.GetEpoch()), strings.Compare(a.GetVersion(), b.GetVersion()),
		strings.Compare(a.GetRelease(), b.GetRelease()), strings.Compare(a.GetArch(), b.GetArch()))
}

// Merge combines the contributions of several documents to one patch: the most recently
// updated contribution gives the scalar fields, lists are united, the severity and CVSS score
// are the highest, the release date the earliest, the update date the latest, and the reboot
// hint holds if any contribution says so.
func Merge(cs []*typesv1.Patch) *typesv1.Patch {
	if len(cs) == 0 {
		return nil
	}
	base := cs[0]
	for _, c := range cs[1:] {
		if c.GetUpdatedAt().AsTime().After(base.GetUpdatedAt().AsTime()) {
			base = c
		}
	}
	out := proto.CloneOf(base)
	for _, c := range cs {
		if c == base {
			continue
		}
		out.Cves = append(out.Cves, c.Cves...)
		out.Products = append(out.Products, c.Products...)
		out.OsFamilies = append(out.OsFamilies, c.OsFamilies...)
		out.Kbs = append(out.Kbs, c.Kbs...)
		out.Supersedes = append(out.Supersedes, c.Supersedes...)
		for _, pk := range c.Packages {
			out.Packages = append(out.Packages, proto.CloneOf(pk))
		}
		for _, s := range c.Sources {
			out.Sources = append(out.Sources, proto.CloneOf(s))
		}
		out.Severity = max(out.Severity, c.Severity)
		if c.CvssScore > out.CvssScore {
			out.CvssScore, out.CvssVector = c.CvssScore, c.CvssVector
		}
		out.RebootRequired = out.RebootRequired || c.RebootRequired
		if c.ReleasedAt != nil && (out.ReleasedAt == nil || c.ReleasedAt.AsTime().Before(out.ReleasedAt.AsTime())) {
			out.ReleasedAt = timestamppb.New(c.ReleasedAt.AsTime())
		}
	}
	Normalize(out)
	return out
}

// ChangedFields returns the proto names of the fields whose values differ between prev and
// next, sources excepted (a new digest alone is no change of the patch). With prev nil every
// populated field of next is named.
func ChangedFields(prev, next *typesv1.Patch) []string {
	var out []string
	fields := (&typesv1.Patch{}).ProtoReflect().Descriptor().Fields()
	var o, n protoreflect.Message
	if prev != nil {
		o = prev.ProtoReflect()
	} else {
		o = (&typesv1.Patch{}).ProtoReflect()
	}
	n = next.ProtoReflect()
	for i := range fields.Len() {
		f := fields.Get(i)
		if f.Name() == "sources" {
			continue
		}
		if !fieldEqual(f, o, n) {
			out = append(out, string(f.Name()))
		}
	}
	return out
}

func fieldEqual(f protoreflect.FieldDescriptor, a, b protoreflect.Message) bool {
	if a.Has(f) != b.Has(f) {
		return false
	}
	if !a.Has(f) {
		return true
	}
	x, y := a.New(), b.New()
	x.Set(f, a.Get(f))
	y.Set(f, b.Get(f))
	return proto.Equal(x.Interface(), y.Interface())
}

// ContentEqual reports whether two patches have the same content, sources aside.
func ContentEqual(a, b *typesv1.Patch) bool { return len(ChangedFields(a, b)) == 0 }

// ValidatePatch checks what every parser must produce, naming the field.
func ValidatePatch(p *typesv1.Patch) error {
	var errs []error
	if err := ValidatePatchID(p.GetId()); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(p.GetVendor()) == "" {
		errs = append(errs, errors.New("vendor: required"))
	}
	if len(p.GetOsFamilies()) == 0 && p.GetOsFamily() == "" && len(p.GetProducts()) == 0 {
		errs = append(errs, errors.New("products: at least one product or OS family is required"))
	}
	for i, c := range p.GetCves() {
		if !cvePattern.MatchString(c) {
			errs = append(errs, fmt.Errorf("cves[%d] %q: must match %s", i, c, cvePattern))
		}
	}
	return Invalid(errors.Join(errs...))
}
