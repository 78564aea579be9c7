package domain_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/patchwave/patchwave/libs/apierr"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
	"github.com/patchwave/patchwave/services/catalog/internal/domain"
)

var t0 = time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)

func patch(id, doc string, cves ...string) *typesv1.Patch {
	return &typesv1.Patch{
		Id: id, Vendor: "Microsoft", OsFamilies: []string{"windows-server-2022"}, Cves: cves, Kbs: []string{id},
		Severity: typesv1.Severity_SEVERITY_HIGH, ReleasedAt: timestamppb.New(t0.Add(-48 * time.Hour)), UpdatedAt: timestamppb.New(t0),
		Sources: []*typesv1.AdvisorySource{{DocumentId: doc, Digest: "sha256:" + doc}},
	}
}

func TestPatchKeyIsOneToOneAndKVSafe(t *testing.T) {
	require.Equal(t, "RHSA-2021=3A5186", domain.PatchKey("RHSA-2021:5186"))
	require.Equal(t, "USN-7000-1", domain.PatchKey("USN-7000-1"))
	require.Equal(t, "a=2Eb", domain.PatchKey("a.b"))
	require.NotEqual(t, domain.PatchKey("a=3A"), domain.PatchKey("a:"), "the escape character is escaped too")
}

func TestRecordIngest(t *testing.T) {
	t.Run("a new patch is NEW at content version 1", func(t *testing.T) {
		var r domain.Record
		changed, err := r.Ingest(patch("KB5070001", "2026-Nov", "CVE-2026-40001"), t0)
		require.NoError(t, err)
		require.Contains(t, changed, "cves")
		require.Equal(t, domain.StateNew, r.State)
		require.Equal(t, int32(1), r.ContentVersion)
		require.True(t, t0.Equal(r.DiscoveredAt))
	})
	t.Run("the same document again changes nothing", func(t *testing.T) {
		var r domain.Record
		_, err := r.Ingest(patch("KB5070001", "2026-Nov", "CVE-2026-40001"), t0)
		require.NoError(t, err)
		changed, err := r.Ingest(patch("KB5070001", "2026-Nov", "CVE-2026-40001"), t0)
		require.NoError(t, err)
		require.Nil(t, changed)
		require.Equal(t, int32(1), r.ContentVersion)
	})
	t.Run("another document naming the same KB merges its CVEs", func(t *testing.T) {
		var r domain.Record
		_, err := r.Ingest(patch("KB5002744", "msrc_CVE-2025-49706", "CVE-2025-49706"), t0)
		require.NoError(t, err)
		changed, err := r.Ingest(patch("KB5002744", "msrc_CVE-2025-53770", "CVE-2025-53770"), t0)
		require.NoError(t, err)
		require.Equal(t, []string{"cves"}, changed)
		require.Equal(t, []string{"CVE-2025-49706", "CVE-2025-53770"}, r.Patch.GetCves())
		require.Len(t, r.Contributions, 2)
		require.Len(t, r.Patch.GetSources(), 2)
		require.Equal(t, int32(2), r.ContentVersion)
	})
	t.Run("an updated document replaces its own contribution only", func(t *testing.T) {
		var r domain.Record
		_, _ = r.Ingest(patch("KB5002744", "a", "CVE-2025-49706"), t0)
		_, _ = r.Ingest(patch("KB5002744", "b", "CVE-2025-53770"), t0)
		p := patch("KB5002744", "a", "CVE-2025-49706")
		p.Severity = typesv1.Severity_SEVERITY_CRITICAL
		changed, err := r.Ingest(p, t0)
		require.NoError(t, err)
		require.Equal(t, []string{"severity"}, changed)
		require.Equal(t, []string{"CVE-2025-49706", "CVE-2025-53770"}, r.Patch.GetCves())
	})
	t.Run("a new digest with the same content is no change", func(t *testing.T) {
		var r domain.Record
		_, _ = r.Ingest(patch("KB1", "a", "CVE-2025-49706"), t0)
		p := patch("KB1", "a", "CVE-2025-49706")
		p.Sources[0].Digest = "sha256:reformatted"
		changed, err := r.Ingest(p, t0)
		require.NoError(t, err)
		require.Nil(t, changed)
	})
	t.Run("another id is refused", func(t *testing.T) {
		var r domain.Record
		_, _ = r.Ingest(patch("KB1", "a"), t0)
		_, err := r.Ingest(patch("KB2", "a"), t0)
		require.ErrorContains(t, err, "ids differ")
	})
}

func TestCertifyStateMachine(t *testing.T) {
	evidence := []*typesv1.Evidence{{Url: "https://ci.example/1"}}
	tests := []struct {
		name    string
		path    []typesv1.CertificationState
		rule    string
		wantErr string
	}{
		{"NEW goes to test", []typesv1.CertificationState{domain.StateInTest}, "", ""},
		{"a tested patch is certified", []typesv1.CertificationState{domain.StateInTest, domain.StateCertified}, "", ""},
		{"a tested patch is rejected", []typesv1.CertificationState{domain.StateInTest, domain.StateRejected}, "", ""},
		{"a certified patch is revoked", []typesv1.CertificationState{domain.StateInTest, domain.StateCertified, domain.StateRevoked}, "", ""},
		{"a rule certifies a NEW patch directly", []typesv1.CertificationState{domain.StateCertified}, "r1", ""},
		{"a person cannot skip the test", []typesv1.CertificationState{domain.StateCertified}, "", "is NEW: cannot move to CERTIFIED (allowed: IN_TEST)"},
		{"a rejected patch is final", []typesv1.CertificationState{domain.StateInTest, domain.StateRejected, domain.StateInTest}, "", "is REJECTED: cannot move to IN_TEST (allowed: none: it is final)"},
		{"NEW cannot be revoked", []typesv1.CertificationState{domain.StateRevoked}, "", "is NEW: cannot move to REVOKED"},
		{"a certified patch cannot go back to test", []typesv1.CertificationState{domain.StateInTest, domain.StateCertified, domain.StateInTest}, "", "is CERTIFIED: cannot move to IN_TEST (allowed: REVOKED)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var r domain.Record
			_, _ = r.Ingest(patch("KB1", "a"), t0)
			var err error
			for _, to := range tt.path {
				_, err = r.Certify(domain.StepRequest{To: to, Actor: "alice", Evidence: evidence, RuleID: tt.rule}, t0)
				if err != nil {
					break
				}
			}
			if tt.wantErr == "" {
				require.NoError(t, err)
				require.Equal(t, tt.path[len(tt.path)-1], r.State)
				require.Len(t, r.History, len(tt.path))
				return
			}
			require.ErrorIs(t, err, domain.ErrConflict)
			require.ErrorContains(t, err, tt.wantErr)
		})
	}
}

func TestStepRequestValidate(t *testing.T) {
	err := domain.StepRequest{To: domain.StateNew, Evidence: []*typesv1.Evidence{{}, {Url: "ftp://x"}}}.Validate()
	var ve *apierr.ValidationError
	require.ErrorAs(t, err, &ve)
	require.ErrorContains(t, err, "state: must be IN_TEST, CERTIFIED, REJECTED or REVOKED, got NEW")
	require.ErrorContains(t, err, "actor: required")
	require.ErrorContains(t, err, "evidence[0]: a url or an attached result (content) is required")
	require.ErrorContains(t, err, `evidence[1].url: "ftp://x": must be an absolute http(s) URL`)
	require.ErrorContains(t, domain.StepRequest{To: domain.StateRejected, Actor: "a"}.Validate(), "a REJECTED step needs evidence")
	require.NoError(t, domain.StepRequest{To: domain.StateRevoked, Actor: "a"}.Validate(), "revoking needs no evidence")
}

func TestRuleDueCountsUTCDays(t *testing.T) {
	r := domain.Rule{ID: "sec-7", ApproveAfterDays: 7, Enabled: true, Classifications: []typesv1.Classification{typesv1.Classification_CLASSIFICATION_SECURITY}}
	late := time.Date(2026, 11, 10, 23, 30, 0, 0, time.UTC)
	require.Equal(t, time.Date(2026, 11, 17, 0, 0, 0, 0, time.UTC), r.DueAt(late))
	// The same instant written in Berlin (00:30 on the 11th) is still the 10th in UTC.
	require.Equal(t, r.DueAt(late), r.DueAt(late.In(time.FixedZone("CET", 3600))))
	r0 := domain.Rule{ID: "now", Enabled: true}
	require.Equal(t, time.Date(2026, 11, 10, 0, 0, 0, 0, time.UTC), r0.DueAt(late), "0 days: due from the release day")

	p := &typesv1.Patch{Classification: typesv1.Classification_CLASSIFICATION_SECURITY, OsFamilies: []string{"ubuntu-24.04"}, ReleasedAt: timestamppb.New(late)}
	require.False(t, r.Due(p, time.Date(2026, 11, 16, 23, 59, 59, 0, time.UTC)))
	require.True(t, r.Due(p, time.Date(2026, 11, 17, 0, 0, 0, 0, time.UTC)))
	r.OSFamilies = []string{"rhel-9"}
	require.False(t, r.Matches(p), "another family")
	r.OSFamilies, r.Enabled = nil, false
	require.False(t, r.Matches(p), "a disabled rule matches nothing")
}

func TestBaselineDigestAndBuild(t *testing.T) {
	cert := func(id string, families ...string) *domain.Record {
		return &domain.Record{Patch: &typesv1.Patch{Id: id, OsFamilies: families}, State: domain.StateCertified}
	}
	req := domain.PublishRequest{ID: "al2023-2026.11", OSFamily: "amazon-linux-2023", Actor: "bob",
		Rules: []*typesv1.DeploymentRule{{PatchId: "b", Order: 2}, {PatchId: "a", Order: 1}}}
	recs := map[string]*domain.Record{"a": cert("a", "amazon-linux-2023"), "b": cert("b", "amazon-linux-2023")}
	b, err := req.Build(recs, 3, t0)
	require.NoError(t, err)
	require.Equal(t, "a", b.Patches[0].GetId(), "install order")
	require.NoError(t, b.Validate())
	again, err := req.Build(recs, 3, t0.Add(time.Hour))
	require.NoError(t, err)
	require.Equal(t, b.Digest, again.Digest, "the digest is the content, not the time")
	other, err := req.Build(recs, 4, t0)
	require.NoError(t, err)
	require.NotEqual(t, b.Digest, other.Digest, "the version is content")

	recs["b"].State = domain.StateInTest
	_, err = req.Build(recs, 3, t0)
	require.ErrorIs(t, err, domain.ErrConflict)
	require.ErrorContains(t, err, `patch "b" is IN_TEST`)
	delete(recs, "b")
	_, err = req.Build(recs, 3, t0)
	require.ErrorContains(t, err, `patch "b": not in the catalog`)
}

func TestPolicy(t *testing.T) {
	p := domain.Policy{Tenant: "acme", AutoApprove: true, Delay: 72 * time.Hour, OSFamilies: []string{"amazon-linux-2023"}, ChangedBy: "carol"}
	require.NoError(t, p.Validate())
	require.True(t, p.Covers("amazon-linux-2023"))
	require.False(t, p.Covers("windows-server-2022"))
	require.Equal(t, t0.Add(72*time.Hour), p.DueAt(t0))
	p.Delay = 91 * 24 * time.Hour
	require.ErrorContains(t, p.Validate(), "policy.delay")
	a, changed := domain.Approval{}.Decide(domain.ApprovalApproved, "carol", "ok", false, t0)
	require.True(t, changed)
	_, changed = a.Decide(domain.ApprovalApproved, "dave", "again", false, t0)
	require.False(t, changed, "the same decision again changes nothing")
}
