// Package testagent gives tests the deploy agent's boot files: it runs
// scripts/build-agent-initramfs.sh, which builds the agent and the
// initramfs from Debian's packages once and caches them outside the
// repository, so every later call is quick.
package testagent

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Files are the agent's kernel and initramfs.
type Files struct {
	Kernel string
	Initrd string
}

// Build returns the agent's boot files, building them if the cache does not
// have them for the current sources. It skips the test where they cannot
// be built: the script downloads Debian packages with apt and writes under
// /var/cache, so it needs a Debian host and root.
func Build(t testing.TB) Files {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("testagent: building the agent initramfs needs root (apt-get download, /var/cache/metalflow)")
	}
	if _, err := os.Stat("/etc/debian_version"); err != nil {
		t.Skip("testagent: building the agent initramfs needs a Debian host (its kernel and busybox packages)")
	}
	for _, tool := range []string{"apt-get", "dpkg-deb", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("testagent: building the agent initramfs needs %s", tool)
		}
	}
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("bash", filepath.Join(root, "scripts/build-agent-initramfs.sh"))
	cmd.Dir = root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("build-agent-initramfs.sh: %v\n%s", err, stderr.String())
	}
	lines := strings.Fields(stdout.String())
	if len(lines) != 2 {
		t.Fatalf("build-agent-initramfs.sh printed %q, want the kernel's and the initramfs's paths", stdout.String())
	}
	return Files{Kernel: lines[0], Initrd: lines[1]}
}

// moduleRoot is the directory of go.mod above the test's working directory
// (go test runs a test in its package's directory).
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("testagent: no go.mod above the working directory")
		}
		dir = parent
	}
}
