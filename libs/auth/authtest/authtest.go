// Package authtest helps tests walk the API the way a new user would: every route of the
// served OpenAPI document with the access rule of its rpc, and concrete paths to call.
package authtest

import (
	"encoding/json"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/patchwave/patchwave/libs/auth"
	_ "github.com/patchwave/patchwave/proto" // every rpc's rule in the registry
)

// Route is one operation of the OpenAPI document.
type Route struct {
	// Method is the HTTP method, upper case.
	Method string
	// Path is the path template, e.g. "/v1/tenants/{tenant}/waves/{wave}".
	Path string
	// OperationID is grpc-gateway's "<Service>_<Method>[n]".
	OperationID string
	// Rule is the access rule of the operation's rpc.
	Rule auth.Rule
}

// Tenanted reports whether the route names a tenant in its path.
func (r Route) Tenanted() bool { return strings.Contains(r.Path, "{tenant}") }

// Routes returns every operation of the OpenAPI v2 document doc, sorted by path and method,
// each with the rule of its rpc; an operation without one fails the test.
func Routes(t testing.TB, doc []byte) []Route {
	t.Helper()
	var d struct {
		Paths map[string]map[string]struct {
			OperationID string `json:"operationId"`
		} `json:"paths"`
	}
	require.NoError(t, json.Unmarshal(doc, &d))
	rules, err := auth.Rules()
	require.NoError(t, err)
	var out []Route
	for p, ops := range d.Paths {
		for m, op := range ops {
			svc, method, ok := strings.Cut(op.OperationID, "_")
			require.True(t, ok, "operation id %q", op.OperationID)
			method = strings.TrimRight(method, "0123456789") // additional bindings: ListFreezes2
			rt := Route{Method: strings.ToUpper(m), Path: p, OperationID: op.OperationID}
			for _, r := range rules {
				if strings.HasSuffix(r.Method, "."+svc+"/"+method) {
					rt.Rule = r
				}
			}
			require.NotEmpty(t, rt.Rule.Method, "operation %s (%s %s) has an rpc with a rule", op.OperationID, rt.Method, p)
			out = append(out, rt)
		}
	}
	require.NotEmpty(t, out, "the document has routes")
	sort.Slice(out, func(i, j int) bool { return out[i].Path+" "+out[i].Method < out[j].Path+" "+out[j].Method })
	return out
}

// Fill gives a path template's parameters values: tenant, and ids that need not exist.
func Fill(path, tenant string) string {
	return strings.NewReplacer("{tenant}", tenant, "{wave}", "1", "{runId}", "run-x", "{baselineId}", "b-1",
		"{accountId}", "123456789012", "{freezeId}", "f-1", "{key}", "2027-01", "{requestId}", "sr-1",
		"{keyId}", "00000000000000000000", "{name}", "feed", "{instance}", "i-0abc", "{instanceId}", "i-0abc",
		"{restoreId}", "rst-x", "{patchId}", "ALAS-1", "{ruleId}", "r-1").Replace(path)
}
