package main

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/internal/testpg"
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

func resultLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// tableValue is the value column of the table row named name.
func tableValue(t *testing.T, out, name string) string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if rest, ok := strings.CutPrefix(line, name+"  "); ok {
			return strings.Fields(rest)[0]
		}
	}
	t.Fatalf("no %q row in:\n%s", name, out)
	return ""
}

func TestBenchFleetProvisionsEveryServer(t *testing.T) {
	profile := filepath.Join(t.TempDir(), "cpu.pprof")
	code, out, errOut := runBenchCLI(t, "fleet", "--servers", "3", "--concurrency", "3", "--timeout", "2m", "--cpu-profile", profile)
	require.Equal(t, 0, code, "stderr:\n%s\nstdout:\n%s", errOut, out)
	// A CPU profile is gzipped protobuf.
	raw, err := os.ReadFile(profile)
	require.NoError(t, err)
	require.True(t, bytes.HasPrefix(raw, []byte{0x1f, 0x8b}), "profile of %d bytes is not gzip", len(raw))
	require.Regexp(t, `^RESULT servers=3 completed=3 wall_s=[0-9.]+ servers_per_min=[0-9.]+ p95_s=[0-9.]+ cpu_s_per_server=[0-9.]+ peak_rss_mib=[0-9]+$`, resultLine(out))
	for _, row := range []string{"servers", "completed", "wall", "servers/minute", "time per server p50", "time per server p95", "CPU per server", "peak RSS", "history events mean", "history events max"} {
		tableValue(t, out, row)
	}
	require.Equal(t, "3", tableValue(t, out, "completed"))
	// Every installed lifecycle has a history of many steps.
	events, err := strconv.Atoi(tableValue(t, out, "history events max"))
	require.NoError(t, err)
	require.Greater(t, events, 10)
	rss, err := strconv.ParseFloat(tableValue(t, out, "peak RSS"), 64)
	require.NoError(t, err)
	require.Greater(t, rss, 0.0)
}

func TestBenchAPILoadsEveryRoute(t *testing.T) {
	code, out, errOut := runBenchCLI(t, "api", "--clients", "2", "--duration", "500ms", "--servers", "3")
	require.Equal(t, 0, code, "stderr:\n%s\nstdout:\n%s", errOut, out)
	for _, route := range []string{"GET /healthz", "GET /api/v1/servers/<serial>", "POST /api/v1/servers"} {
		require.Contains(t, out, route+"  ")
	}
	last := resultLine(out)
	require.Regexp(t, `^RESULT clients=2 duration_s=0\.5 servers=3 healthz_rps=[0-9]+ healthz_p99_ms=[0-9.]+ healthz_errors=0 get_server_rps=[0-9]+ get_server_p99_ms=[0-9.]+ get_server_errors=0 post_server_rps=[0-9]+ post_server_p99_ms=[0-9.]+ post_server_errors=0$`, last)
}

func TestBenchParkedListsEveryServer(t *testing.T) {
	code, out, errOut := runBenchCLI(t, "parked", "--servers", "5", "--page-size", "2", "--concurrency", "2")
	require.Equal(t, 0, code, "stderr:\n%s\nstdout:\n%s", errOut, out)
	// Five servers in pages of two is three pages.
	require.Regexp(t, `^RESULT servers=5 parked=5 rss_mib=[0-9]+ heap_mib=[0-9]+ worker_rss_mib=0 list_s=[0-9.]+ listed=5 pages=3$`, resultLine(out))
	require.Equal(t, "5", tableValue(t, out, "servers parked"))
	require.NotContains(t, out, "worker RSS")
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

func TestPercentileIsNearestRank(t *testing.T) {
	ms := func(v ...int) []time.Duration {
		out := make([]time.Duration, len(v))
		for i, x := range v {
			out[i] = time.Duration(x) * time.Millisecond
		}
		return out
	}
	for _, tc := range []struct {
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 50, 3 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 100, 5 * time.Millisecond},
		{ms(5, 1, 4, 2, 3), 0, 1 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 95, 10 * time.Millisecond},
		{ms(1, 2, 3, 4, 5, 6, 7, 8, 9, 10), 90, 9 * time.Millisecond},
	} {
		require.Equal(t, tc.want, percentile(tc.samples, tc.p), "p%v of %v", tc.p, tc.samples)
	}
}

func TestReadMemoryOfThisProcess(t *testing.T) {
	m, err := readMemory(0)
	require.NoError(t, err)
	require.Positive(t, m.RSSBytes)
	require.GreaterOrEqual(t, m.PeakRSSBytes, m.RSSBytes)
	_, err = readMemory(-1)
	require.Error(t, err)
}

func TestFleetFailuresGroupByStateAndError(t *testing.T) {
	r := fleetResult{failures: []fleetOutcome{
		{serial: "A", state: "attention", err: errors.New("stopped short of installed")},
		{serial: "B", state: "", err: errors.New("HTTP 503: temporal unavailable\nmore detail")},
		{serial: "C", state: "attention", err: errors.New("stopped short of installed")},
	}}
	require.Equal(t, []failureReason{
		{reason: `state "attention": stopped short of installed`, count: 2},
		{reason: `state "": HTTP 503: temporal unavailable`, count: 1},
	}, r.failureCounts())
}

func TestBenchFleetOnPostgres(t *testing.T) {
	pg, err := testpg.Start()
	if err != nil {
		t.Skipf("no PostgreSQL on this machine: %v", err)
	}
	t.Cleanup(pg.Stop)
	// The bench makes a database of its own beside the one named.
	url := pg.NewDatabase(t)
	code, out, errOut := runBenchCLI(t, "fleet", "--servers", "2", "--concurrency", "2", "--timeout", "2m", "--temporal-db", url)
	require.Equal(t, 0, code, "stderr:\n%s\nstdout:\n%s", errOut, out)
	require.Regexp(t, `^RESULT servers=2 completed=2 `, resultLine(out))
	require.Contains(t, out, "temporal postgres://")
	require.NotContains(t, out+errOut, ":"+pgPassword(t, url)+"@")
}

// pgPassword is the password in a PostgreSQL URL ("" when none), which
// the benchmark's output must never show.
func pgPassword(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	p, _ := u.User.Password()
	if p == "" {
		return "\x00never"
	}
	return p
}

func TestFleetCallsRetryUnavailableOnly(t *testing.T) {
	for _, tc := range []struct {
		name        string
		answers     []int
		wantRetries int
		wantStatus  int // 0: success
	}{
		{"accepted", []int{202}, 0, 0},
		{"503 then accepted", []int{503, 503, 202}, 2, 0},
		{"503 then 409: the first had done it", []int{503, 409}, 1, 0},
		{"409 at once is a real conflict", []int{409}, 0, 409},
		{"422 is not retried", []int{422, 202}, 0, 422},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.WriteHeader(tc.answers[calls])
				calls++
			}))
			defer srv.Close()
			c := benchCaller{http: srv.Client(), base: srv.URL, token: "t"}
			retries, err := callRetrying(context.Background(), c, "/x", map[string]string{}, 0)
			require.Equal(t, tc.wantRetries, retries)
			if tc.wantStatus == 0 {
				require.NoError(t, err)
			} else {
				var refusal *apiRefusal
				require.ErrorAs(t, err, &refusal)
				require.Equal(t, tc.wantStatus, refusal.Status)
			}
		})
	}
}
