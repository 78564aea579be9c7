// Package patchwaveproto is the root of the proto module. The generated Go code lives in the
// packages under gen/go; this package only embeds the generated OpenAPI documents, so the
// gateway can serve them without reading files at run time.
package patchwaveproto

import "embed"

// OpenAPI holds the generated OpenAPI v2 documents under "gen/openapi" (one merged document,
// gen/openapi/patchwave.swagger.json, covering every HTTP route of api_config.yaml).
//
//go:embed gen/openapi
var OpenAPI embed.FS
