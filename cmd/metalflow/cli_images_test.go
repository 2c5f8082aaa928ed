//go:build !agent

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
)

// TestCLIImages runs `metalflow images` against the real API: usage errors
// exit 2 before any call, refusals 1 with the API's message.
func TestCLIImages(t *testing.T) {
	ctx := context.Background()
	t.Setenv("METALFLOW_API", "")
	t.Setenv("METALFLOW_TOKEN", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	inv, err := inventory.Open(ctx, inventory.DialectSQLite, filepath.Join(t.TempDir(), "inv.db"))
	require.NoError(t, err)
	defer inv.Close()
	cat, err := profiles.NewCatalog(profiles.Profile{Name: "r650", Role: profiles.RoleCompute, Image: "ubuntu-24.04"})
	require.NoError(t, err)
	dir := t.TempDir()
	srv := httptest.NewServer(api.New(api.Config{
		Inventory: inv, Tokens: &auth.Tokens{Store: inv}, Profiles: cat, Images: api.ImagesConfig{Dir: dir},
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
	}).Handler())
	defer srv.Close()
	token, _, err := (&auth.Tokens{Store: inv}).Issue(ctx, auth.IssueInput{Name: "op", Role: auth.Operator, By: "test"})
	require.NoError(t, err)

	file := filepath.Join(t.TempDir(), "debian-12.raw")
	body := bytes.Repeat([]byte{0x55, 0xaa}, 3000)
	require.NoError(t, os.WriteFile(file, body, 0o600))
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])
	remote := []string{"--api", srv.URL, "--token", token}

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"images"}, 2, "missing action"},
		{[]string{"images", "show"}, 2, "usage: metalflow images show NAME"},
		{append([]string{"images", "add", "x", "--sha256", digest, "--format", "raw", "--os-family", "debian"}, remote...), 2, "exactly one of --url and --file"},
		{append([]string{"images", "add", "x", "--url", "https://x/y", "--file", file}, remote...), 2, "exactly one of --url and --file"},
		{append([]string{"images", "add", "x", "--url", "https://x/y"}, remote...), 2, "--sha256, --format and --os-family are required"},
		{append([]string{"images", "add", "x", "--file", file + ".missing", "--sha256", digest, "--format", "raw", "--os-family", "debian"}, remote...), 2, "no such file"},
		{append([]string{"images", "add", "debian-12", "--file", file, "--sha256", digest[1:] + "0", "--format", "raw", "--os-family", "debian"}, remote...), 1, "sha256 mismatch"},
		{append([]string{"images", "add", "debian-12", "--file", file, "--sha256", digest, "--format", "raw", "--os-family", "debian"}, remote...), 0, ""},
		{append([]string{"images", "add", "ubuntu-24.04", "--url", "https://mirror.example/u.raw.zst", "--sha256", digest, "--format", "raw.zst", "--os-family", "ubuntu"}, remote...), 0, ""},
		{append([]string{"images", "add", "debian-12", "--url", "https://x/y", "--sha256", digest, "--format", "raw", "--os-family", "debian"}, remote...), 1, "(HTTP 409)"},
		{append([]string{"images", "rm", "ubuntu-24.04"}, remote...), 1, "profile r650"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(ctx, tc.args, &stdout, &stderr)
		require.Equal(t, tc.code, code, "%v: %s", tc.args, stderr.String())
		require.Contains(t, stderr.String(), tc.msg, tc.args)
		require.NotContains(t, stdout.String()+stderr.String(), token, "the token is never printed")
	}
	kept, err := os.ReadFile(filepath.Join(dir, "debian-12"))
	require.NoError(t, err)
	require.Equal(t, body, kept, "the upload arrived whole")

	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run(ctx, append([]string{"images", "list"}, remote...), &stdout, &stderr), stderr.String())
	require.Regexp(t, `(?m)^NAME\s+FORMAT\s+OS\s+SOURCE\s+SIZE\s+SHA256\s+CREATED$`, stdout.String())
	require.Regexp(t, `(?m)^debian-12\s+raw\s+debian\s+upload\s+6 kB\s+`+digest[:12]+`\s`, stdout.String())
	require.Regexp(t, `(?m)^ubuntu-24.04\s+raw.zst\s+ubuntu\s+url\s+-\s`, stdout.String())

	stdout.Reset()
	require.Equal(t, 0, run(ctx, append([]string{"images", "show", "ubuntu-24.04"}, remote...), &stdout, &stderr), stderr.String())
	require.Contains(t, stdout.String(), "Source:    https://mirror.example/u.raw.zst")
	require.Contains(t, stdout.String(), "Profiles:  r650")
	require.Contains(t, stdout.String(), "Boot path: /boot/images/ubuntu-24.04")

	stdout.Reset()
	require.Equal(t, 0, run(ctx, append([]string{"images", "show", "debian-12", "-o", "json"}, remote...), &stdout, &stderr), stderr.String())
	var got map[string]any
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &got))
	require.Equal(t, digest, got["sha256"])

	stdout.Reset()
	require.Equal(t, 0, run(ctx, append([]string{"images", "rm", "debian-12"}, remote...), &stdout, &stderr), stderr.String())
	require.Contains(t, stdout.String(), "debian-12: removed")
	require.NoFileExists(t, filepath.Join(dir, "debian-12"))
	stderr.Reset()
	require.Equal(t, 1, run(ctx, append([]string{"images", "rm", "debian-12"}, remote...), &stdout, &stderr))
	require.Contains(t, stderr.String(), "(HTTP 404)")
}
