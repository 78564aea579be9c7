package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
)

// MaxAdvisoryUpload bounds a raw advisory document through the gateway (an MSRC monthly CVRF
// file is some 20 MiB); the services' gRPC servers take up to 48 MiB (host.MaxMessageSize).
// Larger documents come in through a feed source (directory, HTTP, S3).
const MaxAdvisoryUpload = 32 << 20

// advisoryImportPath is the route of ImportAdvisory.
const advisoryImportPath = "/v1/advisories:import"

// withAdvisoryImport takes the raw vendor document of POST /v1/advisories:import (CSAF or OSV
// JSON, updateinfo.xml or CVRF XML, any Content-Type) and hands it on as the JSON body of
// ImportAdvisory, with the query parameters format, name and dryRun as the other fields
// (grpc-gateway cannot take a raw body without googleapis' HttpBody). Any other request passes
// through untouched.
func withAdvisoryImport(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.URL.Path != advisoryImportPath {
			next.ServeHTTP(w, r)
			return
		}
		doc, ok := readUpload(w, r, "document", MaxAdvisoryUpload,
			fmt.Sprintf("must be at most %d bytes through the API; feed larger documents through a source", MaxAdvisoryUpload))
		if !ok {
			return
		}
		body := map[string]any{"document": doc} // []byte marshals as base64, as protojson expects
		copyQuery(body, r, "format", "name")
		if v := r.URL.Query().Get("dryRun"); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				writeBadRequest(w, "dryRun", fmt.Sprintf("must be true or false, got %q", v))
				return
			}
			body["dryRun"] = b
		}
		forwardJSON(w, r, next, "document", body)
	})
}
