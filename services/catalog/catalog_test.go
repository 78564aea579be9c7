package catalog_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/auth"
	"github.com/patchwave/patchwave/libs/design/designtest"
	"github.com/patchwave/patchwave/libs/host"
	"github.com/patchwave/patchwave/libs/testkit"
	"github.com/patchwave/patchwave/libs/testkit/stagetest"
	catalogv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/catalog/v1"
	eventsv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/events/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog"
)

var (
	_ host.Component     = (*catalog.Service)(nil)
	_ host.GRPCRegistrar = (*catalog.Service)(nil)
	_ host.Runner        = (*catalog.Service)(nil)
	_ host.Readiness     = (*catalog.Service)(nil)
)

const updateinfo = "amazon-linux-2023/updateinfo.xml"

func requireCode(t *testing.T, err error, code codes.Code, contains ...string) {
	t.Helper()
	st, ok := status.FromError(err)
	require.True(t, ok, "error %v is a status", err)
	require.Equal(t, code, st.Code(), "message: %s", st.Message())
	for _, c := range contains {
		require.Contains(t, st.Message(), c)
	}
}

func TestImportDiscoversThenChangesNothingThenUpdatesKeepingThePreviousVersion(t *testing.T) {
	e := start(t, catalog.Config{}, catalog.Deps{})
	doc := sampleDoc(t, updateinfo)

	resp := importDoc(t, e, "updateinfo.xml", doc)
	require.Equal(t, "updateinfo", resp.GetFormat())
	require.Len(t, resp.GetPatches(), 4)
	for _, p := range resp.GetPatches() {
		require.Equal(t, "discovered", p.GetOutcome())
		require.Equal(t, typesv1.CertificationState_CERTIFICATION_STATE_NEW, p.GetPatch().GetState())
	}
	discovered := catalogEvents(t, e.js, "catalog.patch.discovered")
	require.Len(t, discovered, 4)
	require.Equal(t, "catalog.patch.discovered/ALAS2023-2026-1001", discovered[0].ID)

	// The same document again: nothing changes, nothing is published.
	resp = importDoc(t, e, "updateinfo.xml", doc)
	for _, p := range resp.GetPatches() {
		require.Equal(t, "unchanged", p.GetOutcome())
	}
	require.Len(t, catalogEvents(t, e.js, "catalog.patch.>"), 4)

	// An updated advisory: a new CVE and a higher severity for the kernel fix.
	updated := strings.Replace(string(doc), `<severity>important</severity>`, `<severity>critical</severity>`, 1)
	updated = strings.Replace(updated, `id="CVE-2026-23112" title="" type="cve" />`, `id="CVE-2026-23112" title="" type="cve" />
      <reference href="https://www.cve.org/CVERecord?id=CVE-2026-23113" id="CVE-2026-23113" title="" type="cve" />`, 1)
	resp = importDoc(t, e, "updateinfo.xml", []byte(updated))
	outcomes := map[string]string{}
	for _, p := range resp.GetPatches() {
		outcomes[p.GetPatch().GetPatch().GetId()] = p.GetOutcome()
	}
	require.Equal(t, map[string]string{
		"ALAS2023-2026-1001": "unchanged", "ALAS2023-2026-1007": "updated",
		"ALAS2023-2026-0412": "unchanged", "ALAS2023-2026-0088": "unchanged",
	}, outcomes)
	ups := catalogEvents(t, e.js, "catalog.patch.updated")
	require.Len(t, ups, 1)
	require.Equal(t, "catalog.patch.updated/ALAS2023-2026-1007/v2", ups[0].ID)
	up := ups[0].Data.(*eventsv1.PatchUpdated)
	require.Equal(t, []string{"severity", "cves", "vendor_severity"}, up.GetChangedFields())
	require.Equal(t, []string{"CVE-2026-23112"}, up.GetPrevious().GetCves())
	require.Equal(t, []string{"CVE-2026-23112", "CVE-2026-23113"}, up.GetPatch().GetCves())

	got, err := e.client.GetPatch(t.Context(), &catalogv1.GetPatchRequest{PatchId: "ALAS2023-2026-1007"})
	require.NoError(t, err)
	require.Equal(t, int32(2), got.GetPatch().GetContentVersion())
	require.Equal(t, typesv1.Severity_SEVERITY_CRITICAL, got.GetPatch().GetPatch().GetSeverity())

	// The previous version is kept in the patch's KV history, and served.
	versions, err := e.client.ListPatchVersions(t.Context(), &catalogv1.ListPatchVersionsRequest{PatchId: "ALAS2023-2026-1007"})
	require.NoError(t, err)
	require.Len(t, versions.GetVersions(), 2)
	require.Equal(t, "important", versions.GetVersions()[0].GetPatch().GetVendorSeverity())
	require.Equal(t, int32(1), versions.GetVersions()[0].GetContentVersion())
	require.Equal(t, "critical", versions.GetVersions()[1].GetPatch().GetVendorSeverity())
	_, err = e.client.ListPatchVersions(t.Context(), &catalogv1.ListPatchVersionsRequest{PatchId: "USN-0-0"})
	requireCode(t, err, codes.NotFound)
}

func TestCertificationStepsCarryActorEvidenceAndRefuseIllegalTransitions(t *testing.T) {
	e := start(t, catalog.Config{}, catalog.Deps{})
	importDoc(t, e, "updateinfo.xml", sampleDoc(t, updateinfo))
	ctx := as(t.Context(), "alice@provider")
	id := "ALAS2023-2026-1001"

	_, err := e.client.CertifyPatch(ctx, &catalogv1.CertifyPatchRequest{PatchId: id, State: typesv1.CertificationState_CERTIFICATION_STATE_CERTIFIED,
		Evidence: []*typesv1.Evidence{{Url: "https://ci.example/run/1"}}})
	requireCode(t, err, codes.FailedPrecondition, `patch "ALAS2023-2026-1001" is NEW: cannot move to CERTIFIED (allowed: IN_TEST)`)

	resp, err := e.client.CertifyPatch(ctx, &catalogv1.CertifyPatchRequest{PatchId: id, State: typesv1.CertificationState_CERTIFICATION_STATE_IN_TEST, Notes: "staging ring"})
	require.NoError(t, err)
	require.Equal(t, typesv1.CertificationState_CERTIFICATION_STATE_IN_TEST, resp.GetPatch().GetState())

	_, err = e.client.CertifyPatch(ctx, &catalogv1.CertifyPatchRequest{PatchId: id, State: typesv1.CertificationState_CERTIFICATION_STATE_CERTIFIED})
	requireCode(t, err, codes.InvalidArgument, "evidence", "a CERTIFIED step needs evidence")

	resp, err = e.client.CertifyPatch(ctx, &catalogv1.CertifyPatchRequest{
		PatchId: id, State: typesv1.CertificationState_CERTIFICATION_STATE_CERTIFIED, Notes: "48h soak clean",
		Evidence: []*typesv1.Evidence{
			{Url: "https://ci.example/run/42", Title: "staging soak"},
			{Title: "smoke tests", MediaType: "application/junit+xml", Content: `<testsuite tests="12" failures="0"/>`},
		},
		ExpectedRevision: resp.GetPatch().GetRevision(),
	})
	require.NoError(t, err)
	hist := resp.GetPatch().GetHistory()
	require.Len(t, hist, 2)
	require.Equal(t, "alice@provider", hist[1].GetActor())
	require.Equal(t, typesv1.CertificationState_CERTIFICATION_STATE_IN_TEST, hist[1].GetFrom())
	require.Equal(t, "48h soak clean", hist[1].GetNotes())
	require.Len(t, hist[1].GetEvidence(), 2)
	require.True(t, t0.Equal(hist[1].GetAt().AsTime()))

	_, err = e.client.CertifyPatch(ctx, &catalogv1.CertifyPatchRequest{PatchId: id, State: typesv1.CertificationState_CERTIFICATION_STATE_REJECTED,
		Evidence: []*typesv1.Evidence{{Url: "https://ci.example/run/43"}}})
	requireCode(t, err, codes.FailedPrecondition, "is CERTIFIED: cannot move to REJECTED (allowed: REVOKED)")

	_, err = e.client.CertifyPatch(ctx, &catalogv1.CertifyPatchRequest{PatchId: id, State: typesv1.CertificationState_CERTIFICATION_STATE_REVOKED, Notes: "breaks FIPS mode",
		ExpectedRevision: 1})
	requireCode(t, err, codes.FailedPrecondition, "not the expected 1")

	_, err = e.client.CertifyPatch(ctx, &catalogv1.CertifyPatchRequest{PatchId: id, State: typesv1.CertificationState_CERTIFICATION_STATE_REVOKED, Notes: "breaks FIPS mode"})
	require.NoError(t, err)
	_, err = e.client.CertifyPatch(ctx, &catalogv1.CertifyPatchRequest{PatchId: id, State: typesv1.CertificationState_CERTIFICATION_STATE_IN_TEST})
	requireCode(t, err, codes.FailedPrecondition, "is REVOKED: cannot move to IN_TEST (allowed: none: it is final)")

	// A write without an identity is refused.
	_, err = e.client.CertifyPatch(metadata.AppendToOutgoingContext(t.Context(), auth.MetadataSubject, ""),
		&catalogv1.CertifyPatchRequest{PatchId: "ALAS2023-2026-1007", State: typesv1.CertificationState_CERTIFICATION_STATE_IN_TEST})
	requireCode(t, err, codes.Unauthenticated, "no caller identity")

	for subject, n := range map[string]int{"catalog.patch.test_started": 1, "catalog.patch.certified": 1, "catalog.patch.revoked": 1, "catalog.patch.rejected": 0} {
		require.Len(t, catalogEvents(t, e.js, subject), n, subject)
	}
	certified := catalogEvents(t, e.js, "catalog.patch.certified")[0].Data.(*eventsv1.PatchCertified)
	require.Equal(t, "alice@provider", certified.GetStep().GetActor())
	require.Equal(t, []string{"amazon-linux-2023"}, certified.GetOsFamilies())
}

func TestAutoApprovalRulesCertifyNDaysAfterReleaseInUTCAndSignTheirSteps(t *testing.T) {
	// The bug fix was released 2026-11-03T10:00Z; 7 days make it due at 2026-11-10T00:00Z.
	clock := newClock(time.Date(2026, 11, 9, 23, 59, 0, 0, time.UTC))
	e := start(t, catalog.Config{}, catalog.Deps{Clock: clock})
	importDoc(t, e, "updateinfo.xml", sampleDoc(t, updateinfo))
	ctx := as(t.Context(), "ops@provider")
	_, err := e.client.PutRule(ctx, &catalogv1.PutRuleRequest{RuleId: "bugfix-7d", Rule: &catalogv1.AutoApprovalRule{
		Classifications: []typesv1.Classification{typesv1.Classification_CLASSIFICATION_BUGFIX},
		OsFamilies:      []string{"amazon-linux-2023"}, ApproveAfterDays: 7, Enabled: true,
	}})
	require.NoError(t, err)
	got, err := e.client.GetPatch(t.Context(), &catalogv1.GetPatchRequest{PatchId: "ALAS2023-2026-0412"})
	require.NoError(t, err)
	require.Equal(t, typesv1.CertificationState_CERTIFICATION_STATE_NEW, got.GetPatch().GetState(), "a minute before midnight UTC it is not due")

	clock.Advance(time.Minute) // the evaluation timer fires at the due instant
	require.Eventually(t, func() bool {
		got, err = e.client.GetPatch(t.Context(), &catalogv1.GetPatchRequest{PatchId: "ALAS2023-2026-0412"})
		return err == nil && got.GetPatch().GetState() == typesv1.CertificationState_CERTIFICATION_STATE_CERTIFIED
	}, 10*time.Second, 10*time.Millisecond)
	step := got.GetPatch().GetHistory()[0]
	require.Equal(t, "rule:bugfix-7d", step.GetActor())
	require.Equal(t, "bugfix-7d", step.GetRuleId())
	require.Equal(t, typesv1.CertificationState_CERTIFICATION_STATE_NEW, step.GetFrom())
	require.Contains(t, step.GetNotes(), "due 2026-11-10")
	require.Len(t, step.GetEvidence(), 1)

	// Other classifications are not the rule's.
	other, err := e.client.GetPatch(t.Context(), &catalogv1.GetPatchRequest{PatchId: "ALAS2023-2026-0088"})
	require.NoError(t, err)
	require.Equal(t, typesv1.CertificationState_CERTIFICATION_STATE_NEW, other.GetPatch().GetState())
	require.Len(t, catalogEvents(t, e.js, "catalog.rule.changed"), 1)

	_, err = e.client.PutRule(ctx, &catalogv1.PutRuleRequest{RuleId: "Bad Rule", Rule: &catalogv1.AutoApprovalRule{ApproveAfterDays: 400}})
	requireCode(t, err, codes.InvalidArgument, "rule.ruleId", "rule.approveAfterDays", "from 0 to 360")
}

// certify takes a patch through IN_TEST to CERTIFIED.
func certify(t *testing.T, e *env, ids ...string) {
	t.Helper()
	ctx := as(t.Context(), "alice@provider")
	for _, id := range ids {
		_, err := e.client.CertifyPatch(ctx, &catalogv1.CertifyPatchRequest{PatchId: id, State: typesv1.CertificationState_CERTIFICATION_STATE_IN_TEST})
		require.NoError(t, err)
		_, err = e.client.CertifyPatch(ctx, &catalogv1.CertifyPatchRequest{PatchId: id, State: typesv1.CertificationState_CERTIFICATION_STATE_CERTIFIED,
			Evidence: []*typesv1.Evidence{{Url: "https://ci.example/" + id}}})
		require.NoError(t, err)
	}
}

func TestBaselinesAreImmutableVersionedAndCertifiedOnly(t *testing.T) {
	e := start(t, catalog.Config{}, catalog.Deps{})
	importDoc(t, e, "updateinfo.xml", sampleDoc(t, updateinfo))
	importDoc(t, e, "2026-Nov.xml", sampleDoc(t, "microsoft/2026-Nov.xml"))
	ctx := as(t.Context(), "bob@provider")
	req := &catalogv1.PublishBaselineRequest{
		BaselineId: "al2023-2026.11", OsFamily: "amazon-linux-2023",
		Patches: []*typesv1.DeploymentRule{
			{PatchId: "ALAS2023-2026-1007", Order: 2, Reboot: typesv1.RebootBehavior_REBOOT_BEHAVIOR_ALWAYS},
			{PatchId: "ALAS2023-2026-1001", Order: 1, ExcludeInstanceTags: []string{"Role=hsm"}},
		},
	}
	_, err := e.client.PublishBaseline(ctx, req)
	requireCode(t, err, codes.FailedPrecondition, `patch "ALAS2023-2026-1007" is NEW`, `patch "ALAS2023-2026-1001" is NEW`)

	certify(t, e, "ALAS2023-2026-1001", "ALAS2023-2026-1007", "KB5070001")
	resp, err := e.client.PublishBaseline(ctx, req)
	require.NoError(t, err)
	require.True(t, resp.GetCreated())
	b := resp.GetBaseline()
	require.Equal(t, int32(1), b.GetVersion(), "the family's first version")
	require.Equal(t, []string{"ALAS2023-2026-1001", "ALAS2023-2026-1007"}, []string{b.GetPatches()[0].GetId(), b.GetPatches()[1].GetId()}, "install order")
	require.Equal(t, typesv1.RebootBehavior_REBOOT_BEHAVIOR_ALWAYS, b.GetRules()[1].GetReboot())
	require.Equal(t, []string{"Role=hsm"}, b.GetRules()[0].GetExcludeInstanceTags())
	require.Equal(t, "bob@provider", b.GetPublishedBy())
	require.True(t, strings.HasPrefix(b.GetDigest(), "sha256:"))

	// The same request again changes nothing.
	again, err := e.client.PublishBaseline(ctx, req)
	require.NoError(t, err)
	require.False(t, again.GetCreated())
	require.Len(t, catalogEvents(t, e.js, "catalog.baseline.published"), 1)

	// Other content under the same id is refused.
	changed := &catalogv1.PublishBaselineRequest{BaselineId: "al2023-2026.11", OsFamily: "amazon-linux-2023", Patches: req.GetPatches()[:1]}
	_, err = e.client.PublishBaseline(ctx, changed)
	requireCode(t, err, codes.FailedPrecondition, `baseline "al2023-2026.11" is published (version 1 of amazon-linux-2023`, "never changes")

	// A patch of another family is refused, and so is a taken version.
	_, err = e.client.PublishBaseline(ctx, &catalogv1.PublishBaselineRequest{BaselineId: "al2023-x", OsFamily: "amazon-linux-2023", Patches: []*typesv1.DeploymentRule{{PatchId: "KB5070001"}}})
	requireCode(t, err, codes.FailedPrecondition, `patch "KB5070001" does not apply to amazon-linux-2023`)
	_, err = e.client.PublishBaseline(ctx, &catalogv1.PublishBaselineRequest{BaselineId: "al2023-dup", OsFamily: "amazon-linux-2023", Version: 1, Patches: req.GetPatches()[:1]})
	requireCode(t, err, codes.FailedPrecondition, `version 1 of amazon-linux-2023 is published as baseline "al2023-2026.11"`)

	next, err := e.client.PublishBaseline(ctx, &catalogv1.PublishBaselineRequest{BaselineId: "al2023-2026.12", OsFamily: "amazon-linux-2023", Patches: req.GetPatches()[:1]})
	require.NoError(t, err)
	require.Equal(t, int32(2), next.GetBaseline().GetVersion())
	ws, err := e.client.PublishBaseline(ctx, &catalogv1.PublishBaselineRequest{BaselineId: "ws2022-2026.11", OsFamily: "windows-server-2022", Patches: []*typesv1.DeploymentRule{{PatchId: "KB5070001"}}})
	require.NoError(t, err)
	require.Equal(t, int32(1), ws.GetBaseline().GetVersion(), "versions count per OS family")

	list, err := e.client.ListBaselines(t.Context(), &catalogv1.ListBaselinesRequest{})
	require.NoError(t, err)
	var ids []string
	for _, b := range list.GetBaselines() {
		ids = append(ids, b.GetBaselineId())
	}
	require.Equal(t, []string{"al2023-2026.12", "al2023-2026.11", "ws2022-2026.11"}, ids, "per family, newest (highest version) first")

	_, err = e.client.PublishBaseline(ctx, &catalogv1.PublishBaselineRequest{BaselineId: "Bad/Id", OsFamily: "", Version: -1,
		Patches: []*typesv1.DeploymentRule{{PatchId: "a"}, {PatchId: "a", Order: -1, ExcludeInstanceTags: []string{"=x"}}}})
	requireCode(t, err, codes.InvalidArgument, "baselineId", "osFamily", "version", `patches[1].patchId: "a": duplicate of patches[0]`,
		"patches[1].order", "patches[1].excludeInstanceTags[0]")
	_, err = e.client.GetBaseline(t.Context(), &catalogv1.GetBaselineRequest{BaselineId: "al2023-2099.01"})
	requireCode(t, err, codes.NotFound, `baseline "al2023-2099.01"`)
}

func TestAPublishedBaselineStaysImmutableAfterTheDuplicateWindow(t *testing.T) {
	ns := testkit.StartNATS(t)
	nc := ns.Connect(t)
	// The streams remember message ids for 100 ms only (2 h in production).
	short := stagetest.BusConfig()
	short.Streams.DuplicateWindow = 100 * time.Millisecond
	e := startOnWith(t, nc, catalog.Config{}, catalog.Deps{}, short)
	importDoc(t, e, "updateinfo.xml", sampleDoc(t, updateinfo))
	certify(t, e, "ALAS2023-2026-1001", "ALAS2023-2026-1007")
	ctx := as(t.Context(), "bob@provider")
	req := &catalogv1.PublishBaselineRequest{BaselineId: "al2023-2026.11", OsFamily: "amazon-linux-2023",
		Patches: []*typesv1.DeploymentRule{{PatchId: "ALAS2023-2026-1001"}, {PatchId: "ALAS2023-2026-1007"}}}
	_, err := e.client.PublishBaseline(ctx, req)
	require.NoError(t, err)

	// Wait until the window has passed: the same Nats-Msg-Id is stored again.
	_, err = e.js.Publish(t.Context(), "catalog.probe.window", []byte("x"), jetstreamMsgID("probe"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		ack, err := e.js.Publish(t.Context(), "catalog.probe.window", []byte("x"), jetstreamMsgID("probe"))
		return err == nil && !ack.Duplicate
	}, 10*time.Second, 20*time.Millisecond)

	// A restarted catalog, other content under the same id: still refused (the KV decides).
	e.stop()
	e = startOnWith(t, nc, catalog.Config{}, catalog.Deps{}, short)
	_, err = e.client.PublishBaseline(ctx, &catalogv1.PublishBaselineRequest{BaselineId: "al2023-2026.11", OsFamily: "amazon-linux-2023",
		Patches: []*typesv1.DeploymentRule{{PatchId: "ALAS2023-2026-1007"}}})
	requireCode(t, err, codes.FailedPrecondition, "never changes")
	again, err := e.client.PublishBaseline(ctx, req)
	require.NoError(t, err)
	require.False(t, again.GetCreated(), "the same content is still the published version")
	require.Len(t, catalogEvents(t, e.js, "catalog.baseline.published"), 1)
}

func TestEmergencyBaselineAddsTheCVEFixesToTheNewestBaselineAsTheNextVersion(t *testing.T) {
	e := start(t, catalog.Config{}, catalog.Deps{})
	importDoc(t, e, "updateinfo.xml", sampleDoc(t, updateinfo))
	certify(t, e, "ALAS2023-2026-1001", "ALAS2023-2026-1007")
	ctx := as(t.Context(), "bob@provider")
	_, err := e.client.PublishBaseline(ctx, &catalogv1.PublishBaselineRequest{BaselineId: "al2023-2026.11", OsFamily: "amazon-linux-2023",
		Patches: []*typesv1.DeploymentRule{{PatchId: "ALAS2023-2026-1001"}}})
	require.NoError(t, err)

	_, err = e.client.PublishEmergencyBaseline(ctx, &catalogv1.PublishEmergencyBaselineRequest{OsFamily: "amazon-linux-2023", Cve: "CVE-2099-0001"})
	requireCode(t, err, codes.FailedPrecondition, "no certified patch of amazon-linux-2023 fixes CVE-2099-0001")
	_, err = e.client.PublishEmergencyBaseline(ctx, &catalogv1.PublishEmergencyBaselineRequest{OsFamily: "amazon-linux-2023", Cve: "cve-bad"})
	requireCode(t, err, codes.InvalidArgument, `cve "cve-bad": must be a CVE id`)

	resp, err := e.client.PublishEmergencyBaseline(ctx, &catalogv1.PublishEmergencyBaselineRequest{OsFamily: "amazon-linux-2023", Cve: "CVE-2026-23112", Notes: "nf_tables exploited in the wild"})
	require.NoError(t, err)
	b := resp.GetBaseline()
	require.Equal(t, "amazon-linux-2023-emergency-cve-2026-23112", b.GetBaselineId())
	require.True(t, b.GetEmergency())
	require.Equal(t, "CVE-2026-23112", b.GetEmergencyCve())
	require.Equal(t, int32(2), b.GetVersion())
	require.Equal(t, "ALAS2023-2026-1007", b.GetPatches()[0].GetId(), "the fix installs first")
	require.Equal(t, "ALAS2023-2026-1001", b.GetPatches()[1].GetId(), "then the newest baseline's patches")
	again, err := e.client.PublishEmergencyBaseline(ctx, &catalogv1.PublishEmergencyBaselineRequest{OsFamily: "amazon-linux-2023", Cve: "CVE-2026-23112"})
	require.NoError(t, err)
	require.False(t, again.GetCreated())
}

func TestTenantsApproveRejectOrAutoApproveAfterTheirDelay(t *testing.T) {
	e := start(t, catalog.Config{}, catalog.Deps{})
	importDoc(t, e, "updateinfo.xml", sampleDoc(t, updateinfo))
	certify(t, e, "ALAS2023-2026-1001")
	ops := as(t.Context(), "bob@provider")
	for _, id := range []string{"al2023-2026.11", "al2023-2026.12"} {
		_, err := e.client.PublishBaseline(ops, &catalogv1.PublishBaselineRequest{BaselineId: id, OsFamily: "amazon-linux-2023",
			Patches: []*typesv1.DeploymentRule{{PatchId: "ALAS2023-2026-1001", Order: int32(len(id))}}, Notes: id})
		require.NoError(t, err)
	}
	designtest.PutTenant(t, e.js, "acme", nil)
	designtest.PutTenant(t, e.js, "globex", nil)
	tenant := as(t.Context(), "carol@acme")

	list, err := e.client.ListApprovals(t.Context(), &catalogv1.ListApprovalsRequest{Tenant: "acme"})
	require.NoError(t, err)
	require.Len(t, list.GetApprovals(), 2)
	for _, a := range list.GetApprovals() {
		require.Equal(t, catalogv1.ApprovalState_APPROVAL_STATE_PENDING, a.GetState())
	}

	ap, err := e.client.ApproveBaseline(tenant, &catalogv1.ApproveBaselineRequest{Tenant: "acme", BaselineId: "al2023-2026.11", Notes: "CAB 2026-11-19"})
	require.NoError(t, err)
	require.Equal(t, catalogv1.ApprovalState_APPROVAL_STATE_APPROVED, ap.GetApproval().GetState())
	require.Equal(t, "carol@acme", ap.GetApproval().GetActor())
	_, err = e.client.ApproveBaseline(tenant, &catalogv1.ApproveBaselineRequest{Tenant: "acme", BaselineId: "al2023-2026.11"})
	require.NoError(t, err, "approving again changes nothing")

	_, err = e.client.RejectBaseline(tenant, &catalogv1.RejectBaselineRequest{Tenant: "acme", BaselineId: "al2023-2026.12"})
	requireCode(t, err, codes.InvalidArgument, "reason: required")
	_, err = e.client.RejectBaseline(tenant, &catalogv1.RejectBaselineRequest{Tenant: "acme", BaselineId: "al2023-2026.12", Reason: "freeze until January"})
	require.NoError(t, err)

	approved := streamEvents(t, e.js, "PATCH_EVENTS", "patch.acme.baseline.approved")
	require.Len(t, approved, 1)
	msg := approved[0].Data.(*eventsv1.BaselineApproved)
	require.Equal(t, "carol@acme", msg.GetApprovedBy())
	require.Equal(t, int32(1), msg.GetVersion())
	require.False(t, msg.GetAutoApproved())
	rejected := streamEvents(t, e.js, "PATCH_EVENTS", "patch.acme.baseline.rejected")
	require.Len(t, rejected, 1)
	require.Equal(t, "freeze until January", rejected[0].Data.(*eventsv1.BaselineRejected).GetReason())

	// globex auto-approves after 48 hours; the baselines were published at t0.
	_, err = e.client.PutApprovalPolicy(as(t.Context(), "dave@globex"), &catalogv1.PutApprovalPolicyRequest{Tenant: "globex",
		Policy: &catalogv1.ApprovalPolicy{AutoApprove: true, Delay: durationpb.New(48 * time.Hour)}})
	require.NoError(t, err)
	require.Empty(t, streamEvents(t, e.js, "PATCH_EVENTS", "patch.globex.baseline.approved"))
	e.clock.Advance(48 * time.Hour)
	require.Eventually(t, func() bool {
		return len(streamEvents(t, e.js, "PATCH_EVENTS", "patch.globex.baseline.approved")) == 2
	}, 10*time.Second, 20*time.Millisecond)
	auto := streamEvents(t, e.js, "PATCH_EVENTS", "patch.globex.baseline.approved")[0].Data.(*eventsv1.BaselineApproved)
	require.True(t, auto.GetAutoApproved())
	require.Equal(t, "policy:auto-approve", auto.GetApprovedBy())

	_, err = e.client.ApproveBaseline(tenant, &catalogv1.ApproveBaselineRequest{Tenant: "Acme Corp", BaselineId: "al2023-2026.11"})
	requireCode(t, err, codes.InvalidArgument, `tenant "Acme Corp": must match`)
	_, err = e.client.ApproveBaseline(tenant, &catalogv1.ApproveBaselineRequest{Tenant: "acme", BaselineId: "al2023-2099.01"})
	requireCode(t, err, codes.NotFound, `baseline "al2023-2099.01"`)
	_, err = e.client.ApproveBaseline(tenant, &catalogv1.ApproveBaselineRequest{Tenant: "initech", BaselineId: "al2023-2026.11"})
	requireCode(t, err, codes.NotFound, "tenant initech is not in the service design")
	_, err = e.client.ListApprovals(t.Context(), &catalogv1.ListApprovalsRequest{Tenant: "initech"})
	requireCode(t, err, codes.NotFound, "tenant initech")
	_, err = e.client.PutApprovalPolicy(tenant, &catalogv1.PutApprovalPolicyRequest{Tenant: "acme", Policy: &catalogv1.ApprovalPolicy{Delay: durationpb.New(-time.Hour)}})
	requireCode(t, err, codes.InvalidArgument, "policy.delay", "must be from 0")
}

func TestListPatchesFiltersAndPages(t *testing.T) {
	e := start(t, catalog.Config{}, catalog.Deps{})
	for _, d := range []string{updateinfo, "microsoft/2026-Nov.xml", "ubuntu/USN-7700-1.json", "redhat/rhsa-2026_1001.json"} {
		importDoc(t, e, d, sampleDoc(t, d))
	}
	list := func(req *catalogv1.ListPatchesRequest) []string {
		resp, err := e.client.ListPatches(t.Context(), req)
		require.NoError(t, err)
		var ids []string
		for _, p := range resp.GetPatches() {
			ids = append(ids, p.GetPatch().GetId())
		}
		return ids
	}
	require.Len(t, list(&catalogv1.ListPatchesRequest{}), 8)
	require.Equal(t, []string{"KB5070001", "KB5070002"}, list(&catalogv1.ListPatchesRequest{Vendor: "microsoft"}))
	require.Equal(t, []string{"KB5070001"}, list(&catalogv1.ListPatchesRequest{OsFamily: "windows-server-2022"}))
	require.Equal(t, []string{"ALAS2023-2026-0412"}, list(&catalogv1.ListPatchesRequest{Classification: typesv1.Classification_CLASSIFICATION_BUGFIX}))
	require.Equal(t, []string{"USN-7700-1"}, list(&catalogv1.ListPatchesRequest{Cve: "CVE-2026-30002"}))
	require.Equal(t, []string{"ALAS2023-2026-1001", "KB5070001", "KB5070002"}, list(&catalogv1.ListPatchesRequest{Severity: typesv1.Severity_SEVERITY_CRITICAL}))
	require.Equal(t, []string{"ALAS2023-2026-1007", "ALAS2023-2026-1001", "KB5070001", "KB5070002"},
		list(&catalogv1.ListPatchesRequest{ReleasedAfter: timestamppb.New(time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC))}), "newest release first")
	certify(t, e, "USN-7700-1")
	require.Equal(t, []string{"USN-7700-1"}, list(&catalogv1.ListPatchesRequest{State: typesv1.CertificationState_CERTIFICATION_STATE_CERTIFIED}))

	var pages [][]string
	token := ""
	for {
		resp, err := e.client.ListPatches(t.Context(), &catalogv1.ListPatchesRequest{PageSize: 3, PageToken: token})
		require.NoError(t, err)
		var ids []string
		for _, p := range resp.GetPatches() {
			ids = append(ids, p.GetPatch().GetId())
		}
		pages = append(pages, ids)
		if token = resp.GetNextPageToken(); token == "" {
			break
		}
	}
	require.Len(t, pages, 3)
	require.Equal(t, list(&catalogv1.ListPatchesRequest{}), append(append(pages[0], pages[1]...), pages[2]...))

	_, err := e.client.ListPatches(t.Context(), &catalogv1.ListPatchesRequest{PageSize: 5000, Cve: "CVE-1", PageToken: "!!"})
	requireCode(t, err, codes.InvalidArgument, "pageSize: must be from 1 to 1000", `cve: "CVE-1": must be a CVE id`)
	_, err = e.client.ListPatches(t.Context(), &catalogv1.ListPatchesRequest{PageToken: "!!"})
	requireCode(t, err, codes.InvalidArgument, "pageToken: malformed")
	_, err = e.client.GetPatch(t.Context(), &catalogv1.GetPatchRequest{PatchId: "RHSA-2099:0001"})
	requireCode(t, err, codes.NotFound, `patch "RHSA-2099:0001"`)
}

func TestImportRefusesABadDocumentNamingTheField(t *testing.T) {
	e := start(t, catalog.Config{}, catalog.Deps{})
	ctx := as(t.Context(), "ops@provider")
	_, err := e.client.ImportAdvisory(ctx, &catalogv1.ImportAdvisoryRequest{Name: "broken.xml", Document: []byte(`<updates><update><id>X-1</id><issued date="soon"/></update></updates>`)})
	requireCode(t, err, codes.InvalidArgument, `document "broken.xml": field "updates/update[1]/issued/@date"`)
	_, err = e.client.ImportAdvisory(ctx, &catalogv1.ImportAdvisoryRequest{Format: "rss", Document: []byte("x")})
	requireCode(t, err, codes.InvalidArgument, "format", "must be one of csaf, osv, updateinfo, cvrf")
	_, err = e.client.ImportAdvisory(ctx, &catalogv1.ImportAdvisoryRequest{})
	requireCode(t, err, codes.InvalidArgument, "document: required")
	dry, err := e.client.ImportAdvisory(t.Context(), &catalogv1.ImportAdvisoryRequest{DryRun: true, Document: sampleDoc(t, "ubuntu/USN-7700-1.json")})
	require.NoError(t, err, "a dry run needs no actor")
	require.Equal(t, "parsed", dry.GetPatches()[0].GetOutcome())
	require.Empty(t, catalogEvents(t, e.js, "catalog.patch.>"), "a dry run stores and publishes nothing")
}

func TestNewRefusesBadConfig(t *testing.T) {
	_, err := catalog.New(catalog.Config{Sources: []catalog.Source{
		{Name: "a", Kind: "ftp"},
		{Name: "b", Kind: catalog.KindHTTP, URLs: []string{"ftp://x"}},
		{Name: "c", Kind: catalog.KindDir, Format: "rss"},
		{Name: "d", Kind: catalog.KindS3},
		{Name: "e", Kind: catalog.KindCSAFProvider},
	}, KVReplicas: 9}, catalog.Deps{})
	require.Error(t, err)
	for _, w := range []string{`Sources[0].Kind "ftp": must be dir, http, s3 or csaf-provider`, `Sources[1].URLs[0] "ftp://x": must be an http(s) URL`,
		"Sources[2].Dir: required", `Sources[2].Format: format "rss"`, "Sources[3].S3.Bucket: required", "Sources[4].Provider: required", "KVReplicas 9"} {
		require.ErrorContains(t, err, w)
	}
}

func TestAKBNamedByTwoDocumentsMergesAndKeepsBothContributionsThroughARule(t *testing.T) {
	e := start(t, catalog.Config{}, catalog.Deps{})
	monthly := sampleDoc(t, "microsoft/2026-Nov.xml")
	importDoc(t, e, "2026-Nov.xml", monthly)
	// An out-of-band document for the same KB and another CVE.
	oob := strings.ReplaceAll(string(monthly), "<ID xml:lang=\"en-US\">2026-Nov</ID>", "<ID xml:lang=\"en-US\">2026-Nov-OOB</ID>")
	oob = strings.ReplaceAll(oob, "CVE-2026-40001", "CVE-2026-49999")
	oob = strings.ReplaceAll(oob, "CVE-2026-40002", "CVE-2026-49998")
	resp := importDoc(t, e, "2026-Nov-OOB.xml", []byte(oob))
	require.Equal(t, "updated", resp.GetPatches()[0].GetOutcome())

	_, err := e.client.PutRule(as(t.Context(), "ops@provider"), &catalogv1.PutRuleRequest{RuleId: "critical-now", Rule: &catalogv1.AutoApprovalRule{
		Severities: []typesv1.Severity{typesv1.Severity_SEVERITY_CRITICAL}, Enabled: true,
	}})
	require.NoError(t, err)
	got, err := e.client.GetPatch(t.Context(), &catalogv1.GetPatchRequest{PatchId: "KB5070001"})
	require.NoError(t, err)
	p := got.GetPatch()
	require.Equal(t, typesv1.CertificationState_CERTIFICATION_STATE_CERTIFIED, p.GetState())
	require.Len(t, p.GetContributions(), 2, "the rule's step kept both documents' contributions")
	require.Equal(t, []string{"CVE-2026-40001", "CVE-2026-40002", "CVE-2026-49998", "CVE-2026-49999"}, p.GetPatch().GetCves())
	require.Len(t, p.GetPatch().GetSources(), 2)

	// Re-importing either document changes nothing.
	for name, doc := range map[string][]byte{"2026-Nov.xml": monthly, "2026-Nov-OOB.xml": []byte(oob)} {
		for _, ip := range importDoc(t, e, name, doc).GetPatches() {
			require.Equal(t, "unchanged", ip.GetOutcome(), name)
		}
	}
}
