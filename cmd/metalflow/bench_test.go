//go:build !agent

package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// runBenchCLI runs `metalflow bench args...` as main would and returns its
// exit status, stdout and stderr.
func runBenchCLI(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, append([]string{"bench"}, args...), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestBenchRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "usage: metalflow bench"},
		{[]string{"nope"}, `unknown benchmark "nope"`},
		{[]string{"fleet", "--servers", "0"}, "--servers must be at least 1"},
		{[]string{"fleet", "--concurrency", "0"}, "--concurrency must be at least 1"},
		{[]string{"fleet", "--timeout", "0s"}, "--timeout must be positive"},
		{[]string{"fleet", "--sim-speed", "-1"}, "--sim-speed must be 0"},
		{[]string{"fleet", "--temporal-db", "mysql"}, `--temporal-db "mysql": want memory, sqlite or postgres://`},
		{[]string{"fleet", "--temporal-db", "postgres://u:p@127.0.0.1"}, "--temporal-db: want postgres://user:password@host:port/database"},
		{[]string{"fleet", "--cpu-profile", "/nonexistent-dir/cpu.out"}, "--cpu-profile"},
		{[]string{"fleet", "--servers", "x"}, `invalid value "x"`},
		{[]string{"fleet", "extra"}, "unexpected arguments"},
		{[]string{"api", "--clients", "0"}, "--clients must be at least 1"},
		{[]string{"api", "--duration", "0s"}, "--duration must be positive"},
		{[]string{"api", "--servers", "0"}, "--servers must be at least 1"},
		{[]string{"parked", "--servers", "0"}, "--servers must be at least 1"},
		{[]string{"parked", "--page-size", "0"}, "--page-size must be 1 to 1000"},
		{[]string{"parked", "--page-size", "1001"}, "--page-size must be 1 to 1000"},
		{[]string{"parked", "--worker-binary", "/bin/true"}, "--worker-binary needs --worker-process"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			// The stack's first act is a temporary directory: an empty
			// TMPDIR afterwards means nothing was started.
			tmp := t.TempDir()
			t.Setenv("TMPDIR", tmp)
			code, out, errOut := runBenchCLI(t, tc.args...)
			require.Equal(t, 2, code, "stdout:\n%s\nstderr:\n%s", out, errOut)
			require.Contains(t, errOut, tc.want)
			require.Empty(t, out)
			left, err := os.ReadDir(tmp)
			require.NoError(t, err)
			require.Empty(t, left)
		})
	}
}

// The flags reach the benchmark: its RESULT line echoes them.
func TestBenchAPIFlagsReachTheBenchmark(t *testing.T) {
	code, out, errOut := runBenchCLI(t, "api", "--clients", "1", "--duration", "200ms", "--servers", "2")
	require.Equal(t, 0, code, "stderr:\n%s\nstdout:\n%s", errOut, out)
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	require.Regexp(t, `^RESULT clients=1 duration_s=0\.2 servers=2 healthz_rps=`, lines[len(lines)-1])
}
