// Package pb converts the catalog's domain values to and from their protobuf forms: the API's
// messages (which are also what the KV buckets store, as protobuf JSON) and the event payloads.
package pb

import (
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
)

// Time returns t as a timestamp, nil for the zero time.
func Time(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// FromTime returns a timestamp as a time, the zero time for nil.
func FromTime(ts *timestamppb.Timestamp) time.Time {
	if ts == nil {
		return time.Time{}
	}
	return ts.AsTime()
}

// Record returns the API (and KV) form of a patch record.
func Record(r *domain.Record) *catalogv1.CatalogPatch {
	return &catalogv1.CatalogPatch{
		Patch: r.Patch, State: r.State, History: r.History, Revision: r.Revision,
		ContentVersion: r.ContentVersion, DiscoveredAt: Time(r.DiscoveredAt), Contributions: r.Contributions,
	}
}

// FromRecord returns the domain record of a stored patch at revision rev.
func FromRecord(c *catalogv1.CatalogPatch, rev uint64) *domain.Record {
	return &domain.Record{
		Patch: c.GetPatch(), Contributions: c.GetContributions(), State: c.GetState(), History: c.GetHistory(),
		ContentVersion: c.GetContentVersion(), DiscoveredAt: FromTime(c.GetDiscoveredAt()), Revision: rev,
	}
}

// Baseline returns the API (and KV) form of b.
func Baseline(b domain.Baseline) *catalogv1.Baseline {
	return &catalogv1.Baseline{
		BaselineId: b.ID, OsFamily: b.OSFamily, Version: b.Version, Patches: b.Patches,
		PublishedAt: Time(b.PublishedAt), Rules: b.Rules, Emergency: b.Emergency, EmergencyCve: b.EmergencyCVE,
		PublishedBy: b.PublishedBy, Notes: b.Notes, Digest: b.Digest,
	}
}

// FromBaseline returns the domain baseline of its API form.
func FromBaseline(b *catalogv1.Baseline) domain.Baseline {
	return domain.Baseline{
		ID: b.GetBaselineId(), OSFamily: b.GetOsFamily(), Version: b.GetVersion(), Patches: b.GetPatches(),
		Rules: b.GetRules(), Emergency: b.GetEmergency(), EmergencyCVE: b.GetEmergencyCve(),
		PublishedAt: FromTime(b.GetPublishedAt()), PublishedBy: b.GetPublishedBy(), Notes: b.GetNotes(), Digest: b.GetDigest(),
	}
}

// Published returns the BaselinePublished event payload of b.
func Published(b domain.Baseline) *eventsv1.BaselinePublished {
	return &eventsv1.BaselinePublished{
		BaselineId: b.ID, OsFamily: b.OSFamily, Version: b.Version, Patches: b.Patches,
		PublishedAt: Time(b.PublishedAt), Rules: b.Rules, Emergency: b.Emergency, EmergencyCve: b.EmergencyCVE,
		PublishedBy: b.PublishedBy, Notes: b.Notes, Digest: b.Digest,
	}
}

// Rule returns the API form of a rule.
func Rule(r domain.Rule) *catalogv1.AutoApprovalRule {
	return &catalogv1.AutoApprovalRule{
		RuleId: r.ID, Description: r.Description, Classifications: r.Classifications, Severities: r.Severities,
		OsFamilies: r.OSFamilies, ApproveAfterDays: r.ApproveAfterDays, Enabled: r.Enabled,
	}
}

// FromRule returns the domain rule of its API form.
func FromRule(r *catalogv1.AutoApprovalRule) domain.Rule {
	return domain.Rule{
		ID: r.GetRuleId(), Description: r.GetDescription(), Classifications: r.GetClassifications(),
		Severities: r.GetSeverities(), OSFamilies: r.GetOsFamilies(), ApproveAfterDays: r.GetApproveAfterDays(),
		Enabled: r.GetEnabled(),
	}
}

var approvalStates = map[domain.ApprovalState]catalogv1.ApprovalState{
	domain.ApprovalPending:  catalogv1.ApprovalState_APPROVAL_STATE_PENDING,
	domain.ApprovalApproved: catalogv1.ApprovalState_APPROVAL_STATE_APPROVED,
	domain.ApprovalRejected: catalogv1.ApprovalState_APPROVAL_STATE_REJECTED,
}

// Approval returns the API form of an approval.
func Approval(a domain.Approval) *catalogv1.Approval {
	return &catalogv1.Approval{
		Tenant: a.Tenant, BaselineId: a.BaselineID, OsFamily: a.OSFamily, Version: a.Version,
		State: approvalStates[a.State], Actor: a.Actor, DecidedAt: Time(a.DecidedAt), Notes: a.Notes, AutoApproved: a.Auto,
	}
}

// FromApproval returns the domain approval of its API form.
func FromApproval(a *catalogv1.Approval) domain.Approval {
	out := domain.Approval{
		Tenant: a.GetTenant(), BaselineID: a.GetBaselineId(), OSFamily: a.GetOsFamily(), Version: a.GetVersion(),
		Actor: a.GetActor(), DecidedAt: FromTime(a.GetDecidedAt()), Notes: a.GetNotes(), Auto: a.GetAutoApproved(),
	}
	for d, p := range approvalStates {
		if p == a.GetState() {
			out.State = d
		}
	}
	return out
}

// Policy returns the API form of a policy.
func Policy(p domain.Policy) *catalogv1.ApprovalPolicy {
	return &catalogv1.ApprovalPolicy{
		Tenant: p.Tenant, AutoApprove: p.AutoApprove, Delay: durationpb.New(p.Delay), OsFamilies: p.OSFamilies,
		ChangedBy: p.ChangedBy, ChangedAt: Time(p.ChangedAt),
	}
}

// FromPolicy returns the domain policy of its API form.
func FromPolicy(p *catalogv1.ApprovalPolicy) domain.Policy {
	return domain.Policy{
		Tenant: p.GetTenant(), AutoApprove: p.GetAutoApprove(), Delay: p.GetDelay().AsDuration(),
		OSFamilies: p.GetOsFamilies(), ChangedBy: p.GetChangedBy(), ChangedAt: FromTime(p.GetChangedAt()),
	}
}
