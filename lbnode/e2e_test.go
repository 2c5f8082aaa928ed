package lbnode

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cilium/ebpf/link"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/internal/netlab"
)

// fabric is the end-to-end topology: a client, a router with an ECMP route
// for the VIP over two load balancer nodes, and three backends that
// decapsulate and answer the client directly.
//
//	client --- router --- lb1, lb2        (one-armed, generic XDP)
//	              \------ b1, b2, b3      (decap XDP, VIP on lo)
type fabric struct {
	l        *netlab.Lab
	client   string
	clientIf string
	router   string
	lbNS     [2]string
	lbIf     [2]string
	lbAddr   [2]string
	lbAddr6  [2]string
	lbCfg    [2]Config
	lbs      [2]*Node
	backends []fabricBackend
	vip      service
	vip6     service
	vipGUE   service
}

// familyGUE asks dialFamily for the IPv4 VIP that is sent to backends in GUE.
const familyGUE = 44

type fabricBackend struct {
	name  string
	ns    string
	addr  netip.Addr
	addr6 netip.Addr
	decap *Decap
}

const (
	e2eVIP      = "10.200.0.10"
	e2eClient   = "10.10.1.2"
	e2eVIP6     = "2001:db8:200::10"
	e2eVIPGUE   = "10.200.0.12"
	e2eClient6  = "fd10:1::2"
	dialTimeout = 3 * time.Second
)

func newFabric(t *testing.T, lbMode AttachMode) *fabric {
	requireBPF(t)
	l := netlab.New(t)
	f := &fabric{l: l, client: l.Namespace("client"), router: l.Namespace("router")}
	pins := bpffs(t)

	var routerToClient string
	f.clientIf, routerToClient = l.Veth(f.client, "c", f.router, "rc")
	l.Address(f.client, f.clientIf, e2eClient+"/24", e2eClient6+"/64")
	l.Address(f.router, routerToClient, "10.10.1.1/24", "fd10:1::1/64")
	l.Route(f.client, "default", "10.10.1.1")
	l.Route(f.client, "default", "fd10:1::1")
	l.Forward(f.router)
	l.Sysctl(f.router, "net.ipv4.fib_multipath_hash_policy=1", "net.ipv6.fib_multipath_hash_policy=1")

	weights := []uint32{100, 100, 200}
	var list, list6 []Backend
	for i := range weights {
		b := fabricBackend{name: fmt.Sprintf("b%d", i+1), ns: l.Namespace(fmt.Sprintf("b%d", i+1)),
			addr: addr(fmt.Sprintf("10.10.1%d.2", i+1)), addr6: addr(fmt.Sprintf("fd10:1%d::2", i+1))}
		dev, routerIf := l.Veth(b.ns, b.name, f.router, "r"+b.name)
		l.Address(b.ns, dev, b.addr.String()+"/24", b.addr6.String()+"/64")
		l.Address(f.router, routerIf, fmt.Sprintf("10.10.1%d.1/24", i+1), fmt.Sprintf("fd10:1%d::1/64", i+1))
		l.Address(b.ns, "lo", e2eVIP+"/32", e2eVIPGUE+"/32", e2eVIP6+"/128")
		l.Route(b.ns, "default", fmt.Sprintf("10.10.1%d.1", i+1))
		l.Route(b.ns, "default", fmt.Sprintf("fd10:1%d::1", i+1))
		l.Sysctl(b.ns, "net.ipv4.conf.all.rp_filter=0")
		var d *Decap
		var err error
		l.MustCall(b.ns, func() { d, err = AttachDecap(DecapConfig{Interface: dev, Mode: AttachGeneric, PinRoot: pins}) })
		require.NoError(t, err)
		t.Cleanup(func() { _ = d.Detach() })
		b.decap = d
		f.backends = append(f.backends, b)
		list = append(list, Backend{Addr: b.addr, Weight: weights[i], State: BackendActive})
		list6 = append(list6, Backend{Addr: b.addr6, Weight: weights[i], State: BackendActive})
	}
	f.vip = service{tcpVIP(e2eVIP, 80, 0), list}
	f.vip6 = service{tcpVIP(e2eVIP6, 80, 0), list6}
	f.vipGUE = service{tcpVIP(e2eVIPGUE, 80, EncapGUE), list}

	for i := range f.lbs {
		f.lbNS[i] = l.Namespace(fmt.Sprintf("lb%d", i+1))
		f.lbAddr[i] = fmt.Sprintf("10.10.%d.2", i+2)
		f.lbAddr6[i] = fmt.Sprintf("fd10:%d::2", i+2)
		var routerIf string
		f.lbIf[i], routerIf = l.Veth(f.lbNS[i], fmt.Sprintf("l%d", i+1), f.router, fmt.Sprintf("rl%d", i+1))
		l.Address(f.lbNS[i], f.lbIf[i], f.lbAddr[i]+"/24", f.lbAddr6[i]+"/64")
		l.Address(f.router, routerIf, fmt.Sprintf("10.10.%d.1/24", i+2), fmt.Sprintf("fd10:%d::1/64", i+2))
		f.lbCfg[i] = Config{
			Interface: f.lbIf[i], Mode: lbMode, PinRoot: pins, Seed: testSeed,
			NextHopMAC: l.MAC(f.router, routerIf),
		}
		if lbMode == AttachNative {
			f.passOn(t, f.router, routerIf)
		}
		f.startLB(t, i)
		setup(t, f.lbs[i], []service{f.vip, f.vip6, f.vipGUE})
		t.Cleanup(func() {
			if f.lbs[i] != nil {
				_ = f.lbs[i].Detach()
			}
		})
	}
	f.routeVia(f.lbAddr[0], f.lbAddr[1])
	f.routeVia(f.lbAddr6[0], f.lbAddr6[1])
	l.Route(f.router, e2eVIPGUE+"/32", f.lbAddr[0], f.lbAddr[1])
	return f
}

// passOn attaches an XDP_PASS program natively to a router port: a veth
// only accepts frames its peer sends with XDP_TX when it runs NAPI, which a
// native XDP program turns on.
func (f *fabric) passOn(t *testing.T, ns, ifname string) {
	n := openTestNode(t, Config{})
	var l link.Link
	var err error
	f.l.MustCall(ns, func() {
		var iface *net.Interface
		if iface, err = net.InterfaceByName(ifname); err == nil {
			l, err = link.AttachXDP(link.XDPOptions{Program: n.PassProgram(), Interface: iface.Index, Flags: link.XDPDriverMode})
		}
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = l.Close() })
}

// startLB opens (or, after a restart, adopts) load balancer node i.
func (f *fabric) startLB(t *testing.T, i int) {
	var err error
	f.l.MustCall(f.lbNS[i], func() { f.lbs[i], err = Open(f.lbCfg[i]) })
	require.NoError(t, err)
}

// routeVia points the router's VIP route at the given LB nodes (ECMP when
// more than one).
func (f *fabric) routeVia(nodes ...string) {
	vip := e2eVIP + "/32"
	if addr(nodes[0]).Is6() {
		vip = e2eVIP6 + "/128"
	}
	f.l.Route(f.router, vip, nodes...)
}

// serve runs a TCP server on the VIP in every backend: it greets with the
// backend's name and echoes lines back.
func (f *fabric) serve(t *testing.T) {
	for _, b := range f.backends {
		for _, vip := range []string{e2eVIP, e2eVIP6, e2eVIPGUE} {
			f.serveOn(t, b, net.JoinHostPort(vip, "80"))
		}
	}
}

func (f *fabric) serveOn(t *testing.T, b fabricBackend, hostPort string) {
	var ln net.Listener
	var err error
	f.l.MustCall(b.ns, func() { ln, err = net.Listen("tcp", hostPort) })
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				fmt.Fprintf(c, "%s\n", b.name)
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := c.Write([]byte(line)); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// conn is a client connection and the backend that answered it.
type conn struct {
	net.Conn
	backend string
	port    int
}

// dial connects from the client namespace (source port 0 = any) to the
// IPv4 VIP and reads the backend's greeting.
func (f *fabric) dial(port int) (*conn, error) { return f.dialFamily(4, port) }

func (f *fabric) dialFamily(family, port int) (*conn, error) {
	var c net.Conn
	var err error
	client, vip := e2eClient, e2eVIP
	switch family {
	case 6:
		client, vip = e2eClient6, e2eVIP6
	case familyGUE:
		vip = e2eVIPGUE
	}
	nsErr := f.l.Call(f.client, func() {
		d := net.Dialer{Timeout: dialTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(client), Port: port}}
		c, err = d.Dial("tcp", net.JoinHostPort(vip, "80"))
	})
	if err = errors.Join(nsErr, err); err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("reading greeting: %w", err)
	}
	_ = c.SetDeadline(time.Time{})
	return &conn{Conn: c, backend: strings.TrimSpace(line), port: c.LocalAddr().(*net.TCPAddr).Port}, nil
}

// reset closes with RST (SO_LINGER 0) so a reused source port never meets
// its own TIME_WAIT.
func (c *conn) reset() {
	_ = c.Conn.(*net.TCPConn).SetLinger(0)
	_ = c.Close()
}

// ping checks an established connection still reaches its backend.
func (c *conn) ping() error {
	_ = c.SetDeadline(time.Now().Add(dialTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if string(buf) != "ping\n" {
		return fmt.Errorf("echo %q", buf)
	}
	return nil
}

// connectMany opens and resets a connection from each source port (0 =
// any) with a few workers, and returns the backends they reached.
func (f *fabric) connectMany(ctx context.Context, ports []int) ([]landing, []error) {
	return f.connectManyFamily(ctx, 4, ports)
}

func (f *fabric) connectManyFamily(ctx context.Context, family int, ports []int) ([]landing, []error) {
	const workers = 6
	var (
		mu    sync.Mutex
		got   []landing
		errs  []error
		wg    sync.WaitGroup
		queue = make(chan int)
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range queue {
				c, err := f.dialFamily(family, p)
				mu.Lock()
				if err != nil {
					errs = append(errs, fmt.Errorf("port %d: %w", p, err))
				} else {
					got = append(got, landing{port: c.port, backend: c.backend})
				}
				mu.Unlock()
				if c != nil {
					c.reset()
				}
			}
		}()
	}
	for _, p := range ports {
		select {
		case queue <- p:
		case <-ctx.Done():
		}
	}
	close(queue)
	wg.Wait()
	return got, errs
}

// landing is where one connection went.
type landing struct {
	port    int
	backend string
}

func byPort(ls []landing) map[int]string {
	m := map[int]string{}
	for _, l := range ls {
		m[l.port] = l.backend
	}
	return m
}

func portRange(from, count int) []int {
	ports := make([]int, count)
	for i := range ports {
		ports[i] = from + i
	}
	return ports
}

func (f *fabric) backendNamed(name string) fabricBackend {
	for _, b := range f.backends {
		if b.name == name {
			return b
		}
	}
	return fabricBackend{}
}

func (f *fabric) predicted(t *testing.T, s service, port int) string {
	client := addr(e2eClient)
	if s.vip.Addr.Is6() {
		client = addr(e2eClient6)
	}
	want := expectBackend(t, s, flowTuple{Src: client, Dst: s.vip.Addr, SPort: uint16(port), DPort: 80, Protocol: ProtocolTCP})
	for _, b := range f.backends {
		if b.addr == want || b.addr6 == want {
			return b.name
		}
	}
	return ""
}

func (f *fabric) setBackendsEverywhere(t *testing.T, list []Backend) {
	for _, n := range f.lbs {
		require.NoError(t, n.SetBackends(f.vip.vip.VIPKey, list))
	}
}

func TestEndToEndRealTCPThroughTwoNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the end-to-end test in -short mode")
	}
	f := newFabric(t, AttachGeneric)
	f.serve(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	t.Run("many connections spread by weight over both nodes", func(t *testing.T) {
		got, errs := f.connectMany(ctx, make([]int, 400))
		require.Empty(t, errs)
		require.Len(t, got, 400)
		counts := map[string]int{}
		for _, l := range got {
			counts[l.backend]++
		}
		t.Logf("connections per backend: %v", counts)
		assert.InDelta(t, 0.25, float64(counts["b1"])/400, 0.08)
		assert.InDelta(t, 0.25, float64(counts["b2"])/400, 0.08)
		assert.InDelta(t, 0.50, float64(counts["b3"])/400, 0.08)
		for i, n := range f.lbs {
			st, err := n.Stats()
			require.NoError(t, err)
			t.Logf("lb%d: %d packets for the VIP", i+1, st.VIPs[f.vip.vip.VIPKey].Packets)
			assert.NotZero(t, st.VIPs[f.vip.vip.VIPKey].Packets, "ECMP used lb%d", i+1)
		}
	})

	t.Run("ipv6 connections through both nodes (6in6)", func(t *testing.T) {
		got, errs := f.connectManyFamily(ctx, 6, make([]int, 200))
		require.Empty(t, errs)
		require.Len(t, got, 200)
		counts := map[string]int{}
		for _, l := range got {
			counts[l.backend]++
		}
		t.Logf("IPv6 connections per backend: %v", counts)
		assert.Len(t, counts, 3)
		for i, n := range f.lbs {
			st, err := n.Stats()
			require.NoError(t, err)
			assert.NotZero(t, st.VIPs[f.vip6.vip.VIPKey].Packets, "ECMP used lb%d for IPv6", i+1)
		}
		ports := portRange(47000, 20)
		var through [2]map[int]string
		for i := range f.lbs {
			f.routeVia(f.lbAddr6[i])
			got, errs := f.connectManyFamily(ctx, 6, ports)
			require.Empty(t, errs)
			through[i] = byPort(got)
		}
		f.routeVia(f.lbAddr6[0], f.lbAddr6[1])
		assert.Equal(t, through[0], through[1])
		for _, p := range ports {
			assert.Equal(t, f.predicted(t, f.vip6, p), through[0][p], "port %d", p)
		}
	})

	t.Run("gue vip through both nodes", func(t *testing.T) {
		got, errs := f.connectManyFamily(ctx, familyGUE, make([]int, 100))
		require.Empty(t, errs)
		require.Len(t, got, 100)
		for i, n := range f.lbs {
			st, err := n.Stats()
			require.NoError(t, err)
			assert.NotZero(t, st.VIPs[f.vipGUE.vip.VIPKey].Packets, "ECMP used lb%d", i+1)
		}
		var gue uint64
		for _, b := range f.backends {
			st, err := b.decap.Stats()
			require.NoError(t, err)
			gue += st.GUE.Packets
		}
		assert.GreaterOrEqual(t, gue, uint64(200), "backends received the handshakes in GUE")
	})

	fixed := portRange(45000, 40)
	var before map[int]string
	t.Run("a 5-tuple reaches the same backend through either node", func(t *testing.T) {
		var through [2]map[int]string
		for i := range f.lbs {
			f.routeVia(f.lbAddr[i])
			got, errs := f.connectMany(ctx, fixed)
			require.Empty(t, errs)
			through[i] = byPort(got)
		}
		f.routeVia(f.lbAddr[0], f.lbAddr[1])
		assert.Equal(t, through[0], through[1])
		for _, p := range fixed {
			assert.Equal(t, f.predicted(t, f.vip, p), through[0][p], "port %d lands where Maglev says", p)
		}
		before = through[0]
	})
	require.NotNil(t, before)

	drained := "b3"
	t.Run("drain keeps established connections and steers new ones away", func(t *testing.T) {
		var held []*conn
		for i := 0; len(held) < 6 && i < 200; i++ {
			c, err := f.dial(0)
			require.NoError(t, err)
			if c.backend == drained {
				held = append(held, c)
			} else {
				c.reset()
			}
		}
		require.NotEmpty(t, held)
		defer func() {
			for _, c := range held {
				c.reset()
			}
		}()
		list := f.vip.backends
		list[2].State = BackendDrain
		f.setBackendsEverywhere(t, list)
		for _, c := range held {
			assert.NoError(t, c.ping(), "established connection to the draining backend")
		}
		got, errs := f.connectMany(ctx, make([]int, 60))
		require.Empty(t, errs)
		for _, l := range got {
			assert.NotEqual(t, drained, l.backend, "new connection from port %d", l.port)
		}
	})

	t.Run("removing a backend moves only its connections", func(t *testing.T) {
		rest := []Backend{f.vip.backends[0], f.vip.backends[1]}
		f.setBackendsEverywhere(t, rest)
		got, errs := f.connectMany(ctx, fixed)
		require.Empty(t, errs)
		after := byPort(got)
		moved := 0
		for _, p := range fixed {
			switch {
			case before[p] == drained:
				assert.NotEqual(t, drained, after[p])
				moved++
			default:
				assert.Equal(t, before[p], after[p], "port %d was not on the removed backend", p)
			}
		}
		t.Logf("%d of %d fixed flows were on the removed backend and moved", moved, len(fixed))
		f.setBackendsEverywhere(t, f.vip.backends[:3])
	})

	t.Run("closing and re-adopting the nodes loses no connection", func(t *testing.T) {
		list := f.vip.backends
		list[2].State = BackendActive
		f.setBackendsEverywhere(t, list)
		stop := make(chan struct{})
		var (
			wg       sync.WaitGroup
			mu       sync.Mutex
			failures []error
			done     int
		)
		for w := 0; w < 3; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-ctx.Done():
						return
					default:
					}
					c, err := f.dial(0)
					mu.Lock()
					if err != nil {
						failures = append(failures, err)
					} else {
						done++
					}
					mu.Unlock()
					if c != nil {
						c.reset()
					}
				}
			}()
		}
		for round := 0; round < 3; round++ {
			for i := range f.lbs {
				time.Sleep(100 * time.Millisecond)
				require.NoError(t, f.lbs[i].Close())
				time.Sleep(100 * time.Millisecond)
				f.startLB(t, i)
				assert.True(t, f.lbs[i].Adopted())
				require.NoError(t, f.lbs[i].SetBackends(f.vip.vip.VIPKey, list))
			}
		}
		time.Sleep(200 * time.Millisecond)
		close(stop)
		wg.Wait()
		t.Logf("%d connections during 6 restarts", done)
		assert.Empty(t, failures)
		assert.Greater(t, done, 10)
	})
}

// Native XDP on veth: the load balancer nodes run in driver mode; the
// router's ports run an XDP_PASS program so that veth accepts XDP_TX frames.
func TestEndToEndNativeModeOnVeth(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the end-to-end test in -short mode")
	}
	if _, err := exec.LookPath("ethtool"); err != nil {
		t.Skip("skipping: needs ethtool to turn off checksum offload on the client")
	}
	f := newFabric(t, AttachNative)
	// Native XDP on veth sees the client's frames without the skb's
	// "checksum not yet computed" mark and XDP_TX drops that mark, so the
	// client must send finished checksums, as a real NIC would put on the
	// wire.
	f.l.MustRun(f.client, "ethtool", "-K", f.clientIf, "tx", "off")
	f.serve(t)
	for i, n := range f.lbs {
		require.Equal(t, AttachNative, n.Mode(), "lb%d", i+1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	got, errs := f.connectMany(ctx, make([]int, 200))
	require.Empty(t, errs)
	require.Len(t, got, 200)
	for i, n := range f.lbs {
		st, err := n.Stats()
		require.NoError(t, err)
		assert.NotZero(t, st.VIPs[f.vip.vip.VIPKey].Packets, "lb%d forwarded in native mode", i+1)
	}
}
