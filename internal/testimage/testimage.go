// Package testimage gives tests a real, bootable OS image: a small Debian
// bookworm disk image with cloud-init, built from Debian packages by
// scripts/build-image.sh and cached outside the repository, plus the pieces
// to boot it under qemu (TCG) with a NoCloud seed and wait for its
// phone_home. metalflow's deploy tests write the image to a VM's disk and
// wait for that call.
package testimage

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// CacheDirEnv, when set, is the directory images are built into and cached
// in (the script's --out); the default is /var/cache/metalflow/images.
const CacheDirEnv = "METALFLOW_IMAGE_DIR"

// Build returns the path of the test image (a raw disk image with a .sha256
// file beside it), building it first when the cache does not hold the
// current recipe's image: a cold build takes a few minutes and needs the
// Debian mirror; a cached one returns at once. It skips t when the machine
// cannot build it (not root, not Debian, no mmdebstrap), and fails t when
// the build fails. Concurrent callers, in one or several test binaries,
// build once (the script takes a lock).
func Build(ctx context.Context, t testing.TB) string {
	t.Helper()
	if reason := buildUnavailable(); reason != "" {
		t.Skipf("testimage: cannot build the test OS image: %s", reason)
	}
	script, err := scriptPath()
	if err != nil {
		t.Fatalf("testimage: %v", err)
	}
	args := []string{}
	if dir := os.Getenv(CacheDirEnv); dir != "" {
		args = append(args, "--out", dir)
	}
	start := time.Now()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, script, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("testimage: %s: %v\n%s", script, err, tail(stderr.String(), 40))
	}
	path := lastLine(stdout.String())
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("testimage: %s printed %q, not an image: %v\n%s", script, path, err, tail(stderr.String(), 40))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Logf("testimage: built %s in %.0f s", path, d.Seconds())
	}
	return path
}

// buildUnavailable says why this machine cannot run the build script, or "".
func buildUnavailable() string {
	if os.Geteuid() != 0 {
		return "it needs root (mmdebstrap in root mode, chroot)"
	}
	if _, err := os.Stat("/etc/debian_version"); err != nil {
		return "it needs a Debian host (mmdebstrap and apt)"
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		return "mmdebstrap is not installed (apt-get install mmdebstrap)"
	}
	return ""
}

// scriptPath finds scripts/build-image.sh in the module this test runs in
// (go test runs each package in its own directory, inside the module).
func scriptPath() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			script := filepath.Join(dir, "scripts", "build-image.sh")
			if _, err := os.Stat(script); err != nil {
				return "", fmt.Errorf("no build script: %w", err)
			}
			return script, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory; cannot find scripts/build-image.sh")
		}
		dir = parent
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	var lines []string
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	return strings.Join(lines, "\n")
}
