package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// cliRun is one finished `metalflow` CLI invocation.
type cliRun struct {
	stdout, stderr string
	code           int
}

// cli runs the real binary's CLI against api with token, in an empty home
// so no operator's config file leaks in.
func cli(t *testing.T, api, token string, args ...string) cliRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, binaryPath, args...)
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"METALFLOW_API="+api, "METALFLOW_TOKEN="+token)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		code = exit.ExitCode()
	} else {
		require.NoError(t, err)
	}
	return cliRun{stdout: stdout.String(), stderr: stderr.String(), code: code}
}

func (r cliRun) String() string { return "stdout:\n" + r.stdout + "\nstderr:\n" + r.stderr }

// TestCLIServersRacksVIPs drives the CLI as an operator would against a real
// `metalflow dev` with a simulated fleet.
func TestCLIServersRacksVIPs(t *testing.T) {
	f := startFleet(t, 2)
	api, admin := withoutToken(f.api), f.token
	e := f.fleet[0]
	dir := t.TempDir()
	manifest := filepath.Join(dir, "fleet.json")
	raw, err := json.Marshal(f.fleet)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(manifest, raw, 0o600))

	// Usage errors exit 2 before any call.
	r := cli(t, api, admin, "servers", "add", e.Serial)
	require.Equal(t, 2, r.code, r)
	require.Contains(t, r.stderr, "BMC is needed")
	r = cli(t, api, admin, "racks", "show", "dc1")
	require.Equal(t, 2, r.code, r)

	// add --wait follows the lifecycle step by step to installed.
	r = cli(t, api, admin, "servers", "add", e.Serial, "--manifest", manifest,
		"--site", "dc1", "--rack", "R05", "--unit", "7", "--wait", "--poll", "200ms")
	require.Equal(t, 0, r.code, r)
	t.Logf("servers add --wait:\n%s", r.stdout)
	require.Contains(t, r.stdout, e.Serial+": lifecycle started")
	require.Regexp(t, `(?m)^  \S+\s+started$`, r.stdout)
	require.Regexp(t, `(?m)^  \S+\s+done in `, r.stdout)
	require.Contains(t, r.stdout, e.Serial+": installed")
	require.NotContains(t, r.stdout+r.stderr, e.Password, "the BMC password is never printed")
	require.NotContains(t, r.stdout+r.stderr, admin, "the token is never printed")

	// list: a table with the server's row, and -o json is the API's answer.
	r = cli(t, api, admin, "servers", "list")
	require.Equal(t, 0, r.code, r)
	require.Regexp(t, `(?m)^SERIAL\s+STATE\s+STEP\s+IN STEP\s+RACK\s+AGE$`, r.stdout)
	// IN STEP: how long since the lifecycle entered its step (here: since
	// it was installed), from the LifecycleStepStartedAt search attribute.
	require.Regexp(t, regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(e.Serial)+`\s+installed\s+installed\s+\d+(m\d+)?s\s+R05\s+\S+$`), r.stdout)
	r = cli(t, api, admin, "servers", "list", "-o", "json")
	require.Equal(t, 0, r.code, r)
	var list struct {
		Servers []struct {
			Serial, State string
			StepStartedAt *time.Time `json:"stepStartedAt"`
		} `json:"servers"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &list), r.stdout)
	require.Len(t, list.Servers, 1, "the second server is not added yet")
	require.Equal(t, e.Serial, list.Servers[0].Serial)
	require.Equal(t, "installed", list.Servers[0].State)
	require.NotNil(t, list.Servers[0].StepStartedAt, "-o json has stepStartedAt: %s", r.stdout)

	// show: the step timeline.
	r = cli(t, api, admin, "servers", "show", e.Serial)
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, "State:     installed")
	require.Regexp(t, `Location:  dc1/(A/)?R05 U7 front`, r.stdout)
	// Applied versus desired, as the BMC showed it after the steps: the
	// default profile's root mirror is there.
	require.Contains(t, r.stdout, "\nBIOS (applied vs desired):\nATTRIBUTE")
	require.Regexp(t, `(?m)^RAID on \S+ \(applied vs desired\):$`, r.stdout)
	require.Regexp(t, `(?m)^metalflow-root\s+RAID1\s+MAX\s+\S+\s+\S+\s+✓$`, r.stdout)
	require.NotContains(t, r.stdout, "✗", "every desired setting applied")

	// racks show: the server in its unit, empty units around it.
	r = cli(t, api, admin, "racks", "show", "dc1/R05")
	require.Equal(t, 0, r.code, r)
	t.Logf("racks show:\n%s", r.stdout)
	require.Regexp(t, regexp.MustCompile(`(?m)^U07\s+`+regexp.QuoteMeta(e.Serial)+`\s+installed$`), r.stdout)
	require.NotContains(t, r.stdout, "U06  "+e.Serial)
	r = cli(t, api, admin, "racks", "show", "dc1/R-none")
	require.Equal(t, 1, r.code, r)

	// Refusals: the API's message, exit 1.
	r = cli(t, api, admin, "servers", "skip", e.Serial)
	require.Equal(t, 1, r.code, r)
	require.Contains(t, r.stderr, "(HTTP 409)")
	t.Logf("servers skip: %s", r.stderr)
	require.Regexp(t, `metalflow servers: .+ \(HTTP 409\)`, r.stderr)
	r = cli(t, api, admin, "servers", "abort", e.Serial, "--reason", "test")
	require.Equal(t, 1, r.code, r)
	require.Contains(t, r.stderr, "(HTTP 409)")
	r = cli(t, api, admin, "servers", "abort", e.Serial)
	require.Equal(t, 2, r.code, r)

	// A viewer token (made with the CLI) reads but may not act.
	r = cli(t, api, admin, "tokens", "create", "cli-viewer", "--role", "viewer")
	require.Equal(t, 0, r.code, r)
	viewer := strings.TrimSpace(r.stdout)
	require.NotEmpty(t, viewer)
	r = cli(t, api, viewer, "servers", "list")
	require.Equal(t, 0, r.code, r)
	r = cli(t, api, viewer, "servers", "retry", e.Serial)
	require.Equal(t, 1, r.code, r)
	require.Contains(t, r.stderr, "(HTTP 403)")
	require.NotContains(t, r.stdout+r.stderr, viewer)
	r = cli(t, api, "not-a-token", "servers", "list")
	require.Equal(t, 1, r.code, r)
	require.Contains(t, r.stderr, "(HTTP 401)")
	r = cli(t, api, admin, "tokens", "list")
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, "cli-viewer")
	require.NotContains(t, r.stdout, viewer)

	// A VIP with no LB node to place it on ends in attention, printed.
	r = cli(t, api, admin, "vips", "create", "cli-web", "--port", "80", "--backend", "10.1.0.1:1", "--wait", "--poll", "200ms")
	require.Equal(t, 1, r.code, r)
	t.Logf("vips create --wait:\n%s%s", r.stdout, r.stderr)
	require.Contains(t, r.stdout, "cli-web: needs attention")
	require.Contains(t, r.stderr, "VIP cli-web needs attention")
	require.Contains(t, r.stdout, "metalflow vips retry cli-web")
	r = cli(t, api, admin, "vips", "show", "cli-web")
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, "State:     attention")
	require.Contains(t, r.stdout, "Attention: ")
	require.Regexp(t, `(?m)^10\.1\.0\.1\s+1\s+`, r.stdout)
	r = cli(t, api, admin, "vips", "list")
	require.Equal(t, 0, r.code, r)
	require.Regexp(t, `(?m)^cli-web\s+`, r.stdout)
	r = cli(t, api, viewer, "vips", "approve", "cli-web")
	require.Equal(t, 1, r.code, r)
	require.Contains(t, r.stderr, "(HTTP 403)")
	r = cli(t, api, admin, "vips", "approve", "cli-web")
	require.Equal(t, 1, r.code, "an internal VIP in attention is not awaiting approval: %s", r)
	require.Contains(t, r.stderr, "(HTTP 409)")
	// Abort answers the attention; the rollout then ends.
	r = cli(t, api, admin, "vips", "abort", "cli-web", "--reason", "no LB nodes in this lab")
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, "cli-web: abort of Place sent")

	// A server added without a location waits for a technician, who racks
	// it with a technician token; -o json keeps stdout for the final answer.
	second := f.fleet[1]
	r = cli(t, api, admin, "servers", "add", second.Serial, "--manifest", manifest, "--wait", "--poll", "200ms")
	require.Equal(t, 0, r.code, r)
	require.Contains(t, r.stdout, second.Serial+": waiting to be racked")
	require.Contains(t, r.stdout, "metalflow servers racked "+second.Serial)
	r = cli(t, api, admin, "tokens", "create", "cli-tech", "--role", "technician")
	require.Equal(t, 0, r.code, r)
	tech := strings.TrimSpace(r.stdout)
	r = cli(t, api, tech, "servers", "racked", second.Serial, "--site", "dc1", "--rack", "R05", "--unit", "7")
	require.Equal(t, 1, r.code, "unit 7 holds the first server: %s", r)
	require.Contains(t, r.stderr, "(HTTP 4")
	r = cli(t, api, tech, "servers", "racked", second.Serial, "--site", "dc1", "--rack", "R05", "--unit", "9", "--wait", "--poll", "200ms", "-o", "json")
	require.Equal(t, 0, r.code, r)
	t.Logf("servers racked --wait -o json: stderr:\n%s", r.stderr)
	require.Regexp(t, `(?m)^  InstallOS\s+done in `, r.stderr)
	var final struct{ Serial, State string }
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &final), r.stdout)
	require.Equal(t, second.Serial, final.Serial)
	require.Equal(t, "installed", final.State)
	r = cli(t, api, admin, "racks", "show", "dc1/R05")
	require.Equal(t, 0, r.code, r)
	require.Regexp(t, regexp.MustCompile(`(?m)^U09\s+`+regexp.QuoteMeta(second.Serial)+`\s+installed$`), r.stdout)
}
