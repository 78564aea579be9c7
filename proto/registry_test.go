package patchwaveproto_test

import (
	"io/fs"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"google.golang.org/protobuf/reflect/protoregistry"

	_ "github.com/patchwave/patchwave/proto"
)

// TestEveryProtoFileIsRegistered walks the .proto sources and requires each to be in the
// protobuf registry once this package is imported, so a new package cannot escape the checks
// that range over the registry (every rpc declares its access rule).
func TestEveryProtoFileIsRegistered(t *testing.T) {
	var files []string
	require.NoError(t, filepath.WalkDir("patchwave", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && filepath.Ext(p) == ".proto" {
			files = append(files, filepath.ToSlash(p))
		}
		return err
	}))
	require.NotEmpty(t, files)
	for _, f := range files {
		_, err := protoregistry.GlobalFiles.FindFileByPath(f)
		require.NoError(t, err, "%s is not registered: import its Go package in proto/registry.go", f)
	}
}
