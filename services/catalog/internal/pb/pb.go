// Package pb converts catalog domain values to and from their protobuf forms: the
// BaselinePublished event and the CatalogService API's Baseline.
package pb

import (
	"slices"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/services/catalog/internal/domain"

	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

// Patches converts patches to their protobuf form.
func Patches(ps []domain.Patch) []*typesv1.Patch {
	out := make([]*typesv1.Patch, len(ps))
	for i, p := range ps {
		out[i] = &typesv1.Patch{
			Id: p.ID, Vendor: p.Vendor, Title: p.Title, OsFamily: p.OSFamily,
			Severity: p.Severity, Classification: p.Classification,
			Cves: slices.Clone(p.CVEs), RebootRequired: p.RebootRequired,
		}
	}
	return out
}

// FromPatches converts protobuf patches to domain patches.
func FromPatches(ps []*typesv1.Patch) []domain.Patch {
	out := make([]domain.Patch, len(ps))
	for i, p := range ps {
		out[i] = domain.Patch{
			ID: p.GetId(), Vendor: p.GetVendor(), Title: p.GetTitle(), OSFamily: p.GetOsFamily(),
			Severity: p.GetSeverity(), Classification: p.GetClassification(),
			CVEs: slices.Clone(p.GetCves()), RebootRequired: p.GetRebootRequired(),
		}
	}
	return out
}

func timestamp(b domain.Baseline) *timestamppb.Timestamp {
	if b.PublishedAt.IsZero() {
		return nil
	}
	return timestamppb.New(b.PublishedAt)
}

// Published returns the BaselinePublished event payload of b.
func Published(b domain.Baseline) *eventsv1.BaselinePublished {
	return &eventsv1.BaselinePublished{
		BaselineId: b.ID, OsFamily: b.OSFamily, Version: b.Version,
		Patches: Patches(b.Patches), PublishedAt: timestamp(b),
	}
}

// FromPublished returns the baseline a BaselinePublished event carries.
func FromPublished(e *eventsv1.BaselinePublished) domain.Baseline {
	b := domain.Baseline{
		ID: e.GetBaselineId(), OSFamily: e.GetOsFamily(), Version: e.GetVersion(),
		Patches: FromPatches(e.GetPatches()),
	}
	if e.GetPublishedAt() != nil {
		b.PublishedAt = e.GetPublishedAt().AsTime()
	}
	return b
}

// Baseline returns the API form of b.
func Baseline(b domain.Baseline) *catalogv1.Baseline {
	return &catalogv1.Baseline{
		BaselineId: b.ID, OsFamily: b.OSFamily, Version: b.Version,
		Patches: Patches(b.Patches), PublishedAt: timestamp(b),
	}
}
