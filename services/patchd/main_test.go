package patchd_test

import (
	"os"
	"path/filepath"
	"testing"
)

func TestMain(m *testing.M) {
	if spec := os.Getenv(gcChildEnv); spec != "" {
		runGCChild(spec)
		return
	}
	code := m.Run()
	if patchdBinary.path != "" {
		_ = os.RemoveAll(filepath.Dir(patchdBinary.path))
	}
	os.Exit(code)
}
