package httpapi

import (
	"encoding/csv"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	reportingv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/reporting/v1"
	typesv1 "github.com/patchwave/patchwave/proto/gen/go/patchwave/types/v1"
)

func TestTheCSVMarshalerWritesTheRowsOfAListResponse(t *testing.T) {
	m := CSVMarshaler{JSON: Marshaler()}
	at := time.Date(2026, 11, 23, 4, 5, 6, 0, time.UTC)
	resp := &reportingv1.ExportComplianceResponse{Instances: []*reportingv1.InstanceCompliance{
		{InstanceId: "i-1", Wave: 1, OsFamily: "al2023", State: typesv1.ComplianceState_COMPLIANCE_STATE_NON_COMPLIANT,
			BaselineId: "b, \"quoted\"", MissingPatches: 2, AssessedAt: timestamppb.New(at)},
		{InstanceId: "i-2", Wave: 2, State: typesv1.ComplianceState_COMPLIANCE_STATE_UNKNOWN},
	}}
	require.Equal(t, "text/csv; charset=utf-8", m.ContentType(resp))
	b, err := m.Marshal(resp)
	require.NoError(t, err)
	recs, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
	require.NoError(t, err)
	require.Equal(t, [][]string{
		{"instanceId", "wave", "osFamily", "state", "baselineId", "missingPatches", "failedPatches", "lastRunId", "assessedAt"},
		{"i-1", "1", "al2023", "COMPLIANCE_STATE_NON_COMPLIANT", "b, \"quoted\"", "2", "0", "", "2026-11-23T04:05:06Z"},
		{"i-2", "2", "", "COMPLIANCE_STATE_UNKNOWN", "", "0", "0", "", ""},
	}, recs)

	// Anything that is not a list (an error status) stays JSON.
	st := status.New(codes.InvalidArgument, "format: must be json or csv").Proto()
	require.Equal(t, "application/json", m.ContentType(st))
	b, err = m.Marshal(st)
	require.NoError(t, err)
	require.Contains(t, string(b), `"message":"format: must be json or csv"`)
}

func TestExportsPickTheirFormatFromTheQueryThenAccept(t *testing.T) {
	var got string
	h := withCSVExport(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) { got = r.Header.Get("Accept") }))
	for _, tc := range []struct{ path, accept, want string }{
		{"/v1/tenants/acme/compliance/export?format=csv", "", MIMECSV},
		{"/v1/tenants/acme/failed-patches/export", "text/html, text/csv;q=0.9", MIMECSV},
		{"/v1/tenants/acme/compliance/export?format=json", "text/csv", "application/json"},
		{"/v1/tenants/acme/compliance/export", "", "application/json"},
		{"/v1/tenants/acme/compliance", "text/csv", "text/csv"}, // not an export: untouched
	} {
		r := httptest.NewRequest(http.MethodGet, tc.path, nil)
		if tc.accept != "" {
			r.Header.Set("Accept", tc.accept)
		}
		h.ServeHTTP(httptest.NewRecorder(), r)
		require.Equal(t, tc.want, got, tc.path)
	}
}
