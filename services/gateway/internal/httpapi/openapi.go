package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"path"
	"slices"
)

// LoadOpenAPI returns the OpenAPI document served at /openapi.json. The proto build generates one
// merged document; should it ever generate several (one per proto file), their paths and
// definitions are merged into the first, so the gateway still serves a single document.
func LoadOpenAPI(fsys fs.FS) ([]byte, error) {
	if fsys == nil {
		return nil, errors.New("openapi: no documents")
	}
	var files []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && path.Ext(p) == ".json" {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	if len(files) == 0 {
		return nil, errors.New("openapi: no *.json document found")
	}
	slices.Sort(files)
	var merged map[string]any
	for _, name := range files {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("openapi: %w", err)
		}
		var doc map[string]any
		if err := json.Unmarshal(b, &doc); err != nil {
			return nil, fmt.Errorf("openapi %s: %w", name, err)
		}
		if merged == nil {
			merged = doc
			continue
		}
		for _, key := range []string{"paths", "definitions"} {
			dst, _ := merged[key].(map[string]any)
			src, _ := doc[key].(map[string]any)
			if dst == nil {
				dst = map[string]any{}
			}
			maps.Copy(dst, src)
			merged[key] = dst
		}
	}
	out, err := json.MarshalIndent(merged, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("openapi: %w", err)
	}
	return out, nil
}
