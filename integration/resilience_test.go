package integration

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/server"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
)

// Test flags are package variables by necessity: the testing package
// parses them before any test runs.
var (
	resilienceLong = flag.Bool("resilience-long", false, "run the resilience tests at full size (50 servers)")
	resilienceSeed = flag.Uint64("resilience-seed", 1, "seed of the resilience tests' kill points and BMC faults")
)

// cleanRun is what one undisturbed lifecycle does to a simulated server,
// side effect by side effect: anything above it is a duplicate.
func cleanRun() map[string]int {
	return map[string]int{
		"bios_applies":    1, // the profile's difference, staged once
		"bios_resets":     0, // defaults are for decommissioning only
		"volumes_created": 1, // the root mirror
		"volumes_deleted": 0,
		"media_inserts":   0, // installs netboot; no virtual media
		"netboots":        1,
		"installs":        1,
		"phone_homes":     1,
	}
}

// maxPowerOns: one for the BIOS reset, one into the installer.
const maxPowerOns = 2

// resilienceRun is one fleet provisioned while something is broken: a
// persistent `metalflow dev --workers=false`, a separate worker, and the
// fleet in its own `metalflow bmcsim` so that BMC state outlives dev.
type resilienceRun struct {
	t          *testing.T
	rng        *rand.Rand
	dir        string
	httpAddr   string
	temporal   string
	uiAddr     string
	dev        *process
	devStarts  int
	token      string
	api        string
	admin      string
	fleet      []fleetEntry
	workerArgs []string
	worker     *process
	workers    int
	started    time.Time
	attention  map[string]string // serial: the first attention seen
}

// resilienceSize is the fleet size: CI-sized, or the README's 50.
func resilienceSize(ci int) int {
	if *resilienceLong {
		return 50
	}
	return ci
}

func newResilienceRun(t *testing.T, n int, simFaults []string, workerExtra ...string) *resilienceRun {
	t.Helper()
	r := &resilienceRun{
		t: t, rng: rand.New(rand.NewPCG(*resilienceSeed, 0x7265)), dir: t.TempDir(),
		httpAddr: freeAddr(t), temporal: freeAddr(t), uiAddr: freeAddr(t), attention: map[string]string{},
	}
	t.Logf("resilience seed %d (rerun with -resilience-seed=%d)", *resilienceSeed, *resilienceSeed)
	manifest := filepath.Join(r.dir, "fleet.json")
	admin := freeAddr(t)
	r.admin = "http://" + admin
	// The delays of dev's own fleet, twenty times faster: POST 3 s, an
	// install 15 s, a RAID task 1 s.
	simArgs := append([]string{"bmcsim", "--count", fmt.Sprint(n), "--vendor", "mixed", "--speed", "20",
		"--post-delay", "60s", "--shutdown-delay", "10s", "--install-delay", "5m", "--task-duration", "20s", "--reboot-duration", "60s",
		"--boot-url", "http://" + r.httpAddr + "/boot/ipxe?mac=${mac}", "--manifest", manifest, "--admin", admin,
		"--fault-seed", fmt.Sprint(*resilienceSeed)}, simFaults...)
	startProcess(t, "bmcsim", simArgs...)
	eventually(t, 60*time.Second, "the simulated fleet's manifest", func() error {
		raw, err := os.ReadFile(manifest)
		if err != nil {
			return err
		}
		r.fleet = nil
		if err := json.Unmarshal(raw, &r.fleet); err != nil {
			return err
		}
		if len(r.fleet) != n {
			return fmt.Errorf("%d of %d BMCs in the manifest", len(r.fleet), n)
		}
		return nil
	})
	waitHTTP(t, r.admin+"/counters", http.StatusOK, 30*time.Second)

	r.startDev()
	data := filepath.Join(r.dir, "data")
	r.workerArgs = append([]string{"worker", "--temporal", r.temporal, "--metrics", "",
		"--inventory-db", filepath.Join(data, "metalflow.db"), "--credentials-key", filepath.Join(data, "credentials.key"),
		"--bmc-insecure"}, workerExtra...)
	r.startWorker()
	return r
}

// startDev starts dev on the run's data and ports. After a SIGKILL the
// ports can still be held for a moment (by the dead process's last
// connections, or taken by another test's client): try again.
func (r *resilienceRun) startDev() {
	r.t.Helper()
	// The fleet is a bmcsim of its own, on loopback: dev does not know it
	// is simulated.
	args := []string{"dev", "--data", filepath.Join(r.dir, "data"), "--workers=false",
		"--temporal-listen", r.temporal, "--temporal-ui", r.uiAddr, "--http", r.httpAddr, "--rate-limit", "0", "--bmc-allow-loopback"}
	for try := 1; ; try++ {
		r.devStarts++
		p := startProcess(r.t, fmt.Sprintf("dev-%d", r.devStarts), args...)
		if err := waitReady(p, "http://"+r.httpAddr+"/readyz", 120*time.Second); err != nil {
			p.kill()
			log, _ := os.ReadFile(p.log)
			if try < 5 && strings.Contains(string(log), "address already in use") {
				r.t.Logf("dev start %d: a port is still taken; again in 2 s", try)
				time.Sleep(2 * time.Second)
				continue
			}
			r.t.Fatalf("dev did not become ready: %v\n%s", err, tail(log, 4096))
		}
		r.dev = p
		break
	}
	if r.token == "" {
		r.token = r.dev.adminToken(r.t)
		r.api = apiURL(r.httpAddr, r.token)
	}
}

func (r *resilienceRun) startWorker() {
	r.workers++
	r.worker = startProcess(r.t, fmt.Sprintf("worker-%d", r.workers), r.workerArgs...)
}

// registerAll posts every server already racked, so the lifecycle runs
// from Rack to installed without a technician.
func (r *resilienceRun) registerAll() {
	r.t.Helper()
	r.started = time.Now()
	for i, e := range r.fleet {
		body, _ := json.Marshal(map[string]any{
			"serial":   e.Serial,
			"bmc":      map[string]string{"address": e.Address, "username": e.Username, "password": e.Password},
			"location": serverapi.Location{Site: "dc1", Room: "A", Rack: fmt.Sprintf("R%02d", 10+i/40), Unit: i%40 + 1, Face: "front"},
		})
		res := do(r.t, http.MethodPost, r.api+"/api/v1/servers", string(body))
		require.Equal(r.t, http.StatusAccepted, res.code, string(res.body))
	}
}

// fleetProgress lists every server's state and step from visibility (no
// worker needed) and sums their progress in steps; ok is false while the
// API cannot answer.
func (r *resilienceRun) fleetProgress() (installed, progress int, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, r.api+"/api/v1/servers?pageSize=1000", nil)
	bearerFromURL(req)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, 0, false
	}
	defer res.Body.Close()
	var list struct {
		Servers []struct{ Serial, State, Step string }
	}
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&list) != nil {
		return 0, 0, false
	}
	steps := server.Steps()
	for _, s := range list.Servers {
		switch s.State {
		case serverapi.StateInstalled:
			installed++
			progress += slices.Index(steps, serverapi.StepInstallOS) + 1
		case serverapi.StateAttention:
			if _, seen := r.attention[s.Serial]; !seen {
				st, err := tryServer(r.t, r.api, s.Serial)
				r.attention[s.Serial] = fmt.Sprintf("at %s: %+v (%v)", s.Step, st.Attention, err)
			}
			fallthrough
		default:
			if i := slices.Index(steps, s.Step); i >= 0 {
				progress += i
			}
		}
	}
	return installed, progress, true
}

// totalProgress is fleetProgress when every server is installed.
func (r *resilienceRun) totalProgress() int {
	return len(r.fleet) * (slices.Index(server.Steps(), serverapi.StepInstallOS) + 1)
}

// waitInstalled polls until every server is installed, calling at(progress)
// after each poll so a test can break things on the way. A server in
// attention fails the test at once: nothing here needs a human.
func (r *resilienceRun) waitInstalled(timeout time.Duration, at func(progress int)) {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		installed, progress, ok := r.fleetProgress()
		if len(r.attention) > 0 {
			r.t.Fatalf("servers in attention: %v", r.attention)
		}
		if ok && installed == len(r.fleet) {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d of %d servers installed after %s", installed, len(r.fleet), timeout)
		}
		if ok && at != nil {
			at(progress)
		}
		time.Sleep(time.Second)
	}
}

// fleetCounters is the simulator's GET /counters.
type fleetCounters struct {
	Total map[string]int            `json:"total"`
	BMCs  map[string]map[string]int `json:"bmcs"`
}

func (r *resilienceRun) counters() fleetCounters {
	r.t.Helper()
	res := do(r.t, http.MethodGet, r.admin+"/counters", "")
	require.Equal(r.t, http.StatusOK, res.code, string(res.body))
	var fc fleetCounters
	res.json(r.t, &fc)
	return fc
}

// sideEffects checks every server against one clean run and returns the
// duplicates (0 is the only passing answer) and the most power-ons one
// server took.
func (r *resilienceRun) sideEffects() (duplicates, maxOn int) {
	r.t.Helper()
	fc := r.counters()
	want := cleanRun()
	for _, e := range r.fleet {
		got := fc.BMCs[e.ID]
		for name, n := range want {
			if got[name] > n {
				duplicates += got[name] - n
			}
			require.Equal(r.t, n, got[name], "%s (%s, %s): %s", e.Serial, e.ID, e.Vendor, name)
		}
		if got["power_ons"] > maxPowerOns {
			duplicates += got["power_ons"] - maxPowerOns
		}
		require.LessOrEqual(r.t, got["power_ons"], maxPowerOns, "%s (%s): power-ons", e.Serial, e.Vendor)
		maxOn = max(maxOn, got["power_ons"])
	}
	return duplicates, maxOn
}

// checkServers reads each server back through the API (a worker answers
// the query): installed, on its first install attempt, every BMC step done.
func (r *resilienceRun) checkServers() {
	r.t.Helper()
	for _, e := range r.fleet {
		var st serverStatus
		eventually(r.t, 60*time.Second, e.Serial+" answers", func() error {
			var err error
			st, err = tryServer(r.t, r.api, e.Serial)
			return err
		})
		require.Equal(r.t, serverapi.StateInstalled, st.State, e.Serial)
		require.Equal(r.t, 1, st.InstallAttempt, "%s: no install attempt was given up", e.Serial)
		for _, s := range st.Steps {
			switch s.Name {
			case serverapi.StepRegisterCloud, serverapi.StepJoinAggregate, serverapi.StepAssignTenant, serverapi.StepJoinLoadBalancer:
			default:
				require.Equal(r.t, stepapi.StepDone, s.Status, "%s step %s", e.Serial, s.Name)
			}
		}
	}
}

// activityRetries counts the attempts beyond the first of every activity
// of every lifecycle, from the histories.
func (r *resilienceRun) activityRetries() int {
	r.t.Helper()
	c := temporalClient(r.t, r.temporal)
	retries := 0
	for _, e := range r.fleet {
		it := c.GetWorkflowHistory(context.Background(), serverapi.LifecycleWorkflowID(e.Serial), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(r.t, err)
			if a := ev.GetActivityTaskStartedEventAttributes(); a != nil && a.GetAttempt() > 1 {
				retries += int(a.GetAttempt()) - 1
			}
		}
	}
	return retries
}

func (r *resilienceRun) wall() float64 { return time.Since(r.started).Seconds() }

// TestResilienceWorkerKills kills -9 the lifecycle worker at seeded points
// of a fleet's run and starts it again: every server ends installed and
// no simulated BMC saw a side effect twice.
func TestResilienceWorkerKills(t *testing.T) {
	n, kills := resilienceSize(12), 4
	if *resilienceLong {
		kills = 8
	}
	r := newResilienceRun(t, n, nil)
	// Kill points: seeded fractions of the fleet's progress, spread over
	// the run, each with a seeded delay so it lands mid-activity.
	var points []int
	for range kills {
		points = append(points, int(float64(r.totalProgress())*(0.05+0.85*r.rng.Float64())))
	}
	slices.Sort(points)
	r.registerAll()
	killed := 0
	r.waitInstalled(10*time.Minute, func(progress int) {
		if killed == len(points) || progress < points[killed] {
			return
		}
		time.Sleep(time.Duration(r.rng.IntN(1500)) * time.Millisecond)
		r.worker.kill()
		killed++
		t.Logf("worker killed (%d/%d) at progress %d/%d", killed, len(points), progress, r.totalProgress())
		// Sometimes the worker is back at once, sometimes only after the
		// server noticed (installers phone home meanwhile).
		time.Sleep(time.Duration(r.rng.IntN(3000)) * time.Millisecond)
		r.startWorker()
	})
	wall := r.wall()
	r.checkServers()
	duplicates, maxOn := r.sideEffects()
	retries := r.activityRetries()
	fmt.Printf("RESILIENCE kind=worker-kill servers=%d kills=%d completed=%d duplicates=%d attentions=%d activity_retries=%d max_power_ons=%d wall_s=%.0f\n",
		n, killed, n, duplicates, len(r.attention), retries, maxOn, wall)
	require.Positive(t, killed, "the run ended before the first kill point")
}

// TestResilienceTemporalRestart kills -9 `metalflow dev` (its embedded
// Temporal, the API and the boot service) in the middle of a fleet's run
// and starts it again on the same data and ports; the fleet, in its own
// process, keeps its state, and the run completes.
func TestResilienceTemporalRestart(t *testing.T) {
	n, restarts := resilienceSize(8), 1
	if *resilienceLong {
		restarts = 3
	}
	r := newResilienceRun(t, n, nil)
	var points []int
	for range restarts {
		points = append(points, int(float64(r.totalProgress())*(0.2+0.6*r.rng.Float64())))
	}
	slices.Sort(points)
	r.registerAll()
	done := 0
	var downtime time.Duration
	r.waitInstalled(10*time.Minute, func(progress int) {
		if done == len(points) || progress < points[done] {
			return
		}
		time.Sleep(time.Duration(r.rng.IntN(1500)) * time.Millisecond)
		r.dev.kill()
		down := time.Now()
		done++
		t.Logf("dev killed (%d/%d) at progress %d/%d", done, len(points), progress, r.totalProgress())
		// Down long enough that hosts netboot and installers phone home
		// into a dead API, and the worker loses its Temporal.
		time.Sleep(time.Duration(2000+r.rng.IntN(4000)) * time.Millisecond)
		r.startDev()
		downtime += time.Since(down)
	})
	wall := r.wall()
	r.checkServers()
	duplicates, maxOn := r.sideEffects()
	retries := r.activityRetries()
	fmt.Printf("RESILIENCE kind=temporal-restart servers=%d restarts=%d completed=%d duplicates=%d attentions=%d activity_retries=%d max_power_ons=%d downtime_s=%.0f wall_s=%.0f\n",
		n, done, n, duplicates, len(r.attention), retries, maxOn, downtime.Seconds(), wall)
	require.Positive(t, done, "the run ended before dev was killed")
}

// TestResilienceBMCFaults provisions a fleet whose BMCs answer a fifth of
// requests 5xx, leave one in twenty hanging and now and then lose every
// session: transient faults all, so no server may need a human.
func TestResilienceBMCFaults(t *testing.T) {
	n := resilienceSize(12)
	const errorRate, hangRate, dropRate = 0.2, 0.05, 0.02
	r := newResilienceRun(t, n, []string{"--error-rate", fmt.Sprint(errorRate), "--hang-rate", fmt.Sprint(hangRate),
		"--session-drop-rate", fmt.Sprint(dropRate)},
		// A hang becomes a retry after 3 s rather than a minute.
		"--bmc-request-timeout", "3s")
	r.registerAll()
	r.waitInstalled(12*time.Minute, nil)
	wall := r.wall()
	r.checkServers()
	duplicates, maxOn := r.sideEffects()
	retries := r.activityRetries()
	total := r.counters().Total
	fmt.Printf("RESILIENCE kind=bmc-faults servers=%d error_rate=%v hang_rate=%v session_drop_rate=%v requests=%d faults_5xx=%d faults_hangs=%d faults_session_drops=%d completed=%d duplicates=%d attentions=%d activity_retries=%d max_power_ons=%d wall_s=%.0f\n",
		n, errorRate, hangRate, dropRate, total["requests"], total["faults_5xx"], total["faults_hangs"], total["faults_session_drops"],
		n, duplicates, len(r.attention), retries, maxOn, wall)
	for _, k := range []string{"faults_5xx", "faults_hangs", "faults_session_drops"} {
		require.Positive(t, total[k], "the fleet injected %s", k)
	}
}
