package agent

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// fastCheck probes every few milliseconds so the tests take little time;
// they still wait by polling and never assert durations.
func fastCheck(kind string, port uint16) *lbapi.HealthCheck {
	return &lbapi.HealthCheck{Kind: kind, Port: port, Path: "/healthz", IntervalMS: 5, TimeoutMS: 500, Fall: 3, Rise: 2}
}

func portOf(t *testing.T, addr net.Addr) uint16 {
	t.Helper()
	_, p, err := net.SplitHostPort(addr.String())
	require.NoError(t, err)
	n, err := strconv.Atoi(p)
	require.NoError(t, err)
	return uint16(n)
}

// acceptAll keeps a TCP listener answering until it is closed.
func acceptAll(ln net.Listener) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
}

func healthOf(changes []lbapi.BackendHealthChange) []bool {
	var out []bool
	for _, c := range changes {
		out = append(out, c.Healthy)
	}
	return out
}

func TestTCPCheckDampsAndReportsEachChangeOnce(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	acceptAll(ln)
	addr := ln.Addr().String()
	port := portOf(t, ln.Addr())

	rep := &recordingReporter{}
	h := NewHealthChecker(HealthCheckerConfig{Cluster: "c1", Node: "lb1", Reporter: rep})
	t.Cleanup(h.Close)
	spec := lbapi.VIPSpec{Name: "web", Address: "10.200.0.10", Protocol: "tcp", Ports: []uint16{port},
		Backends: []lbapi.Backend{{Address: "127.0.0.1", Weight: 1}}, HealthCheck: fastCheck("tcp", 0)}
	h.Set(spec)

	eventually(t, "the backend is reported up", func() bool { return len(rep.list()) == 1 })
	first := rep.list()[0]
	assert.Equal(t, lbapi.BackendHealthChange{VIP: "web", Backend: "127.0.0.1", Healthy: true, Cluster: "c1", Node: "lb1", At: first.At}, first)
	assert.Equal(t, HealthUp, h.Health("web", "127.0.0.1"))

	require.NoError(t, ln.Close())
	eventually(t, "the closed backend is reported down", func() bool { return len(rep.list()) == 2 })
	down := rep.list()[1]
	assert.False(t, down.Healthy)
	assert.NotEmpty(t, down.Reason, "a down report says why")
	assert.Equal(t, HealthDown, h.Health("web", "127.0.0.1"))
	// Many more failed probes change nothing: a down backend is reported once.
	seen := h.probeCount("web", "127.0.0.1")
	eventually(t, "twenty more probes have failed", func() bool { return h.probeCount("web", "127.0.0.1") >= seen+20 })
	assert.Equal(t, []bool{true, false}, healthOf(rep.list()))

	var ln2 net.Listener
	eventually(t, "the port can be listened on again", func() bool {
		ln2, err = net.Listen("tcp", addr)
		return err == nil
	})
	t.Cleanup(func() { ln2.Close() })
	acceptAll(ln2)
	eventually(t, "the reopened backend is reported up", func() bool { return len(rep.list()) == 3 })
	assert.Equal(t, []bool{true, false, true}, healthOf(rep.list()))

	h.Remove("web")
	assert.Equal(t, HealthUnknown, h.Health("web", "127.0.0.1"), "a backend no longer checked is unknown")
}

// flakyServer answers its health endpoint with 500 on every third request
// and counts requests.
type flakyServer struct {
	requests atomic.Int64
	failing  atomic.Bool
}

func (f *flakyServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := f.requests.Add(1)
	if r.URL.Path != "/healthz" {
		http.NotFound(w, r)
		return
	}
	if f.failing.Load() || n%3 == 0 {
		http.Error(w, "not now", http.StatusInternalServerError)
		return
	}
	_, _ = w.Write([]byte("ok"))
}

func TestHTTPCheckIgnoresAFlappingBackend(t *testing.T) {
	srv := &flakyServer{}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	port := portOf(t, ts.Listener.Addr())

	rep := &recordingReporter{}
	h := NewHealthChecker(HealthCheckerConfig{Cluster: "c1", Node: "lb1", Reporter: rep})
	t.Cleanup(h.Close)
	h.Set(lbapi.VIPSpec{Name: "web", Address: "10.200.0.10", Protocol: "tcp", Ports: []uint16{80},
		Backends: []lbapi.Backend{{Address: "127.0.0.1", Weight: 1}}, HealthCheck: fastCheck("http", port)})

	eventually(t, "thirty probes have run", func() bool { return srv.requests.Load() >= 30 })
	assert.Equal(t, []bool{true}, healthOf(rep.list()), "one failure in three is below Fall")

	srv.failing.Store(true)
	eventually(t, "a failing HTTP backend is reported down", func() bool { return len(rep.list()) == 2 })
	assert.Equal(t, []bool{true, false}, healthOf(rep.list()))
	assert.Contains(t, rep.list()[1].Reason, "500")
}

func TestHealthChecksFollowTheSpec(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits[r.URL.Path]++
		mu.Unlock()
	}))
	t.Cleanup(ts.Close)
	port := portOf(t, ts.Listener.Addr())
	rep := &recordingReporter{}
	h := NewHealthChecker(HealthCheckerConfig{Reporter: rep})
	t.Cleanup(h.Close)

	spec := lbapi.VIPSpec{Name: "web", Address: "10.200.0.10", Protocol: "tcp", Ports: []uint16{port},
		Backends: []lbapi.Backend{{Address: "127.0.0.1", Weight: 1}}, HealthCheck: fastCheck("http", 0)}
	h.Set(spec)
	eventually(t, "up", func() bool { return h.Health("web", "127.0.0.1") == HealthUp })

	// The same check again keeps the loop and its state: no new report.
	before := h.probeCount("web", "127.0.0.1")
	h.Set(spec)
	assert.Equal(t, HealthUp, h.Health("web", "127.0.0.1"))
	assert.GreaterOrEqual(t, h.probeCount("web", "127.0.0.1"), before, "the loop was restarted")
	assert.Len(t, rep.list(), 1)

	// A new path restarts the check from unknown.
	spec.HealthCheck.Path = "/ready"
	h.Set(spec)
	eventually(t, "the new path is probed", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return hits["/ready"] > 0
	})
	eventually(t, "up again", func() bool { return h.Health("web", "127.0.0.1") == HealthUp })
	assert.Equal(t, []bool{true, true}, healthOf(rep.list()), "a restarted check reports its first verdict")

	spec.HealthCheck = nil
	h.Set(spec)
	assert.Equal(t, HealthUnknown, h.Health("web", "127.0.0.1"))
}

func TestProbeBackend(t *testing.T) {
	requireRoot(t)
	l := newNodeLab(t)
	l.detachAtCleanup()
	node := l.open()
	t.Cleanup(func() { _ = node.Close() })
	a := startAgent(t, l, node, nil, nil)
	t.Cleanup(a.Close)
	x := newActivities(t, a)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	acceptAll(ln)
	open := portOf(t, ln.Addr())
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closedPort := portOf(t, closed.Addr())
	require.NoError(t, closed.Close())

	res, err := x.probeBackend(lbapi.ProbeBackendInput{Address: "127.0.0.1", Check: lbapi.HealthCheck{Kind: "tcp", Port: open}})
	require.NoError(t, err)
	assert.True(t, res.Healthy)
	assert.Empty(t, res.Error)
	assert.Equal(t, "lb1", res.Node)
	ln.Close()

	res, err = x.probeBackend(lbapi.ProbeBackendInput{Address: "127.0.0.1", Check: lbapi.HealthCheck{Kind: "tcp", Port: closedPort}})
	require.NoError(t, err)
	assert.False(t, res.Healthy)
	assert.Contains(t, res.Error, "refused")

	status := atomic.Int64{}
	status.Store(http.StatusOK)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(ts.Close)
	hp := portOf(t, ts.Listener.Addr())
	check := lbapi.HealthCheck{Kind: "http", Port: hp, Path: "/healthz"}
	res, err = x.probeBackend(lbapi.ProbeBackendInput{Address: "127.0.0.1", Check: check})
	require.NoError(t, err)
	assert.True(t, res.Healthy)
	status.Store(http.StatusInternalServerError)
	res, err = x.probeBackend(lbapi.ProbeBackendInput{Address: "127.0.0.1", Check: check})
	require.NoError(t, err)
	assert.False(t, res.Healthy)
	assert.Contains(t, res.Error, "500")
	status.Store(http.StatusFound)
	res, err = x.probeBackend(lbapi.ProbeBackendInput{Address: "127.0.0.1", Check: check})
	require.NoError(t, err)
	assert.True(t, res.Healthy, "a redirect is an answer")

	_, err = x.probeBackend(lbapi.ProbeBackendInput{Address: "backend-1", Check: check})
	requireNonRetryable(t, err, "not a usable IP")
	_, err = x.probeBackend(lbapi.ProbeBackendInput{Address: "127.0.0.1", Check: lbapi.HealthCheck{Kind: "icmp", Port: 1}})
	requireNonRetryable(t, err, "kind")
	_, err = x.probeBackend(lbapi.ProbeBackendInput{Address: "127.0.0.1", Check: lbapi.HealthCheck{Kind: "tcp"}})
	requireNonRetryable(t, err, "no port")
}

// outageReporter refuses every report while Temporal is "down" and records
// what it was given once it is back.
type outageReporter struct {
	recordingReporter
	down     atomic.Bool
	refusals atomic.Int64
}

func (r *outageReporter) ReportBackendHealth(ctx context.Context, c lbapi.BackendHealthChange) error {
	if r.down.Load() {
		r.refusals.Add(1)
		return errors.New("temporal unavailable")
	}
	return r.recordingReporter.ReportBackendHealth(ctx, c)
}

func TestUndeliveredReportIsSentAgainUntilDelivered(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	acceptAll(ln)
	port := portOf(t, ln.Addr())

	rep := &outageReporter{}
	h := NewHealthChecker(HealthCheckerConfig{Cluster: "c1", Node: "lb1", Reporter: rep, ReportResend: 20 * time.Millisecond})
	t.Cleanup(h.Close)
	spec := lbapi.VIPSpec{Name: "web", Address: "10.200.0.10", Protocol: "tcp", Ports: []uint16{port},
		Backends: []lbapi.Backend{{Address: "127.0.0.1", Weight: 1}}, HealthCheck: fastCheck("tcp", 0)}
	h.Set(spec)
	eventually(t, "the backend is reported up", func() bool { return len(rep.list()) == 1 })

	// Temporal goes away, then the backend dies: the verdict cannot be
	// delivered, and is tried again and again.
	rep.down.Store(true)
	require.NoError(t, ln.Close())
	eventually(t, "the backend is judged down", func() bool { return h.Health("web", "127.0.0.1") == HealthDown })
	eventually(t, "the report was refused several times", func() bool { return rep.refusals.Load() >= 3 })
	assert.Equal(t, []bool{true}, healthOf(rep.list()), "nothing arrived while Temporal was down")

	rep.down.Store(false)
	eventually(t, "the down report arrives once Temporal is back", func() bool { return len(rep.list()) == 2 })
	down := rep.list()[1]
	assert.False(t, down.Healthy)
	assert.NotEmpty(t, down.Reason)
	// Delivered once: no more copies follow.
	seen := h.probeCount("web", "127.0.0.1")
	eventually(t, "twenty more probes have failed", func() bool { return h.probeCount("web", "127.0.0.1") >= seen+20 })
	assert.Equal(t, []bool{true, false}, healthOf(rep.list()))
}
