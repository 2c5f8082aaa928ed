//go:build !agent

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/client"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

func writeConfig(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, "metalflow", "cli.yaml")
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
	require.NoError(t, os.WriteFile(p, []byte(body), 0o600))
	return p
}

func resolveWith(t *testing.T, env cliEnv, args ...string) (client.Config, error) {
	t.Helper()
	var r remoteFlags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	r.register(fs)
	require.NoError(t, fs.Parse(args))
	return r.resolve(env)
}

func TestRemoteFlagsPrecedence(t *testing.T) {
	xdg := t.TempDir()
	writeConfig(t, xdg, "api: http://from-file:1\ntoken: file-token\n")
	env := cliEnv{xdgConfig: xdg}

	cfg, err := resolveWith(t, env)
	require.NoError(t, err)
	require.Equal(t, "http://from-file:1", cfg.API)
	require.Equal(t, "file-token", cfg.Token)

	env.api, env.token = "http://from-env:2", "env-token"
	cfg, err = resolveWith(t, env)
	require.NoError(t, err)
	require.Equal(t, "http://from-env:2", cfg.API)
	require.Equal(t, "env-token", cfg.Token)

	cfg, err = resolveWith(t, env, "--api", "http://from-flag:3", "--token", "flag-token")
	require.NoError(t, err)
	require.Equal(t, "http://from-flag:3", cfg.API)
	require.Equal(t, "flag-token", cfg.Token)

	// Each value falls through on its own: a flag API with the env token.
	cfg, err = resolveWith(t, env, "--api", "http://from-flag:3")
	require.NoError(t, err)
	require.Equal(t, "env-token", cfg.Token)
	cfg, err = resolveWith(t, cliEnv{xdgConfig: xdg}, "--api", "http://from-flag:3")
	require.NoError(t, err)
	require.Equal(t, "http://from-flag:3", cfg.API)
	require.Equal(t, "file-token", cfg.Token)
}

func TestRemoteFlagsConfigFiles(t *testing.T) {
	home := t.TempDir()
	writeConfig(t, filepath.Join(home, ".config"), "api: http://home:1\ntoken: t\n")
	cfg, err := resolveWith(t, cliEnv{home: home})
	require.NoError(t, err)
	require.Equal(t, "http://home:1", cfg.API, "~/.config/metalflow/cli.yaml without XDG_CONFIG_HOME")

	// No default file: nothing, no error.
	cfg, err = resolveWith(t, cliEnv{home: t.TempDir()})
	require.NoError(t, err)
	require.Empty(t, cfg.API)

	// A named file must exist and parse.
	_, err = resolveWith(t, cliEnv{}, "--config", filepath.Join(t.TempDir(), "missing.yaml"))
	var ue usageError
	require.ErrorAs(t, err, &ue)
	bad := writeConfig(t, t.TempDir(), "api: [unclosed\n")
	_, err = resolveWith(t, cliEnv{}, "--config", bad)
	require.ErrorAs(t, err, &ue)
	other := writeConfig(t, t.TempDir(), "api: http://named:9\n")
	cfg, err = resolveWith(t, cliEnv{home: home}, "--config", other)
	require.NoError(t, err)
	require.Equal(t, "http://named:9", cfg.API)

	_, err = resolveWith(t, cliEnv{}, "-o", "yaml")
	require.ErrorAs(t, err, &ue)
}

func TestParseArgsInterleaved(t *testing.T) {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(&bytes.Buffer{})
	wait := fs.Bool("wait", false, "")
	out := fs.String("o", "table", "")
	pos, err := parseArgs(fs, []string{"SN-1", "--wait", "-o", "json"}, 1, 1, "u")
	require.NoError(t, err)
	require.Equal(t, []string{"SN-1"}, pos)
	require.True(t, *wait)
	require.Equal(t, "json", *out)

	_, err = parseArgs(fs, []string{"a", "b"}, 1, 1, "u")
	var ue usageError
	require.ErrorAs(t, err, &ue)
	_, err = parseArgs(fs, nil, 1, 1, "u")
	require.ErrorAs(t, err, &ue)
	_, err = parseArgs(fs, []string{"--nope"}, 0, 1, "u")
	require.ErrorAs(t, err, &ue)
}

func TestRenderServerListAttentionFirst(t *testing.T) {
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	var buf bytes.Buffer
	require.NoError(t, renderServerList(&buf, []client.ServerSummary{
		{Serial: "SN-1", State: "installed", Step: "install-os", Rack: "R01", StartedAt: now.Add(-75 * time.Minute), StepStartedAt: ptr(now.Add(-3 * time.Minute))},
		{Serial: "SN-2", State: "attention", Step: "configure-bios", Rack: "R02", StartedAt: now.Add(-90 * time.Second), StepStartedAt: ptr(now.Add(-4*time.Minute - 12*time.Second))},
		{Serial: "SN-3", State: "waiting-rack"},
	}, now))
	lines := strings.Split(strings.TrimRight(buf.String(), "\n"), "\n")
	require.Equal(t, []string{
		"SERIAL  STATE         STEP            IN STEP  RACK  AGE",
		"SN-2    attention     configure-bios  4m12s    R02   1m30s",
		"SN-1    installed     install-os      3m00s    R01   1h15m",
		"SN-3    waiting-rack  -               -        -     -",
	}, lines)
}

func ptr[T any](v T) *T { return &v }

func TestRenderRackTopToBottom(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, renderRack(&buf, client.RackDetail{
		Rack:  client.Rack{Site: "dc1", Room: "A", Name: "R01", HeightU: 3},
		Units: []client.RackUnit{{Unit: 1, Serial: "SN-1"}, {Unit: 5, Serial: "SN-9"}},
	}, map[string]string{"SN-1": "installed"}))
	require.Equal(t, "Rack dc1/A/R01 (3U)\n"+
		"UNIT  SERIAL  STATE\n"+
		"U03   .       .\n"+
		"U02   .       .\n"+
		"U01   SN-1    installed\n"+
		"U05   SN-9    (above the rack's height)\n", buf.String())
}

func TestStepProgressPrintsEachChangeOnce(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	t1 := t0.Add(1500 * time.Millisecond)
	var p stepProgress
	var buf bytes.Buffer
	p.report(&buf, []client.Step{{Name: "power-on", Status: "running", StartedAt: &t0}, {Name: "install-os", Status: "pending"}})
	p.report(&buf, []client.Step{{Name: "power-on", Status: "running", StartedAt: &t0}, {Name: "install-os", Status: "pending"}})
	p.report(&buf, []client.Step{{Name: "power-on", Status: "done", StartedAt: &t0, FinishedAt: &t1}, {Name: "install-os", Status: "failed", Error: "no media"}})
	require.Equal(t, ""+
		"  power-on                 started\n"+
		"  power-on                 done in 1.5s\n"+
		"  install-os               failed: no media\n", buf.String())
}

func TestParseBackend(t *testing.T) {
	for in, want := range map[string]client.VIPBackend{
		"10.0.0.1":    {Address: "10.0.0.1"},
		"10.0.0.1:5":  {Address: "10.0.0.1", Weight: 5},
		"fd00::1":     {Address: "fd00::1"},
		"[fd00::1]:7": {Address: "fd00::1", Weight: 7},
		"[fd00::1]":   {Address: "fd00::1"},
	} {
		got, err := parseBackend(in)
		require.NoError(t, err, in)
		require.Equal(t, want, got, in)
	}
	for _, bad := range []string{"10.0.0.1:x", "10.0.0.1:-1", "[fd00::1", ":3"} {
		_, err := parseBackend(bad)
		require.Error(t, err, bad)
	}
}

// fakeFleet answers GET /api/v1/servers/SN-1 with a scripted sequence of
// states, as a lifecycle moves, and a fixed refusal elsewhere.
type fakeFleet struct {
	mu     sync.Mutex
	states []client.Server
	calls  int
}

func (f *fakeFleet) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	if r.URL.Path != "/api/v1/servers/SN-1" {
		w.WriteHeader(http.StatusConflict)
		_, _ = w.Write([]byte(`{"error":"server SN-2 is not waiting for a decision"}`))
		return
	}
	f.mu.Lock()
	s := f.states[min(f.calls, len(f.states)-1)]
	f.calls++
	f.mu.Unlock()
	_ = json.NewEncoder(w).Encode(s)
}

func TestFollowServerStopsOnAttentionWithAnswers(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	f := &fakeFleet{states: []client.Server{
		{Serial: "SN-1", State: "provisioning", Steps: []client.Step{{Name: "power-on", Status: "running", StartedAt: &t0}}},
		{Serial: "SN-1", State: "attention", Steps: []client.Step{{Name: "power-on", Status: "failed", Error: "BMC refused login"}},
			Attention: &client.Attention{Step: "power-on", Error: "BMC refused login", Skippable: false}},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	c, err := client.New(client.Config{API: srv.URL})
	require.NoError(t, err)
	var stdout, stderr bytes.Buffer
	err = followServer(context.Background(), c, "SN-1", time.Millisecond, cliOut{stdout: &stdout, stderr: &stderr}, "table", false)
	require.EqualError(t, err, "SN-1 needs attention")
	out := stdout.String()
	require.Contains(t, out, "power-on                 started")
	require.Contains(t, out, "power-on                 failed: BMC refused login")
	require.Contains(t, out, "metalflow servers retry SN-1")
	require.Contains(t, out, "metalflow servers abort SN-1")
	require.NotContains(t, out, "servers skip", "skip is offered only when the step allows it")
}

func TestCLIExitCodes(t *testing.T) {
	f := &fakeFleet{states: []client.Server{{Serial: "SN-1", State: "installed"}}}
	srv := httptest.NewServer(f)
	defer srv.Close()
	ctx := context.Background()
	t.Setenv("METALFLOW_API", "")
	t.Setenv("METALFLOW_TOKEN", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"servers"}, 2, "missing action"},
		{[]string{"servers", "frobnicate"}, 2, "unknown action"},
		{[]string{"servers", "show"}, 2, "usage: metalflow servers show SERIAL"},
		{[]string{"servers", "show", "SN-1"}, 2, "no API address"},
		{[]string{"servers", "show", "SN-1", "--api", "localhost"}, 2, "want http(s)://host"},
		{[]string{"servers", "abort", "SN-1", "--api", srv.URL}, 2, "--reason is required"},
		{[]string{"servers", "racked", "SN-1", "--api", srv.URL, "--site", "dc1"}, 2, "--site, --rack and --unit"},
		{[]string{"servers", "skip", "SN-2", "--api", srv.URL, "--token", "secret-tok"}, 1, "server SN-2 is not waiting for a decision (HTTP 409)"},
		{[]string{"servers", "show", "SN-1", "--api", srv.URL, "--token", "secret-tok"}, 0, ""},
		{[]string{"racks", "show", "dc1", "--api", srv.URL}, 2, "want SITE/RACK"},
		{[]string{"vips", "create", "web", "--port", "99999", "--api", srv.URL}, 2, "--port"},
		{[]string{"vips", "reject", "web", "--api", srv.URL}, 2, "--reason is required"},
		{[]string{"vips", "abort", "web", "--api", srv.URL}, 2, "--reason is required"},
		{[]string{"vips", "retry", "--api", srv.URL}, 2, "usage: metalflow vips retry NAME"},
		{[]string{"tokens", "create", "x", "--api", srv.URL}, 2, "--role is required"},
	} {
		var stdout, stderr bytes.Buffer
		code := run(ctx, tc.args, &stdout, &stderr)
		require.Equal(t, tc.code, code, "%v: %s", tc.args, stderr.String())
		require.Contains(t, stderr.String(), tc.msg, tc.args)
		require.NotContains(t, stdout.String()+stderr.String(), "secret-tok", "the token is never printed")
	}

	var stdout, stderr bytes.Buffer
	require.Equal(t, 0, run(ctx, []string{"servers", "show", "SN-1", "-o", "json", "--api", srv.URL}, &stdout, &stderr), stderr.String())
	var got map[string]any
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &got))
	require.Equal(t, "installed", got["state"])
}

func TestFollowServerWaitingRackAndJSON(t *testing.T) {
	t0 := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	waiting := client.Server{Serial: "SN-1", State: "waiting-rack", Steps: []client.Step{{Name: "Rack", Status: "waiting", StartedAt: &t0}}}
	installed := client.Server{Serial: "SN-1", State: "installed", Steps: []client.Step{{Name: "Rack", Status: "done", StartedAt: &t0, FinishedAt: &t0}}}

	// Added without a location: stop at waiting-rack with the next command.
	srv := httptest.NewServer(&fakeFleet{states: []client.Server{waiting, installed}})
	defer srv.Close()
	c, err := client.New(client.Config{API: srv.URL})
	require.NoError(t, err)
	var stdout, stderr bytes.Buffer
	require.NoError(t, followServer(context.Background(), c, "SN-1", time.Millisecond, cliOut{stdout: &stdout, stderr: &stderr}, "table", true))
	require.Contains(t, stdout.String(), "metalflow servers racked SN-1")

	// Added with one: waiting-rack passes; -o json leaves stdout to the answer.
	srv2 := httptest.NewServer(&fakeFleet{states: []client.Server{waiting, installed}})
	defer srv2.Close()
	c, err = client.New(client.Config{API: srv2.URL})
	require.NoError(t, err)
	stdout.Reset()
	stderr.Reset()
	require.NoError(t, followServer(context.Background(), c, "SN-1", time.Millisecond, cliOut{stdout: &stdout, stderr: &stderr}, "json", false))
	var got client.Server
	require.NoError(t, json.Unmarshal(stdout.Bytes(), &got), stdout.String())
	require.Equal(t, "installed", got.State)
	require.Contains(t, stderr.String(), "Rack                     done")
	require.Contains(t, stderr.String(), "SN-1: installed")
}

func TestRenderServerAppliedVersusDesired(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 1, 2, 12, 0, 0, 0, time.UTC)
	require.NoError(t, renderServer(&buf, client.Server{
		Serial: "SN-1", State: "attention", Step: "ConfigureRAID", WorkflowID: "server/SN-1", StepStartedAt: ptr(now.Add(-4*time.Minute - 12*time.Second)),
		BIOS: &client.BIOSReport{Attributes: []client.BIOSAttribute{
			{Name: "AdminPassword", Desired: "(hidden)", Actual: "(hidden)", Match: true, Hidden: true},
			{Name: "NoSuch", Desired: "On", Missing: true},
			{Name: "SRIOV", Desired: "Enabled", Actual: "Disabled"},
		}},
		RAID: &client.RAIDReport{Controller: "RAID.1", Volumes: []client.RAIDVolumeReport{
			{Status: "match", Desired: &client.RAIDVolume{Name: "metalflow-root", RAIDLevel: "RAID1"},
				Actual: &client.RAIDVolume{ID: "v1", Name: "metalflow-root", RAIDLevel: "RAID1", SizeBytes: 480_000_000_000, Drives: []string{"d0", "d1"}}},
			{Status: "missing", Desired: &client.RAIDVolume{Name: "metalflow-data", RAIDLevel: "RAID1", SizeBytes: 100_000_000_000, Drives: []string{"d2", "d3"}}},
			{Status: "unexpected", Actual: &client.RAIDVolume{ID: "v9", Name: "leftover", RAIDLevel: "RAID0", SizeBytes: 240_000_000_000, Drives: []string{"d2"}}},
		}},
	}, now))
	out := buf.String()
	require.Contains(t, out, "Step:      ConfigureRAID (for 4m12s)\n")
	require.Contains(t, out, "\nBIOS (applied vs desired):\n"+
		"ATTRIBUTE      DESIRED   ACTUAL    RESULT\n"+
		"AdminPassword  (hidden)  (hidden)  ✓\n"+
		"NoSuch         On        (none)    missing\n"+
		"SRIOV          Enabled   Disabled  ✗\n")
	require.Contains(t, out, "\nRAID on RAID.1 (applied vs desired):\n"+
		"VOLUME          LEVEL  SIZE    DRIVES  FOUND  RESULT\n"+
		"metalflow-root  RAID1  MAX     d0,d1   v1     ✓\n"+
		"metalflow-data  RAID1  100 GB  d2,d3   -      ✗ missing\n"+
		"leftover        RAID0  240 GB  d2      v9     ✗ unexpected\n")
}

func TestRenderServerShowsWhatTheBMCWouldNotGive(t *testing.T) {
	var buf bytes.Buffer
	require.NoError(t, renderServer(&buf, client.Server{
		Serial: "SN-1", State: "installed", WorkflowID: "server/SN-1",
		Hardware: &client.Hardware{Vendor: "Dell Inc.", Warnings: []serverapi.InventoryWarning{
			{Path: "/redfish/v1/Systems/System.Embedded.1/Storage/RAID.1/Drives/Disk.Bay.0", Error: "answered 404"},
		}},
	}, time.Now()))
	require.Contains(t, buf.String(), "Inventory: 1 part(s) the BMC would not give\n"+
		"  /redfish/v1/Systems/System.Embedded.1/Storage/RAID.1/Drives/Disk.Bay.0: answered 404\n")
}
