package advisory_test

import (
	"errors"
	"io/fs"
	"testing"

	"github.com/patchwave/patchwave/services/catalog/internal/advisory"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
	"github.com/patchwave/patchwave/services/catalog/samplefeeds"
)

// fuzzParse checks what every parser promises for any input: no panic; either patches that
// each pass domain.ValidatePatch and carry the document as source, or an *advisory.Error
// naming the document.
func fuzzParse(f *testing.F, format advisory.Format, seeds ...string) {
	for _, s := range seeds {
		data, err := fs.ReadFile(samplefeeds.Files, s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, fm := range []advisory.Format{format, ""} {
			_, ps, err := advisory.Parse(advisory.Document{Name: "fuzz", Data: data}, fm)
			if err != nil {
				var de *advisory.Error
				if !errors.As(err, &de) || de.Document != "fuzz" || de.Field == "" {
					t.Fatalf("error %v (%T) does not name the document and field", err, err)
				}
				continue
			}
			if len(ps) == 0 {
				t.Fatal("no error and no patch")
			}
			for _, p := range ps {
				if err := domain.ValidatePatch(p); err != nil {
					t.Fatalf("patch %q: %v", p.GetId(), err)
				}
				if len(p.GetSources()) != 1 || p.GetSources()[0].GetDigest() != advisory.Digest(data) {
					t.Fatalf("patch %q: sources %v", p.GetId(), p.GetSources())
				}
			}
		}
	})
}

func FuzzCSAF(f *testing.F) { fuzzParse(f, advisory.CSAF, "redhat/rhsa-2026_1001.json") }

func FuzzOSV(f *testing.F) { fuzzParse(f, advisory.OSV, "ubuntu/USN-7700-1.json") }

func FuzzUpdateInfo(f *testing.F) {
	fuzzParse(f, advisory.UpdateInfo, "amazon-linux-2023/updateinfo.xml")
}

func FuzzCVRF(f *testing.F) { fuzzParse(f, advisory.CVRF, "microsoft/2026-Nov.xml") }
