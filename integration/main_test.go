// Package integration runs metalflow's real binary against a real embedded
// Temporal server: the contract a newcomer relies on after `metalflow dev`.
package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// binaryPath is the metalflow binary built once for the whole package.
// A package-level variable is the price of TestMain.
var binaryPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "metalflow-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binaryPath = filepath.Join(dir, "metalflow")
	build := exec.Command("go", "build", "-o", binaryPath, "github.com/metalflow/metalflow/cmd/metalflow")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build metalflow:", err)
		os.Exit(1)
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}
