package bench

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/client"
	"github.com/metalflow/metalflow/internal/testpg"
)

// benchContext bounds one benchmark run in a test.
func benchContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// quiet is the in-process metalflow's log, shown only when a test fails.
func quiet(t *testing.T) *slog.Logger {
	t.Helper()
	var buf bytes.Buffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("metalflow log:\n%s", buf.String())
		}
	})
	return slog.New(slog.NewJSONHandler(&syncWriter{w: &buf}, &slog.HandlerOptions{Level: slog.LevelError}))
}

// syncWriter lets the stack's goroutines log into one buffer.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
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

func TestFleetProvisionsEveryServer(t *testing.T) {
	var profile, stdout bytes.Buffer
	err := RunFleet(benchContext(t), FleetConfig{
		Log: quiet(t), Servers: 3, Concurrency: 3, Timeout: 2 * time.Minute, TemporalDB: "memory", CPUProfile: &profile,
	}, &stdout)
	out := stdout.String()
	require.NoError(t, err, "stdout:\n%s", out)
	// A CPU profile is gzipped protobuf.
	raw := profile.Bytes()
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

func TestAPILoadsEveryRoute(t *testing.T) {
	var stdout bytes.Buffer
	err := RunAPI(benchContext(t), APIConfig{
		Log: quiet(t), Clients: 2, Duration: 500 * time.Millisecond, Servers: 3, TemporalDB: "memory",
	}, &stdout)
	out := stdout.String()
	require.NoError(t, err, "stdout:\n%s", out)
	for _, route := range []string{"GET /healthz", "GET /api/v1/servers/<serial>", "POST /api/v1/servers"} {
		require.Contains(t, out, route+"  ")
	}
	last := resultLine(out)
	require.Regexp(t, `^RESULT clients=2 duration_s=0\.5 servers=3 healthz_rps=[0-9]+ healthz_p99_ms=[0-9.]+ healthz_errors=0 get_server_rps=[0-9]+ get_server_p99_ms=[0-9.]+ get_server_errors=0 post_server_rps=[0-9]+ post_server_p99_ms=[0-9.]+ post_server_errors=0$`, last)
}

func TestParkedListsEveryServer(t *testing.T) {
	var stdout bytes.Buffer
	err := RunParked(benchContext(t), ParkedConfig{
		Log: quiet(t), Servers: 5, PageSize: 2, Concurrency: 2, Timeout: 30 * time.Minute, TemporalDB: "memory",
	}, &stdout)
	out := stdout.String()
	require.NoError(t, err, "stdout:\n%s", out)
	// Five servers in pages of two is three pages.
	require.Regexp(t, `^RESULT servers=5 parked=5 rss_mib=[0-9]+ heap_mib=[0-9]+ worker_rss_mib=0 list_s=[0-9.]+ listed=5 pages=3$`, resultLine(out))
	require.Equal(t, "5", tableValue(t, out, "servers parked"))
	require.NotContains(t, out, "worker RSS")
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
		{serial: "B", state: "", err: errors.New("temporal unavailable (HTTP 503)\nmore detail")},
		{serial: "C", state: "attention", err: errors.New("stopped short of installed")},
	}}
	require.Equal(t, []failureReason{
		{reason: `state "attention": stopped short of installed`, count: 2},
		{reason: `state "": temporal unavailable (HTTP 503)`, count: 1},
	}, r.failureCounts())
}

func TestFleetOnPostgres(t *testing.T) {
	pg, err := testpg.Start()
	if err != nil {
		t.Skipf("no PostgreSQL on this machine: %v", err)
	}
	t.Cleanup(pg.Stop)
	// The bench makes a database of its own beside the one named.
	url := pg.NewDatabase(t)
	var stdout, log bytes.Buffer
	err = RunFleet(benchContext(t), FleetConfig{
		Log:     slog.New(slog.NewJSONHandler(&syncWriter{w: &log}, nil)),
		Servers: 2, Concurrency: 2, Timeout: 2 * time.Minute, TemporalDB: url,
	}, &stdout)
	out, errOut := stdout.String(), log.String()
	require.NoError(t, err, "log:\n%s\nstdout:\n%s", errOut, out)
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
			c, err := newAPIClient(srv.URL, "t")
			require.NoError(t, err)
			retries, err := callRetrying(context.Background(), 0, func(ctx context.Context) error {
				_, err := c.Racked(ctx, "SN-1", client.Location{Site: site, Rack: "R0001", Unit: 1, Face: "front"})
				return err
			})
			require.Equal(t, tc.wantRetries, retries)
			if tc.wantStatus == 0 {
				require.NoError(t, err)
			} else {
				require.Equal(t, tc.wantStatus, client.StatusOf(err))
			}
		})
	}
}
