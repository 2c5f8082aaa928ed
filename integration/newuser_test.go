package integration

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// TestSeparateWorkerAsTheREADMESays follows the README: `metalflow dev
// --workers=false` and `metalflow worker --temporal …` started from the
// same directory with no other flags share one inventory and key, and a
// simulated server racked through the API ends installed. A worker
// started from another directory, on a fresh inventory of its own, or one
// given another credential key, refuses to start and says which inventory
// or key it expected, instead of failing every server. Neither leaves
// files outside the data directory.
func TestSeparateWorkerAsTheREADMESays(t *testing.T) {
	home := t.TempDir()
	temporal, httpAddr, admin := freeAddr(t), freeAddr(t), freeAddr(t)
	manifest := filepath.Join(t.TempDir(), "fleet.json")
	devCmd := exec.Command(binaryPath, "dev", "--workers=false", "--temporal-listen", temporal, "--temporal-ui", "",
		"--http", httpAddr, "--sim-servers", "1", "--sim-speed", "100", "--sim-manifest", manifest, "--sim-admin", admin)
	devCmd.Dir = home
	dev := startCommand(t, "dev", devCmd)
	waitHTTP(t, "http://"+httpAddr+"/readyz", 200, 90*time.Second)
	api := apiURL(httpAddr, dev.adminToken(t))
	log, err := os.ReadFile(dev.log)
	require.NoError(t, err)
	require.Contains(t, string(log), "metalflow worker --temporal "+temporal+" --inventory-db "+filepath.Join(home, ".metalflow", "metalflow.db"),
		"dev says which worker to start")

	// From another directory: a fresh inventory there, refused.
	elsewhere := t.TempDir()
	out, err := runWorkerOnce(t, elsewhere, "--temporal", temporal, "--metrics", "")
	require.Error(t, err, "a worker on another inventory must not start:\n%s", out)
	require.Contains(t, out, "acts on inventory")
	require.Contains(t, out, filepath.Join(home, ".metalflow", "metalflow.db"), "the message names the inventory the API uses")
	require.Contains(t, out, filepath.Join(elsewhere, ".metalflow", "metalflow.db"), "and the one the worker opened")

	// Dev's inventory with another key: refused, naming the key file.
	otherKey := filepath.Join(t.TempDir(), "other.key")
	out, err = runWorkerOnce(t, home, "--temporal", temporal, "--metrics", "", "--credentials-key", otherKey)
	require.Error(t, err, "a worker with another key must not start:\n%s", out)
	require.Contains(t, out, otherKey)
	require.Contains(t, out, "sealed with the key of fingerprint")

	// The README's command, from dev's directory: it works.
	workerCmd := exec.Command(binaryPath, "worker", "--temporal", temporal, "--metrics", "", "--bmc-insecure")
	workerCmd.Dir = home
	startCommand(t, "worker", workerCmd)
	fleet := readFleet(t, manifest, 1)
	r := do(t, "POST", api+"/api/v1/servers", `{"serial":"`+fleet[0].Serial+`","bmc":{"address":"`+fleet[0].Address+`","username":"`+fleet[0].Username+`","password":"`+fleet[0].Password+`"},`+
		`"location":{"site":"dc1","room":"A","rack":"R01","unit":3,"face":"front"}}`)
	require.Equal(t, 202, r.code, string(r.body))
	eventually(t, 3*time.Minute, fleet[0].Serial+" installed", func() error {
		st := getServer(t, api, fleet[0].Serial)
		if st.State != serverapi.StateInstalled {
			return &stateError{st.State, st.Step}
		}
		return nil
	})

	for _, dir := range []string{home, elsewhere} {
		require.Equal(t, []string{".metalflow"}, entries(t, dir), "nothing but the data directory in %s", dir)
	}
}

type stateError struct{ state, step string }

func (e *stateError) Error() string { return "state " + e.state + " step " + e.step }

// runWorkerOnce runs a worker in dir that is expected to exit by itself.
func runWorkerOnce(t *testing.T, dir string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binaryPath, append([]string{"worker"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	require.NoError(t, ctx.Err(), "the worker did not exit:\n%s", out)
	return string(out), err
}

func readFleet(t *testing.T, manifest string, n int) []fleetEntry {
	t.Helper()
	var fleet []fleetEntry
	eventually(t, 60*time.Second, "the fleet manifest", func() error {
		raw, err := os.ReadFile(manifest)
		if err != nil {
			return err
		}
		return json.Unmarshal(raw, &fleet)
	})
	require.Len(t, fleet, n)
	return fleet
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return names
}
