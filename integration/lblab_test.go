package integration

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/features"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/metalflow/metalflow/internal/netlab"
	"github.com/metalflow/metalflow/lbnode"
)

// lbLab is the load balancer's whole world in namespaces: two LB clusters
// in two failure domains, each behind its own top-of-rack router running
// bird, three decapsulating backends and a client behind ToR A, and a
// management router through which the lbnode workers reach the Temporal
// server of `metalflow dev` in the root namespace.
//
//	client ─┐                 ┌─ a1, a2 (cluster lb-a, BGP to torA and extA)
//	be1..3 ─┴─ torA ── torB ──┤
//	                          └─ b1, b2 (cluster lb-b, BGP to torB and extB)
//	root ── mgmt ── a1, a2, b1, b2   (Temporal)
//
// The data plane uses 172.30.0.0/16 inside the namespaces only; the
// management links come from netlab.FreeSubnet, as the root namespace
// routes to them.
type lbLab struct {
	t      *testing.T
	lab    *netlab.Lab
	mgmt   netlab.RootLink
	mgmtNS string
	// temporal is the address the dev stack's frontend listens on.
	temporal string
	client   string
	tors     map[string]*lbToR
	nodes    []*lbNodeProc
	// spare is a node wired and peered but left out of nodes: nothing
	// starts it but the test that adds it to its cluster.
	spare    *lbNodeProc
	backends []*lbBackend
	decapPin string
	logDir   string
}

// The lab's fixed addresses and AS numbers.
const (
	lbPoolInternal = "172.30.255.0/24"
	lbPoolPublic   = "203.0.113.0/24"
	lbClientAddr   = "172.30.50.2"
	lbVIPPort      = 8080
)

// lbToR is one top-of-rack router: an internal bird that installs the
// VIP routes in the kernel with ECMP, and an external bird (another
// daemon, on another address of the same ports) standing for the
// internet-facing peers, which must only ever hear public VIPs.
type lbToR struct {
	name      string
	ns        string
	asn       uint32
	extASN    uint32
	internal  *lbBird
	external  *lbBird
	neighbors []lbNeighbor
}

// lbNodeProc is one `metalflow lbnode --temporal` worker in its namespace.
type lbNodeProc struct {
	lab           *lbLab
	cluster, name string
	ns            string
	addr          string
	iface, pins   string
	args          []string
	log           string

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
}

// lbBackend is a real server behind the VIPs: decap on its port, the VIP
// pools local on lo, and a TCP server that greets with the backend's name.
type lbBackend struct {
	lab  *lbLab
	name string
	ns   string
	addr string

	mu sync.Mutex
	ln net.Listener
	wg sync.WaitGroup
}

// lbBird is one bird daemon.
type lbBird struct {
	t    *testing.T
	sock string
	log  string
}

// requireLBLab skips where the lab cannot run: without root, bird or XDP.
func requireLBLab(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: the load balancer end-to-end test needs root (namespaces, XDP)")
	}
	for _, tool := range []string{"bird", "birdc", "ip"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: needs %s on PATH (scripts/test.sh installs bird2)", tool)
		}
	}
	if err := features.HaveProgramType(ebpf.XDP); err != nil {
		t.Skipf("skipping: this kernel cannot load XDP programs: %v", err)
	}
}

// newLBLab builds the lab: two ToRs, two clusters of two nodes, three
// backends and a client. With spare, cluster lb-a has a third node, a3,
// in x.spare.
func newLBLab(t *testing.T, spare bool) *lbLab {
	t.Helper()
	requireLBLab(t)
	l := netlab.New(t)
	x := &lbLab{t: t, lab: l, tors: map[string]*lbToR{}, logDir: t.TempDir()}
	x.decapPin = x.bpffs()

	// Management: root ── mgmt ── every node.
	x.mgmtNS = l.Namespace("mgmt")
	x.mgmt = l.VethToRoot(x.mgmtNS, "r", "rm")
	l.Address(x.mgmtNS, x.mgmt.Interface, x.mgmt.Subnet.Host4(2).String())
	l.Forward(x.mgmtNS)
	x.temporal = net.JoinHostPort(x.mgmt.Root4.String(), fmt.Sprint(freePortOn(t, x.mgmt.Root4)))

	torA := x.newToR("torA", 65100, 65300)
	torB := x.newToR("torB", 65200, 65400)
	sa, sb := l.Veth(torA.ns, "sa", torB.ns, "sb")
	l.Address(torA.ns, sa, "172.30.0.1/24")
	l.Address(torB.ns, sb, "172.30.0.2/24")
	l.Route(torB.ns, "default", "172.30.0.1")

	x.client = l.Namespace("client")
	c, tc := l.Veth(x.client, "c", torA.ns, "tc")
	l.Address(x.client, c, lbClientAddr+"/24")
	l.Address(torA.ns, tc, "172.30.50.1/24")
	l.Route(x.client, "default", "172.30.50.1")

	for i := 1; i <= 3; i++ {
		b := &lbBackend{lab: x, name: fmt.Sprintf("be%d", i), addr: fmt.Sprintf("172.30.4%d.2", i)}
		b.ns = l.Namespace(b.name)
		dev, tdev := l.Veth(b.ns, b.name, torA.ns, "t"+b.name)
		l.Address(b.ns, dev, b.addr+"/24")
		l.Address(torA.ns, tdev, fmt.Sprintf("172.30.4%d.1/24", i))
		l.Route(b.ns, "default", fmt.Sprintf("172.30.4%d.1", i))
		// Every address of both pools is local here (AnyIP), so whichever
		// address a VIP gets, the decapsulated packet is delivered.
		l.IP(b.ns, "route", "add", "local", lbPoolInternal, "dev", "lo")
		l.IP(b.ns, "route", "add", "local", lbPoolPublic, "dev", "lo")
		l.Sysctl(b.ns, "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
		// The XDP mode is left to auto, as the README's lab does: on these
		// veths decap runs native and the nodes generic.
		x.mustRun(b.ns, "decap", "--iface", dev, "--pin-root", x.decapPin)
		t.Cleanup(func() { _, _ = x.run(b.ns, "decap", "--iface", dev, "--detach", "--pin-root", x.decapPin) })
		b.serve(t)
		x.backends = append(x.backends, b)
	}

	// Cluster B's nodes probe the backends too: the ToRs route to each
	// other's networks.
	for _, n := range []string{"172.30.21.0/24", "172.30.22.0/24"} {
		l.Route(torA.ns, n, "172.30.0.2")
	}

	x.addNode(torA, "lb-a", "a1", "rack-a", 65011, 11)
	x.addNode(torA, "lb-a", "a2", "rack-a", 65011, 12)
	x.addNode(torB, "lb-b", "b1", "rack-b", 65021, 21)
	x.addNode(torB, "lb-b", "b2", "rack-b", 65021, 22)
	if spare {
		x.addNode(torA, "lb-a", "a3", "rack-a", 65011, 13)
		x.spare, x.nodes = x.nodes[len(x.nodes)-1], x.nodes[:len(x.nodes)-1]
	}
	for _, tor := range []*lbToR{torA, torB} {
		tor.startBirds(x)
	}
	return x
}

func (x *lbLab) newToR(name string, asn, extASN uint32) *lbToR {
	tor := &lbToR{name: name, ns: x.lab.Namespace(name), asn: asn, extASN: extASN}
	x.lab.Forward(tor.ns)
	// Hash on ports too, so the client's connections spread over both
	// nodes of the ECMP route.
	x.lab.Sysctl(tor.ns, "net.ipv4.fib_multipath_hash_policy=1")
	x.tors[name] = tor
	return tor
}

// addNode builds node name's namespace on subnet 172.30.<n>.0/24 to its
// ToR (ToR .1, external peer .3, node .2) and its management link, and
// prepares (does not start) its worker.
func (x *lbLab) addNode(tor *lbToR, cluster, name, domain string, asn uint32, n int) {
	l := x.lab
	ns := l.Namespace(name)
	dev, tdev := l.Veth(ns, name, tor.ns, "t"+name)
	self := fmt.Sprintf("172.30.%d.2", n)
	torAddr, extAddr := fmt.Sprintf("172.30.%d.1", n), fmt.Sprintf("172.30.%d.3", n)
	l.Address(ns, dev, self+"/24")
	l.Address(tor.ns, tdev, torAddr+"/24", extAddr+"/24")
	l.Route(ns, "default", torAddr)

	// Management: the node's own link to the management router, on a
	// subnet the root namespace routes to through that router.
	s := l.FreeSubnet()
	m, mm := l.Veth(ns, "m"+name, x.mgmtNS, "n"+name)
	l.Address(ns, m, s.Host4(2).String())
	l.Address(x.mgmtNS, mm, s.Host4(1).String())
	l.Route(ns, x.mgmt.Subnet.V4.String(), s.Host4(1).Addr().String())
	l.RouteFromRoot(x.mgmt, 2, s)

	pins := x.bpffs()
	t := x.t
	// Tests leave the data plane attached, as a restart adopts it;
	// detaching before the namespace goes frees its pins. Runs after the
	// worker stopped (cleanups run last-registered first).
	t.Cleanup(func() { _, _ = x.run(ns, "lbnode", "--iface", dev, "--detach", "--pin-root", pins) })
	p := &lbNodeProc{lab: x, cluster: cluster, name: name, ns: ns, addr: self, iface: dev, pins: pins,
		log: filepath.Join(x.logDir, name+".log")}
	p.args = []string{"lbnode", "--iface", dev, "--pin-root", pins,
		"--temporal", x.temporal, "--cluster", cluster, "--node", name, "--failure-domain", domain,
		// Small clusters: placement fills the least loaded per unit of
		// capacity.
		"--capacity", "16",
		"--state-dir", filepath.Join(x.logDir, name+"-state"),
		"--next-hop-mac", l.MAC(tor.ns, tdev).String(),
		"--bgp-asn", fmt.Sprint(asn), "--bgp-next-hop-v4", self,
		"--bgp-peer", fmt.Sprintf("%s,%d", torAddr, tor.asn),
		"--bgp-peer", fmt.Sprintf("%s,%d,external", extAddr, tor.extASN),
	}
	tor.neighbors = append(tor.neighbors, lbNeighbor{name: name, addr: self, torAddr: torAddr, extAddr: extAddr, asn: asn})
	x.nodes = append(x.nodes, p)
	t.Cleanup(p.stop)
}

// bpffs mounts a private bpf filesystem for pins, unmounted at cleanup.
func (x *lbLab) bpffs() string {
	dir := x.t.TempDir()
	require.NoError(x.t, lbnode.MountBPFFS(dir))
	x.t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// run runs the metalflow binary inside ns.
func (x *lbLab) run(ns string, args ...string) (string, error) {
	return x.lab.Run(ns, append([]string{binaryPath}, args...)...)
}

func (x *lbLab) mustRun(ns string, args ...string) string {
	x.t.Helper()
	out, err := x.run(ns, args...)
	require.NoError(x.t, err, "metalflow %s: %s", strings.Join(args, " "), out)
	return out
}

// node is the worker named name.
func (x *lbLab) node(name string) *lbNodeProc {
	for _, n := range x.nodes {
		if n.name == name {
			return n
		}
	}
	if x.spare != nil && x.spare.name == name {
		return x.spare
	}
	x.t.Fatalf("no node %s", name)
	return nil
}

// logs writes every worker's and bird's log to the test log.
func (x *lbLab) logs() {
	nodes := x.nodes
	if x.spare != nil {
		nodes = append(slices.Clone(nodes), x.spare)
	}
	for _, n := range nodes {
		b, _ := os.ReadFile(n.log)
		x.t.Logf("--- lbnode %s log (last 6 KiB) ---\n%s", n.name, tail(b, 6144))
	}
	for _, tor := range x.tors {
		for _, b := range []*lbBird{tor.internal, tor.external} {
			if b == nil {
				continue
			}
			raw, _ := os.ReadFile(b.log)
			x.t.Logf("--- bird %s log (last 3 KiB) ---\n%s", b.sock, tail(raw, 3072))
		}
	}
}

// lbNeighbor is one node as its ToR's birds peer with it.
type lbNeighbor struct {
	name, addr, torAddr, extAddr string
	asn                          uint32
}

// startBirds runs the ToR's two bird daemons, passive: the nodes connect.
// The internal one installs what it learns in the kernel, merging equal
// routes into one ECMP route; the external one only listens.
func (tor *lbToR) startBirds(x *lbLab) {
	var in, ext strings.Builder
	for _, n := range tor.neighbors {
		fmt.Fprintf(&in, bgpProtocol, n.name, n.torAddr, tor.asn, n.addr, n.asn)
		fmt.Fprintf(&ext, bgpProtocol, n.name, n.extAddr, tor.extASN, n.addr, n.asn)
	}
	tor.internal = x.startBird(tor.ns, tor.name+"-int", tor.neighbors[0].torAddr, in.String()+
		"protocol kernel { ipv4 { export all; }; merge paths on; }\n")
	tor.external = x.startBird(tor.ns, tor.name+"-ext", tor.neighbors[0].extAddr, ext.String())
}

// bgpProtocol is one passive session: name, local address and AS,
// neighbor address and AS.
const bgpProtocol = `protocol bgp n_%s {
	local %s as %d;
	neighbor %s as %d;
	passive on;
	strict bind on;
	hold time 9;
	keepalive time 3;
	connect retry time 1;
	ipv4 { import all; export none; };
}
`

func (x *lbLab) startBird(ns, name, routerID, protocols string) *lbBird {
	t := x.t
	dir := filepath.Join(x.logDir, name)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	b := &lbBird{t: t, sock: filepath.Join(dir, "bird.ctl"), log: filepath.Join(dir, "bird.log")}
	conf := fmt.Sprintf("log \"%s\" all;\nrouter id %s;\nprotocol device { }\n%s", b.log, routerID, protocols)
	confPath := filepath.Join(dir, "bird.conf")
	require.NoError(t, os.WriteFile(confPath, []byte(conf), 0o600))
	cmd := x.lab.Command(ns, "bird", "-f", "-c", confPath, "-s", b.sock, "-P", filepath.Join(dir, "bird.pid"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	eventually(t, 20*time.Second, "bird "+name+" answers", func() error {
		select {
		case err := <-done:
			done <- err
			t.Fatalf("bird %s exited: %v: %s", name, err, out.String())
		default:
		}
		res, err := b.birdc("show", "status")
		if err != nil || !strings.Contains(res, "Daemon is up") {
			return fmt.Errorf("%v: %s", err, res)
		}
		return nil
	})
	return b
}

func (b *lbBird) birdc(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", b.sock}, args...)...).CombinedOutput()
	return string(out), err
}

// routeFrom lists the sessions (n_<node>) bird holds a route to prefix
// from.
func (b *lbBird) routeFrom(prefix string) ([]string, error) {
	out, err := b.birdc("show", "route", "for", prefix, "all")
	if strings.Contains(out, "Network not found") {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%v: %s", err, out)
	}
	var from []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		// "172.30.255.1/32      unicast [n_a1 10:00:00.000] * (100) [AS65011i]"
		// and, for further routes, the same without the prefix.
		if i := strings.Index(line, "[n_"); i >= 0 {
			rest := line[i+1:]
			from = append(from, strings.Fields(rest)[0])
		}
	}
	return from, nil
}

// start runs the worker; it may be called again after it stopped.
func (p *lbNodeProc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(f, "=== start %s ===\n", time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command("ip", append([]string{"netns", "exec", p.ns, binaryPath}, p.args...)...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return err
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		_ = f.Close()
		close(done)
	}()
	p.cmd, p.done = cmd, done
	return nil
}

func (p *lbNodeProc) mustStart(t *testing.T) {
	t.Helper()
	require.NoError(t, p.start(), "starting lbnode %s", p.name)
}

// lastRunLog is the worker's log since it was last started.
func (p *lbNodeProc) lastRunLog() string {
	b, _ := os.ReadFile(p.log)
	s := string(b)
	if i := strings.LastIndex(s, "=== start "); i >= 0 {
		s = s[i:]
	}
	return s
}

// vipPackets is how many packets for vip the node's data plane has
// forwarded, as `metalflow lbnode --stats` reads them from its pins.
func (p *lbNodeProc) vipPackets(t *testing.T, vip string) uint64 {
	t.Helper()
	out := p.lab.mustRun(p.ns, "lbnode", "--stats", "--iface", p.iface, "--pin-root", p.pins)
	var total uint64
	for _, line := range strings.Split(out, "\n") {
		// "vip      172.30.255.1:8080/tcp     packets 12 bytes 3456"
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "vip" || !strings.HasPrefix(f[1], vip+":") {
			continue
		}
		for i := range f[:len(f)-1] {
			if f[i] == "packets" {
				var n uint64
				_, err := fmt.Sscan(f[i+1], &n)
				require.NoError(t, err, line)
				total += n
			}
		}
	}
	return total
}

// kill is kill -9: the worker gets no chance to withdraw anything.
func (p *lbNodeProc) kill() {
	p.signal(syscall.SIGKILL)
}

// stop is SIGTERM, as a service manager would, and a wait for the exit.
func (p *lbNodeProc) stop() {
	p.signal(syscall.SIGTERM)
}

func (p *lbNodeProc) signal(sig syscall.Signal) {
	p.mu.Lock()
	cmd, done := p.cmd, p.done
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	select {
	case <-done:
		return
	default:
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// serve listens on every address of the backend (the VIPs arrive on lo,
// the health checks on its own address) and greets with its name.
func (b *lbBackend) serve(t *testing.T) {
	t.Helper()
	var ln net.Listener
	var err error
	b.lab.lab.MustCall(b.ns, func() { ln, err = net.Listen("tcp", fmt.Sprintf(":%d", lbVIPPort)) })
	require.NoError(t, err)
	b.mu.Lock()
	b.ln = ln
	b.mu.Unlock()
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.SetDeadline(time.Now().Add(10 * time.Second))
			fmt.Fprintf(c, "%s\n", b.name)
			_ = c.Close()
		}
	}()
	t.Cleanup(b.halt)
}

// halt stops the server: connections to it are refused.
func (b *lbBackend) halt() {
	b.mu.Lock()
	ln := b.ln
	b.ln = nil
	b.mu.Unlock()
	if ln != nil {
		_ = ln.Close()
	}
	b.wg.Wait()
}

// dial connects from the client to vip and returns the backend's name.
func (x *lbLab) dial(vip string) (string, error) {
	var c net.Conn
	var err error
	nsErr := x.lab.Call(x.client, func() {
		d := net.Dialer{Timeout: 3 * time.Second}
		c, err = d.Dial("tcp", net.JoinHostPort(vip, fmt.Sprint(lbVIPPort)))
	})
	if err = errors.Join(nsErr, err); err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("reading greeting: %w", err)
	}
	return strings.TrimSpace(line), nil
}

// connectMany opens n connections with a few workers and counts them by
// backend.
func (x *lbLab) connectMany(ctx context.Context, vip string, n int) (map[string]int, []error) {
	var (
		mu     sync.Mutex
		counts = map[string]int{}
		errs   []error
		wg     sync.WaitGroup
		queue  = make(chan struct{})
	)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range queue {
				name, err := x.dial(vip)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
				} else {
					counts[name]++
				}
				mu.Unlock()
			}
		}()
	}
	for range n {
		select {
		case queue <- struct{}{}:
		case <-ctx.Done():
		}
	}
	close(queue)
	wg.Wait()
	return counts, errs
}
