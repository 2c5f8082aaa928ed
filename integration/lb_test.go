package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// lbTimeout bounds every wait of the test: generous, for a loaded machine;
// nothing is asserted about how long anything took.
const lbTimeout = 3 * time.Minute

// TestLoadBalancerEndToEnd runs the load balancer as an operator would:
// `metalflow dev` in the root namespace, four `metalflow lbnode` workers in
// two clusters in namespaces, bird top-of-rack routers, decapsulating
// backends and a client, all driven only through metalflow's API, whose
// answers are checked against its OpenAPI document.
func TestLoadBalancerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the load balancer end-to-end test in -short mode")
	}
	x := newLBLab(t, false)
	t.Cleanup(func() {
		if t.Failed() {
			x.logs()
		}
	})
	dev := startDev(t, "--ephemeral", "--temporal-listen", x.temporal,
		"--vip-pool-internal", lbPoolInternal, "--vip-pool-public", lbPoolPublic)
	for _, n := range x.nodes {
		n.mustStart(t)
	}
	admin := newContract(t, dev.api)
	token := func(name, user, role string) *contract {
		a := admin.expect(t, http.StatusCreated, "POST", "/api/v1/tokens", jsonType,
			fmt.Sprintf(`{"name":%q,"user":%q,"role":%q}`, name, user, role), true)
		var res struct {
			Token string `json:"token"`
		}
		require.NoError(t, json.Unmarshal(a.body, &res))
		return admin.as(res.Token)
	}
	// Alice asks for VIPs and is an approver too; Bob approves.
	alice := token("alice-op", "alice", "operator")
	aliceApprover := token("alice-approver", "alice", "approver")
	bob := token("bob-approver", "bob", "approver")
	viewer := token("vera-viewer", "vera", "viewer")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	for _, tor := range x.tors {
		for _, n := range tor.neighbors {
			eventually(t, lbTimeout, fmt.Sprintf("%s's sessions with node %s", tor.name, n.name), func() error {
				for _, b := range []*lbBird{tor.internal, tor.external} {
					out, err := b.birdc("show", "protocols", "n_"+n.name)
					if err != nil || !strings.Contains(out, "Established") {
						return fmt.Errorf("%v: %s", err, out)
					}
				}
				return nil
			})
		}
	}

	backends := make([]string, 0, len(x.backends))
	for _, b := range x.backends {
		backends = append(backends, fmt.Sprintf(`{"address":%q,"weight":100}`, b.addr))
	}
	web := alice.createVIP(t, "web", "internal", strings.Join(backends, ","),
		`{"kind":"tcp","intervalMs":300,"timeoutMs":250,"fall":2,"rise":2}`)
	st := alice.waitVIP(t, "web", "active", func(st vipapi.VIPStatus) error { return allAnnounced(st, 2) })
	web = st.Address
	t.Logf("web is %s, digest %s, placement %+v", web, st.Digest, st.Placement)

	t.Run("an internal VIP runs on two clusters in two failure domains", func(t *testing.T) {
		require.Len(t, st.Placement, 2)
		assert.NotEqual(t, st.Placement[0].FailureDomain, st.Placement[1].FailureDomain)
		clusters := []string{st.Placement[0].Cluster, st.Placement[1].Cluster}
		slices.Sort(clusters)
		assert.Equal(t, []string{"lb-a", "lb-b"}, clusters)
		assert.Equal(t, lbapi.AnnounceInternal, st.Announce)
		assert.Equal(t, expectedDigest(st), st.Digest, "the status's digest is that of the spec it shows")
	})

	t.Run("each ToR has the route from both its nodes, the external peers none", func(t *testing.T) {
		x.waitRoutes(t, web, map[string][]string{"torA": {"n_a1", "n_a2"}, "torB": {"n_b1", "n_b2"}}, false)
		for _, tor := range x.tors {
			out := x.lab.IP(tor.ns, "route", "show", web)
			assert.Equal(t, 2, strings.Count(out, "nexthop via"), "%s's kernel route is ECMP over both nodes: %s", tor.name, out)
		}
	})

	t.Run("client connections reach all three backends", func(t *testing.T) {
		counts, errs := x.connectMany(ctx, web, 300)
		require.Empty(t, errs)
		t.Logf("connections per backend: %v", counts)
		for _, b := range x.backends {
			assert.NotZero(t, counts[b.name], "no connection reached %s", b.name)
		}
		// torA spreads the flows over both its nodes; cluster lb-b's nodes
		// run the VIP too but no client is behind torB.
		for _, n := range []string{"a1", "a2"} {
			packets := x.node(n).vipPackets(t, web)
			t.Logf("%s forwarded %d packets for %s", n, packets, web)
			assert.NotZero(t, packets, "node %s took part", n)
		}
	})

	t.Run("a public VIP waits for an approver other than its requester", func(t *testing.T) {
		alice.createVIP(t, "shop", "public", strings.Join(backends, ","), "")
		st := alice.waitVIP(t, "shop", "awaiting-approval", func(st vipapi.VIPStatus) error { return allAnnounced(st, 2) })
		assert.True(t, st.AwaitingApproval)
		assert.Equal(t, lbapi.AnnounceInternal, st.Announce)
		assert.Equal(t, "alice", st.RequestedBy)
		shop := st.Address
		x.waitRoutes(t, shop, map[string][]string{"torA": {"n_a1", "n_a2"}, "torB": {"n_b1", "n_b2"}}, false)

		viewer.expect(t, http.StatusForbidden, "POST", "/api/v1/vips/shop/approve", "", "", true)
		alice.expect(t, http.StatusForbidden, "POST", "/api/v1/vips/shop/approve", "", "", true)
		a := aliceApprover.expect(t, http.StatusConflict, "POST", "/api/v1/vips/shop/approve", "", "", true)
		assert.Contains(t, string(a.body), "cannot approve")
		// Refused approvals changed nothing: still only internal peers.
		x.waitRoutes(t, shop, map[string][]string{"torA": {"n_a1", "n_a2"}, "torB": {"n_b1", "n_b2"}}, false)

		bob.expect(t, http.StatusOK, "POST", "/api/v1/vips/shop/approve", "", "", true)
		st = alice.waitVIP(t, "shop", "active", func(st vipapi.VIPStatus) error { return allAnnounced(st, 2) })
		assert.Equal(t, "bob", st.ApprovedBy)
		assert.Equal(t, lbapi.AnnouncePublic, st.Announce)
		x.waitRoutes(t, shop, map[string][]string{"torA": {"n_a1", "n_a2"}, "torB": {"n_b1", "n_b2"}}, true)
		counts, errs := x.connectMany(ctx, shop, 60)
		require.Empty(t, errs)
		assert.Len(t, counts, 3)
	})

	t.Run("a rejected public VIP is withdrawn", func(t *testing.T) {
		alice.createVIP(t, "shop-b", "public", strings.Join(backends, ","), "")
		st := alice.waitVIP(t, "shop-b", "awaiting-approval", func(st vipapi.VIPStatus) error { return allAnnounced(st, 2) })
		bob.expect(t, http.StatusOK, "POST", "/api/v1/vips/shop-b/reject", jsonType, `{"reason":"not this quarter"}`, true)
		alice.waitVIP(t, "shop-b", "rejected", nil)
		x.waitRoutes(t, st.Address, map[string][]string{"torA": nil, "torB": nil}, false)
	})

	t.Run("a backends change completes across a worker killed and restarted", func(t *testing.T) {
		before := alice.getVIP(t, "web")
		loop := x.connectLoop(ctx, web)
		a1 := x.node("a1")
		a1.kill()
		restarted := make(chan error, 1)
		go func() {
			time.Sleep(3 * time.Second)
			restarted <- a1.start()
		}()
		alice.expect(t, http.StatusOK, "POST", "/api/v1/vips/web/backends", jsonType,
			fmt.Sprintf(`{"add":[{"address":%q,"weight":200}]}`, x.backends[2].addr), true)
		require.NoError(t, <-restarted)
		eventually(t, lbTimeout, "a1 restarted on its pinned data plane", func() error {
			if run := a1.lastRunLog(); !strings.Contains(run, "agent started") || !strings.Contains(run, "adopted=true") {
				return fmt.Errorf("log since the restart: %s", run)
			}
			return nil
		})
		st := alice.waitVIP(t, "web", "active", func(st vipapi.VIPStatus) error { return allAnnounced(st, 2) })
		assert.NotEqual(t, before.Digest, st.Digest)
		assert.Equal(t, expectedDigest(st), st.Digest)
		x.waitRoutes(t, web, map[string][]string{"torA": {"n_a1", "n_a2"}, "torB": {"n_b1", "n_b2"}}, false)
		done, failures := loop.stop()
		t.Logf("%d client connections while a1 was killed and restarted", done)
		assert.Empty(t, failures)
		assert.Greater(t, done, 10)
	})

	t.Run("a backend that stops answering is drained everywhere, and comes back", func(t *testing.T) {
		be2 := x.backends[1]
		be2.halt()
		st := alice.waitVIP(t, "web", "active", func(st vipapi.VIPStatus) error {
			if h := backendHealth(st, be2.addr); h != vipapi.BackendDown {
				return fmt.Errorf("%s is %q", be2.addr, h)
			}
			return allAnnounced(st, 2)
		})
		require.Equal(t, expectedDigest(st), st.Digest, "every node runs the spec with %s drained", be2.addr)
		for _, b := range st.Backends {
			if b.Address == be2.addr {
				assert.Len(t, b.DownOn, 4, "every node saw it down: %v", b.DownOn)
			}
		}
		counts, errs := x.connectMany(ctx, web, 100)
		require.Empty(t, errs)
		assert.Zero(t, counts[be2.name], "new connections avoid the drained backend: %v", counts)

		be2.serve(t)
		st = alice.waitVIP(t, "web", "active", func(st vipapi.VIPStatus) error {
			if h := backendHealth(st, be2.addr); h != vipapi.BackendUp {
				return fmt.Errorf("%s is %q", be2.addr, h)
			}
			return allAnnounced(st, 2)
		})
		require.Equal(t, expectedDigest(st), st.Digest)
		counts, errs = x.connectMany(ctx, web, 200)
		require.Empty(t, errs)
		assert.NotZero(t, counts[be2.name], "the backend is back: %v", counts)
	})

	t.Run("a change a cluster cannot take waits for attention: retry, then abort", func(t *testing.T) {
		bNodes := []*lbNodeProc{x.node("b1"), x.node("b2")}
		stopB := func() {
			for _, n := range bNodes {
				n.stop()
			}
		}
		startB := func() {
			for _, n := range bNodes {
				n.mustStart(t)
			}
		}
		before := alice.getVIP(t, "shop")
		// Cluster lb-b's workers are down: its nodes take no task, the
		// change is rolled back on lb-a and the VIP asks staff.
		stopB()
		change := fmt.Sprintf(`{"add":[{"address":%q,"weight":150}]}`, x.backends[0].addr)
		a := alice.expectOneOf(t, []int{http.StatusConflict, http.StatusAccepted}, "POST", "/api/v1/vips/shop/backends", change)
		t.Logf("backends change without lb-b: %d %s", a.code, a.body)
		st := alice.waitAttention(t, "shop")
		assert.Equal(t, vipapi.VIPStepBackends, st.Attention.Step)
		assert.Contains(t, st.Attention.Error, "took no task")
		startB()
		alice.expect(t, http.StatusOK, "POST", "/api/v1/vips/shop/retry", jsonType, `{}`, true)
		st = alice.waitVIP(t, "shop", "active", func(st vipapi.VIPStatus) error { return allAnnounced(st, 2) })
		assert.NotEqual(t, before.Digest, st.Digest, "the retried change is in")
		assert.Equal(t, expectedDigest(st), st.Digest)
		x.waitRoutes(t, st.Address, map[string][]string{"torA": {"n_a1", "n_a2"}, "torB": {"n_b1", "n_b2"}}, true)

		retried := st
		stopB()
		change = fmt.Sprintf(`{"add":[{"address":%q,"weight":50}]}`, x.backends[0].addr)
		alice.expectOneOf(t, []int{http.StatusConflict, http.StatusAccepted}, "POST", "/api/v1/vips/shop/backends", change)
		alice.waitAttention(t, "shop")
		alice.expect(t, http.StatusOK, "POST", "/api/v1/vips/shop/abort", jsonType, `{"reason":"lb-b is in maintenance"}`, true)
		startB()
		st = alice.waitVIP(t, "shop", "active", nil)
		assert.Equal(t, retried.Digest, st.Digest, "the aborted change left the previous backends")
		x.waitRoutes(t, st.Address, map[string][]string{"torA": {"n_a1", "n_a2"}, "torB": {"n_b1", "n_b2"}}, true)
	})

	t.Run("a public VIP is retired", func(t *testing.T) {
		viewer.expect(t, http.StatusOK, "GET", "/api/v1/vips", "", "", true)
		alice.expect(t, http.StatusOK, "DELETE", "/api/v1/vips/shop", jsonType, `{"reason":"end of test"}`, true)
	})

	t.Run("every VIP operation answered successfully", func(t *testing.T) {
		for _, op := range admin.doc.Operations() {
			if !strings.HasPrefix(op.Path, "/api/v1/vips") {
				continue
			}
			ok := slices.ContainsFunc(admin.seen[op], func(code int) bool { return code >= 200 && code < 300 })
			assert.True(t, ok, "%s never answered successfully here (saw %v)", op, admin.seen[op])
		}
	})
}

// createVIP asks for a VIP; healthCheck is a JSON object or "".
func (c *contract) createVIP(t *testing.T, name, exposure, backends, healthCheck string) string {
	t.Helper()
	body := fmt.Sprintf(`{"name":%q,"protocol":"tcp","port":%d,"exposure":%q,"backends":[%s]`, name, lbVIPPort, exposure, backends)
	if healthCheck != "" {
		body += `,"healthCheck":` + healthCheck
	}
	body += "}"
	c.expect(t, http.StatusAccepted, "POST", "/api/v1/vips", jsonType, body, true)
	return name
}

func (c *contract) getVIP(t *testing.T, name string) vipapi.VIPStatus {
	t.Helper()
	a := c.expect(t, http.StatusOK, "GET", "/api/v1/vips/"+name, "", "", true)
	var st vipapi.VIPStatus
	require.NoError(t, json.Unmarshal(a.body, &st))
	return st
}

// waitAttention polls a VIP until it waits for staff.
func (c *contract) waitAttention(t *testing.T, name string) vipapi.VIPStatus {
	t.Helper()
	var st vipapi.VIPStatus
	eventually(t, lbTimeout, "VIP "+name+" needs attention", func() error {
		st = c.getVIP(t, name)
		if st.State != vipapi.VIPStateAttention || st.Attention == nil {
			return fmt.Errorf("state %s", st.State)
		}
		return nil
	})
	return st
}

// expectOneOf is expect for a well-formed JSON request whose status
// depends on timing: an update that outlasts the API's wait answers 503,
// one the workflow parks in attention first answers 409.
func (c *contract) expectOneOf(t *testing.T, statuses []int, method, path, body string) liveAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, c.api+path, strings.NewReader(body))
	require.NoError(t, err)
	bearerFromURL(req)
	req.Header.Set("Content-Type", jsonType)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Contains(t, statuses, res.StatusCode, "%s %s: %s", method, path, b)
	op, err := c.doc.Operation(req)
	require.NoError(t, err)
	c.seen[op] = append(c.seen[op], res.StatusCode)
	require.NoError(t, c.doc.CheckResponse(req, res.StatusCode, res.Header, b), "%s %s: %s", method, path, b)
	require.NoError(t, c.doc.CheckRequest(req, []byte(body)))
	return liveAnswer{code: res.StatusCode, header: res.Header, body: b}
}

// waitVIP polls a VIP until it is in state and fn (if any) is satisfied.
// A VIP that parks in attention fails the test at once with its reason.
func (c *contract) waitVIP(t *testing.T, name, state string, fn func(vipapi.VIPStatus) error) vipapi.VIPStatus {
	t.Helper()
	var st vipapi.VIPStatus
	eventually(t, lbTimeout, "VIP "+name+" "+state, func() error {
		st = c.getVIP(t, name)
		if st.Attention != nil {
			t.Fatalf("VIP %s needs attention at %s: %s", name, st.Attention.Step, st.Attention.Error)
		}
		if st.State != state {
			return fmt.Errorf("state %s", st.State)
		}
		if fn != nil {
			return fn(st)
		}
		return nil
	})
	return st
}

// allAnnounced requires clusters clusters, every node announcing and
// running the VIP's digest.
func allAnnounced(st vipapi.VIPStatus, clusters int) error {
	if len(st.Placement) != clusters {
		return fmt.Errorf("placed on %d clusters", len(st.Placement))
	}
	want := map[string]int{}
	for _, c := range st.Placement {
		want[c.Cluster] = 2
	}
	return announcedOn(st, want)
}

// announcedOn checks that the VIP runs on exactly the given number of nodes
// in each named cluster, every one of them announcing the current digest.
func announcedOn(st vipapi.VIPStatus, nodes map[string]int) error {
	if len(st.Placement) != len(nodes) {
		return fmt.Errorf("placed on %d clusters, want %d", len(st.Placement), len(nodes))
	}
	for _, c := range st.Placement {
		if len(c.Nodes) != nodes[c.Cluster] {
			return fmt.Errorf("cluster %s: %d nodes, want %d", c.Cluster, len(c.Nodes), nodes[c.Cluster])
		}
		for _, n := range c.Nodes {
			if n.State != vipapi.NodeAnnounced || n.Digest != st.Digest {
				return fmt.Errorf("node %s/%s is %s with digest %s, want announced with %s", c.Cluster, n.Node, n.State, n.Digest, st.Digest)
			}
		}
	}
	return nil
}

func backendHealth(st vipapi.VIPStatus, addr string) string {
	for _, b := range st.Backends {
		if b.Address == addr {
			return b.Health
		}
	}
	return ""
}

// expectedDigest is the digest of the spec the status describes, with the
// backends some node reports down drained: what every node must run.
func expectedDigest(st vipapi.VIPStatus) string {
	spec := lbapi.VIPSpec{Name: st.Name, Address: st.Address, Protocol: st.Protocol, Ports: st.Ports,
		Announce: st.Announce, HealthCheck: st.HealthCheck}
	for _, b := range st.Backends {
		e := b.Backend
		if b.Health == vipapi.BackendDown {
			e.State = lbapi.BackendDrain
		}
		spec.Backends = append(spec.Backends, e)
	}
	return lbapi.Digest(spec)
}

// waitRoutes waits until each ToR's internal bird has the VIP's /32 from
// exactly the given sessions, and its external bird from the same
// sessions when external is true, from none otherwise.
func (x *lbLab) waitRoutes(t *testing.T, vip string, want map[string][]string, external bool) {
	t.Helper()
	prefix := vip + "/32"
	for name, sessions := range want {
		tor := x.tors[name]
		eventually(t, lbTimeout, fmt.Sprintf("%s's routes to %s", name, prefix), func() error {
			for _, b := range []*lbBird{tor.internal, tor.external} {
				from, err := b.routeFrom(prefix)
				if err != nil {
					return err
				}
				slices.Sort(from)
				exp := sessions
				if b == tor.external && !external {
					exp = nil
				}
				if !slices.Equal(from, exp) {
					return fmt.Errorf("%s has it from %v, want %v", b.sock, from, exp)
				}
			}
			return nil
		})
	}
}

// connectLoop opens connections to vip from the client without pause
// until stopped.
type connectLoop struct {
	stopCh   chan struct{}
	wg       sync.WaitGroup
	mu       sync.Mutex
	done     int
	failures []error
}

func (x *lbLab) connectLoop(ctx context.Context, vip string) *connectLoop {
	l := &connectLoop{stopCh: make(chan struct{})}
	for range 3 {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stopCh:
					return
				case <-ctx.Done():
					return
				default:
				}
				_, err := x.dial(vip)
				l.mu.Lock()
				if err != nil {
					l.failures = append(l.failures, fmt.Errorf("%s: %w", time.Now().Format(time.TimeOnly), err))
				} else {
					l.done++
				}
				l.mu.Unlock()
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	return l
}

func (l *connectLoop) stop() (int, []error) {
	close(l.stopCh)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.done, l.failures
}
