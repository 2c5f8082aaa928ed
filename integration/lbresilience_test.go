package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// relaunchDev starts dev again on the addresses old had (the lbnode
// workers know only that Temporal frontend) with args, typically the same
// --data. A port the killed process held, or one some other process took
// meanwhile, can refuse the bind for a moment: that attempt is stopped and
// another made. The process lives until owner's end (a subtest's own
// cleanup would stop it when the subtest ends).
func relaunchDev(t, owner *testing.T, old *devStack, args ...string) *devStack {
	t.Helper()
	u, err := url.Parse(old.api)
	require.NoError(t, err)
	full := append([]string{"dev", "--temporal-listen", old.temporal,
		"--temporal-ui", strings.TrimPrefix(old.webUI, "http://"), "--http", u.Host}, args...)
	ready := "http://" + u.Host + "/readyz"
	for attempt := 1; ; attempt++ {
		p := startProcess(owner, "dev", full...)
		err := waitReady(p, ready, 90*time.Second)
		if err == nil {
			return &devStack{proc: p, api: old.api, token: old.token, webUI: old.webUI, temporal: old.temporal}
		}
		p.kill()
		b, _ := os.ReadFile(p.log)
		clash := strings.Contains(string(b), "address already in use") || strings.Contains(string(b), "cannot listen")
		if !clash || attempt == 10 {
			t.Fatalf("relaunching dev (attempt %d): %v\n%s", attempt, err, tail(b, 4096))
		}
		t.Logf("relaunching dev: port clash on attempt %d, trying again", attempt)
		time.Sleep(time.Second)
	}
}

// requireRunning fails unless p has not exited: a kill must hit a live
// process for the outage to be the test's.
func requireRunning(t *testing.T, p *process) {
	t.Helper()
	select {
	case <-p.done:
		t.Fatalf("%s exited before it was killed: %v", p.name, p.err)
	default:
	}
}

// waitReady polls url until it answers 200, the process exits or timeout
// passes.
func waitReady(p *process, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		default:
		}
		res, err := http.Get(url)
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("status %d", res.StatusCode)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// routeWatch checks a ToR's internal route to a VIP while something else
// is down: the bird route from both nodes and the kernel's ECMP route.
type routeWatch struct {
	checks, failures int
	last             error
}

func (w *routeWatch) check(x *lbLab, tor, vip string, sessions []string) {
	w.checks++
	from, err := x.tors[tor].internal.routeFrom(vip + "/32")
	if err == nil && strings.Join(from, ",") != strings.Join(sessions, ",") {
		err = fmt.Errorf("%s has %s from %v, want %v", tor, vip, from, sessions)
	}
	if err == nil {
		if out := x.lab.IP(x.tors[tor].ns, "route", "show", vip); strings.Count(out, "nexthop via") != len(sessions) {
			err = fmt.Errorf("%s's kernel route to %s: %s", tor, vip, out)
		}
	}
	if err != nil {
		w.failures++
		w.last = err
	}
}

// resilienceEvent prints the machine-readable line of one event.
func resilienceEvent(t *testing.T, fields string) {
	t.Helper()
	line := "LB-RESILIENCE " + fields
	fmt.Println(line)
	t.Log(line)
}

// TestLoadBalancerKeepsForwarding is issue #9: the data plane forwards on
// its own. A client keeps opening TCP connections through a VIP while one
// lbnode process is SIGKILLed and restarted, and while Temporal (dev, on
// persistent state) is SIGKILLed for a while and relaunched; no
// connection fails and the ToR keeps its routes. After Temporal is back a
// backends change completes, and a backend that died while it was down is
// drained, its health report having been sent again until delivered. A
// node added to a cluster afterwards runs the cluster's VIP unasked.
func TestLoadBalancerKeepsForwarding(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the load balancer resilience test in -short mode")
	}
	x := newLBLab(t, true)
	t.Cleanup(func() {
		if t.Failed() {
			x.logs()
		}
	})
	data := t.TempDir()
	top := t
	dev := x.startLBDev(t, "--data", data)
	admin := newContract(t, dev.api)
	_, alice := lbToken(t, admin, "alice-op", "alice", "operator")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	backends := make([]string, 0, len(x.backends))
	for _, b := range x.backends {
		backends = append(backends, fmt.Sprintf(`{"address":%q,"weight":100}`, b.addr))
	}
	alice.createVIP(t, "web", "internal", strings.Join(backends, ","),
		`{"kind":"tcp","intervalMs":300,"timeoutMs":250,"fall":2,"rise":2}`)
	st := alice.waitVIP(t, "web", "active", func(st vipapi.VIPStatus) error { return allAnnounced(st, 2) })
	web := st.Address
	both := map[string][]string{"torA": {"n_a1", "n_a2"}, "torB": {"n_b1", "n_b2"}}
	x.waitRoutes(t, web, both, false)

	t.Run("lbnode killed and restarted", func(t *testing.T) {
		loop := x.connectLoop(ctx, web)
		a2 := x.node("a2")
		torA := x.tors["torA"]
		killed := time.Now()
		a2.kill()
		// ToR A drops a2's route when its BGP session closes; the client's
		// flows are steered to a2 by hand meanwhile, so they cross a data
		// plane with no process behind it.
		x.lab.IP(torA.ns, "route", "add", web+"/32", "via", a2.addr, "table", "100")
		x.lab.IP(torA.ns, "rule", "add", "from", lbClientAddr, "lookup", "100", "priority", "100")
		packets := a2.vipPackets(t, web)
		// Long enough for the client loop to run through it; nothing is
		// asserted about the time.
		time.Sleep(2 * time.Second)
		deadPackets := a2.vipPackets(t, web) - packets
		link := x.lab.IP(a2.ns, "link", "show", a2.iface)
		x.lab.IP(torA.ns, "rule", "del", "from", lbClientAddr, "lookup", "100", "priority", "100")
		x.lab.IP(torA.ns, "route", "del", web+"/32", "table", "100")
		assert.Contains(t, link, "xdp", "the program stays attached with no process behind it")
		assert.NotZero(t, deadPackets, "a2 forwarded the client's flows with no process")
		a2.mustStart(t)
		down := time.Since(killed)
		eventually(t, lbTimeout, "a2 restarted on its pinned data plane", func() error {
			if run := a2.lastRunLog(); !strings.Contains(run, "agent started") || !strings.Contains(run, "adopted=true") {
				return fmt.Errorf("log since the restart: %s", run)
			}
			return nil
		})
		// It resumes its VIP: announced again, and the workflow sees it run
		// the VIP's digest.
		x.waitRoutes(t, web, both, false)
		alice.waitVIP(t, "web", "active", func(st vipapi.VIPStatus) error { return allAnnounced(st, 2) })
		done, failures := loop.stop()
		resilienceEvent(t, fmt.Sprintf("event=lbnode-kill node=a2 seconds=%.0f connections=%d failed=%d xdp-attached=%v packets-while-dead=%d",
			down.Seconds(), done, len(failures), strings.Contains(link, "xdp"), deadPackets))
		assert.Empty(t, failures)
		assert.Greater(t, done, 10)
	})

	t.Run("Temporal down", func(t *testing.T) {
		before := alice.getVIP(t, "web")
		loop := x.connectLoop(ctx, web)
		var routes routeWatch
		requireRunning(t, dev.proc)
		dev.proc.kill()
		stopped := time.Now()
		for time.Since(stopped) < 20*time.Second {
			routes.check(x, "torA", web, []string{"n_a1", "n_a2"})
			routes.check(x, "torB", web, []string{"n_b1", "n_b2"})
			time.Sleep(500 * time.Millisecond)
		}
		dev = relaunchDev(t, top, dev, "--data", data)
		down := time.Since(stopped)
		done, failures := loop.stop()
		resilienceEvent(t, fmt.Sprintf("event=temporal-down seconds=%.0f connections=%d failed=%d route-checks=%d route-failures=%d",
			down.Seconds(), done, len(failures), routes.checks, routes.failures))
		assert.Empty(t, failures)
		assert.Greater(t, done, 10)
		assert.Zero(t, routes.failures, "last: %v", routes.last)

		// Temporal is back: a change goes through every node.
		alice.expectOneOf(t, []int{http.StatusOK, http.StatusAccepted}, "POST", "/api/v1/vips/web/backends",
			fmt.Sprintf(`{"add":[{"address":%q,"weight":200}]}`, x.backends[2].addr))
		st := alice.waitVIP(t, "web", "active", func(st vipapi.VIPStatus) error {
			if st.Digest == before.Digest {
				return fmt.Errorf("still digest %s", st.Digest)
			}
			return allAnnounced(st, 2)
		})
		assert.Equal(t, expectedDigest(st), st.Digest)
	})

	t.Run("a backend dies while Temporal is down", func(t *testing.T) {
		be2 := x.backends[1]
		requireRunning(t, dev.proc)
		dev.proc.kill()
		stopped := time.Now()
		be2.halt()
		// Every node judges it down and cannot tell anyone; they keep
		// trying.
		for _, n := range x.nodes {
			eventually(t, lbTimeout, n.name+" judges "+be2.addr+" down and retries the report", func() error {
				run := n.lastRunLog()
				judged, retried := false, false
				for _, line := range strings.Split(run, "\n") {
					if !strings.Contains(line, "backend="+be2.addr) || !strings.Contains(line, "healthy=false") {
						continue
					}
					judged = judged || strings.Contains(line, `msg="backend health changed"`)
					retried = retried || strings.Contains(line, "sending it again later")
				}
				if !judged || !retried {
					return fmt.Errorf("judged %v, retried %v", judged, retried)
				}
				return nil
			})
		}
		dev = relaunchDev(t, top, dev, "--data", data)
		down := time.Since(stopped)
		st := alice.waitVIP(t, "web", "active", func(st vipapi.VIPStatus) error {
			if h := backendHealth(st, be2.addr); h != vipapi.BackendDown {
				return fmt.Errorf("%s is %q", be2.addr, h)
			}
			for _, b := range st.Backends {
				if b.Address == be2.addr && len(b.DownOn) != len(x.nodes) {
					return fmt.Errorf("down on %v", b.DownOn)
				}
			}
			return allAnnounced(st, 2)
		})
		require.Equal(t, expectedDigest(st), st.Digest, "every node runs the spec with %s drained", be2.addr)
		var downOn int
		for _, b := range st.Backends {
			if b.Address == be2.addr {
				downOn = len(b.DownOn)
			}
		}
		counts, errs := x.connectMany(ctx, web, 100)
		resilienceEvent(t, fmt.Sprintf("event=backend-dies-temporal-down seconds=%.0f backend=%s drained-on=%d connections=%d failed=%d",
			down.Seconds(), be2.name, downOn, len(errs)+sum(counts), len(errs)))
		require.Empty(t, errs)
		assert.Zero(t, counts[be2.name], "new connections avoid the drained backend: %v", counts)
	})

	t.Run("a VIP retired while a node was down is removed when it returns", func(t *testing.T) {
		alice.createVIP(t, "tmp", "internal", strings.Join(backends, ","), "")
		tmp := alice.waitVIP(t, "tmp", "active", func(st vipapi.VIPStatus) error { return allAnnounced(st, 2) }).Address
		b2 := x.node("b2")
		b2.kill()
		// The retire cannot reach b2 and waits for staff; once the
		// inventory has b2 down, abort lets it forget b2 and finish.
		alice.expectOneOf(t, []int{http.StatusOK, http.StatusAccepted, http.StatusConflict}, "DELETE", "/api/v1/vips/tmp", `{"reason":"end of test"}`)
		alice.waitAttention(t, "tmp")
		tc := temporalClient(t, x.temporal)
		t.Cleanup(tc.Close)
		eventually(t, lbTimeout, "the inventory has b2 down", func() error {
			v, err := tc.QueryWorkflow(ctx, lbapi.RegistryWorkflowID(b2.cluster, b2.name), "", stepapi.QueryStatus)
			if err != nil {
				return err
			}
			var st vipapi.LBNodeRegistryState
			if err := v.Get(&st); err != nil {
				return err
			}
			if !st.Down {
				return fmt.Errorf("b2 last seen %s", st.LastSeen)
			}
			return nil
		})
		alice.expect(t, http.StatusOK, "POST", "/api/v1/vips/tmp/abort", jsonType, `{"reason":"b2 is gone"}`, true)
		eventually(t, lbTimeout, "tmp retired", func() error {
			if st := alice.getVIP(t, "tmp"); st.State != vipapi.VIPStateRetired {
				return fmt.Errorf("state %s", st.State)
			}
			return nil
		})

		// b2 comes back with tmp in its saved state and its pinned maps; it
		// asks tmp's workflow, which has ended, and removes it.
		b2.mustStart(t)
		eventually(t, lbTimeout, "b2 removes tmp", func() error {
			if run := b2.lastRunLog(); !strings.Contains(run, "removing a VIP its workflow does not want here") || !strings.Contains(run, "vip=tmp") {
				return fmt.Errorf("log since the restart: %s", tail([]byte(run), 2048))
			}
			return nil
		})
		x.waitRoutes(t, tmp, map[string][]string{"torA": nil, "torB": nil}, false)
		stats := x.mustRun(b2.ns, "lbnode", "--stats", "--iface", b2.iface, "--pin-root", b2.pins)
		assert.NotContains(t, stats, tmp+":", "tmp is out of b2's data plane")
		// web, which its workflow still wants there, stays.
		x.waitRoutes(t, web, both, false)
		alice.waitVIP(t, "web", "active", func(st vipapi.VIPStatus) error { return allAnnounced(st, 2) })
		resilienceEvent(t, fmt.Sprintf("event=retired-while-down node=b2 vip=tmp removed-at-restart=%v web-kept=true", !strings.Contains(stats, tmp+":")))
	})

	t.Run("a node added to a cluster after placement runs its VIPs", func(t *testing.T) {
		before := alice.getVIP(t, "web")
		a3 := x.spare
		a3.mustStart(t)
		added := time.Now()
		// Nobody touches web: a3's registry tells web's workflow that a
		// node of lb-a came up, and web brings it in.
		st := alice.waitVIP(t, "web", "active", func(st vipapi.VIPStatus) error {
			return announcedOn(st, map[string]int{"lb-a": 3, "lb-b": 2})
		})
		joined := time.Since(added)
		assert.Equal(t, before.Digest, st.Digest, "the new node runs what the others run; nothing else changed")
		three := map[string][]string{"torA": {"n_a1", "n_a2", "n_a3"}, "torB": {"n_b1", "n_b2"}}
		x.waitRoutes(t, web, three, false)
		eventually(t, lbTimeout, "torA's kernel route over three nodes", func() error {
			if out := x.lab.IP(x.tors["torA"].ns, "route", "show", web); strings.Count(out, "nexthop via") != 3 {
				return fmt.Errorf("%s", out)
			}
			return nil
		})
		packets := a3.vipPackets(t, web)
		counts, errs := x.connectMany(ctx, web, 300)
		require.Empty(t, errs)
		through := a3.vipPackets(t, web) - packets
		assert.NotZero(t, through, "torA spreads flows over a3 too")
		resilienceEvent(t, fmt.Sprintf("event=node-added node=a3 seconds-to-join=%.0f connections=%d failed=%d a3-packets=%d",
			joined.Seconds(), sum(counts), len(errs), through))
		if *record {
			// The join's commands, and the registry's node-up version
			// marker, for workflows/replay_test.go (both runs are open:
			// the replayer checks the commands up to the last event).
			dir := filepath.Join("..", "workflows", "testdata")
			writeHistory(t, x.temporal, lbapi.VIPWorkflowID("web"), filepath.Join(dir, "vip-node-joined.json"))
			writeHistory(t, x.temporal, lbapi.RegistryWorkflowID(a3.cluster, a3.name), filepath.Join(dir, "lbnode-registry-node-up.json"))
		}
	})
}

func sum(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}
