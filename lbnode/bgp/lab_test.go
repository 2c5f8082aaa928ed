package bgp

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// lab is a network namespace for BGP peers, joined to the root namespace
// (where the speaker runs, in the test process) by one veth pair: a shared
// segment like the VLAN between a node and its top-of-rack switches.
// Names carry a per-run prefix so parallel or leftover runs never collide;
// everything is deleted at cleanup. Addresses live on the veth only, in a
// 10.x/24 and an fd00:x/64 chosen to overlap nothing the host has.
type lab struct {
	t      testing.TB
	prefix string
	ns     string
	// node* is the root end of the veth, the speaker's side.
	node4, node6 netip.Addr
	net4, net6   netip.Prefix
	// peerIf is the namespace end of the veth.
	peerIf string
}

func newLab(t testing.TB) *lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root for network namespaces")
	}
	for _, tool := range []string{"ip", "bird", "birdc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: needs %s on PATH (Debian package bird2 for bird and birdc, iproute2 for ip)", tool)
		}
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	l := &lab{t: t, prefix: "mb" + hex.EncodeToString(b)}
	l.pickNets()
	l.ns = l.prefix + "-peers"
	l.ip("netns", "add", l.ns)
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", l.ns).Run() })
	l.ip("-n", l.ns, "link", "set", "lo", "up")

	nodeIf, peerIf := l.prefix+"n", l.prefix+"p"
	l.peerIf = peerIf
	l.ip("link", "add", nodeIf, "type", "veth", "peer", "name", peerIf, "netns", l.ns)
	// Deleting one end deletes the pair; the namespace's end goes with the
	// namespace anyway, the root end needs its own cleanup.
	t.Cleanup(func() { _ = exec.Command("ip", "link", "del", nodeIf).Run() })
	l.ip("addr", "add", netip.PrefixFrom(l.node4, 24).String(), "dev", nodeIf)
	// nodad: duplicate address detection would hold the address back for
	// a second or two, and nothing else is on this link.
	l.ip("-6", "addr", "add", netip.PrefixFrom(l.node6, 64).String(), "dev", nodeIf, "nodad")
	l.ip("link", "set", nodeIf, "up")
	l.ip("-n", l.ns, "link", "set", peerIf, "up")
	return l
}

// pickNets draws subnets until it finds ones no route or address of the
// root namespace overlaps.
func (l *lab) pickNets() {
	taken := l.rootPrefixes()
	overlaps := func(p netip.Prefix) bool {
		for _, q := range taken {
			if q.Bits() > 0 && q.Overlaps(p) {
				return true
			}
		}
		return false
	}
	for range 100 {
		r := make([]byte, 4)
		_, _ = rand.Read(r)
		net4 := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, r[0], r[1], 0}), 24)
		var a16 [16]byte
		binary.BigEndian.PutUint16(a16[0:], 0xfd00)
		binary.BigEndian.PutUint16(a16[2:], 0x6d66) // "mf"
		copy(a16[4:6], r[2:4])
		net6 := netip.PrefixFrom(netip.AddrFrom16(a16), 64)
		if overlaps(net4) || overlaps(net6) {
			continue
		}
		l.net4, l.net6 = net4, net6
		l.node4, l.node6 = l.host(net4, 1), l.host(net6, 1)
		return
	}
	l.t.Fatal("no free test subnet found")
}

func (l *lab) rootPrefixes() []netip.Prefix {
	var out []netip.Prefix
	for _, args := range [][]string{{"-4", "route", "show", "table", "all"}, {"-6", "route", "show", "table", "all"}, {"-o", "addr", "show"}} {
		for _, line := range strings.Split(l.ip(args...), "\n") {
			for _, f := range strings.Fields(line) {
				if p, err := netip.ParsePrefix(f); err == nil {
					out = append(out, p.Masked())
				} else if a, err := netip.ParseAddr(f); err == nil {
					out = append(out, netip.PrefixFrom(a, a.BitLen()))
				}
			}
		}
	}
	return out
}

// host is the n-th address of a subnet.
func (l *lab) host(p netip.Prefix, n byte) netip.Addr {
	b := p.Addr().AsSlice()
	b[len(b)-1] = n
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (l *lab) ip(args ...string) string {
	l.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	require.NoError(l.t, err, "ip %s: %s", strings.Join(args, " "), out)
	return string(out)
}

// birdPeer is one bird daemon in the lab's namespace, playing a top-of-rack
// switch with one BGP session (protocol "tor") to the speaker.
type birdPeer struct {
	t    testing.TB
	sock string
	log  string
	// Addr is the address bird's session uses; Port its listening port.
	Addr netip.Addr
	Port uint16
	ASN  uint32
}

// birdOptions shape one bird peer.
type birdOptions struct {
	// n picks the peer's addresses: .n in both lab subnets.
	n    byte
	asn  uint32
	port uint16
	// v6Session runs the session over IPv6 instead of IPv4.
	v6Session bool
	// exportStatic makes bird send the speaker a route of its own, which
	// the speaker must not take in.
	exportStatic netip.Prefix
}

// startBird configures the peer's addresses on the lab's segment and runs
// bird in the foreground, killed at cleanup. The session is IPv4 or IPv6
// per opts; either way it is multiprotocol and carries both families.
// Bird is passive and the speaker connects: the speaker need not listen on
// a port in the root namespace.
func (l *lab) startBird(nodeASN uint32, opts birdOptions) *birdPeer {
	l.t.Helper()
	peer4, peer6 := l.host(l.net4, opts.n), l.host(l.net6, opts.n)
	l.ip("-n", l.ns, "addr", "add", netip.PrefixFrom(peer4, 24).String(), "dev", l.peerIf)
	l.ip("-n", l.ns, "-6", "addr", "add", netip.PrefixFrom(peer6, 64).String(), "dev", l.peerIf, "nodad")

	local, neighbor := peer4, l.node4
	if opts.v6Session {
		local, neighbor = peer6, l.node6
	}
	dir := l.t.TempDir()
	var static string
	export4 := "none"
	if opts.exportStatic.IsValid() {
		static = fmt.Sprintf("protocol static { ipv4; route %s blackhole; }\n", opts.exportStatic)
		export4 = "all"
	}
	conf := fmt.Sprintf(`log "%s" all;
router id %s;
protocol device { }
%s
protocol bgp tor {
	local %s port %d as %d;
	neighbor %s as %d;
	passive on;
	strict bind on;
	hold time 9;
	keepalive time 3;
	connect retry time 1;
	debug { states, routes, events };
	ipv4 { import all; export %s; };
	ipv6 { import all; export none; };
}
`, filepath.Join(dir, "bird.log"), peer4, static, local, opts.port, opts.asn, neighbor, nodeASN, export4)
	confPath := filepath.Join(dir, "bird.conf")
	require.NoError(l.t, os.WriteFile(confPath, []byte(conf), 0o600))
	b := &birdPeer{t: l.t, sock: filepath.Join(dir, "bird.ctl"), log: filepath.Join(dir, "bird.log"), Addr: local, Port: opts.port, ASN: opts.asn}

	cmd := exec.Command("ip", "netns", "exec", l.ns, "bird", "-f", "-c", confPath, "-s", b.sock, "-P", filepath.Join(dir, "bird.pid"))
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	require.NoError(l.t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	l.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-done
	})
	// bird is ready once its control socket answers.
	waitFor(l.t, 10*time.Second, func() (bool, string) {
		select {
		case err := <-done:
			done <- err
			l.t.Fatalf("bird exited: %v: %s", err, stderr.String())
		default:
		}
		out, err := b.birdc("show", "status")
		return err == nil && strings.Contains(out, "Daemon is up"), out
	})
	return b
}

func (b *birdPeer) birdc(args ...string) (string, error) {
	out, err := exec.Command("birdc", append([]string{"-s", b.sock}, args...)...).CombinedOutput()
	return string(out), err
}

// birdRoute is what bird knows of one route.
type birdRoute struct {
	Via        string
	Attributes string
}

// Routes returns bird's routes (both families) by prefix.
func (b *birdPeer) Routes() map[netip.Prefix]birdRoute {
	b.t.Helper()
	out, err := b.birdc("show", "route", "all")
	require.NoError(b.t, err, out)
	routes := map[netip.Prefix]birdRoute{}
	var cur netip.Prefix
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			// "198.51.100.10/32  unicast [tor ...] * (100) [AS65000i]"
			f := strings.Fields(line)
			p, err := netip.ParsePrefix(f[0])
			if err != nil {
				cur = netip.Prefix{}
				continue
			}
			cur = p
			routes[cur] = birdRoute{}
			continue
		}
		if !cur.IsValid() {
			continue
		}
		r := routes[cur]
		trimmed := strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(trimmed, "via "); ok {
			r.Via = strings.Fields(v)[0]
		} else {
			r.Attributes += trimmed + "\n"
		}
		routes[cur] = r
	}
	return routes
}

// State is the "tor" session's BGP state as bird sees it, e.g.
// "Established".
func (b *birdPeer) State() string {
	out, err := b.birdc("show", "protocols", "tor")
	if err != nil {
		return "birdc: " + err.Error()
	}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 6 && f[0] == "tor" {
			return f[len(f)-1]
		}
	}
	return "unknown: " + out
}

// Exported is how many routes bird exports on the tor session's channel
// for a family ("ipv4" or "ipv6").
func (b *birdPeer) Exported(family string) uint64 {
	b.t.Helper()
	out, err := b.birdc("show", "protocols", "all", "tor")
	require.NoError(b.t, err, out)
	inChannel := false
	for _, line := range strings.Split(out, "\n") {
		t := strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(t, "Channel "); ok {
			inChannel = v == family
			continue
		}
		// "Routes:         2 imported, 1 exported, 2 preferred"
		if v, ok := strings.CutPrefix(t, "Routes:"); ok && inChannel {
			var imported, exported uint64
			_, err := fmt.Sscanf(strings.TrimSpace(v), "%d imported, %d exported", &imported, &exported)
			require.NoError(b.t, err, line)
			return exported
		}
	}
	b.t.Fatalf("no routes line for %s in: %s", family, out)
	return 0
}

// Counters are bird's import counters for the session, per family.
type birdCounters struct {
	Updates, Withdraws int
}

// Imported reads how many updates and withdraws bird received on the tor
// session's channel for a family ("ipv4" or "ipv6").
func (b *birdPeer) Imported(family string) birdCounters {
	b.t.Helper()
	out, err := b.birdc("show", "protocols", "all", "tor")
	require.NoError(b.t, err, out)
	var c birdCounters
	inChannel := false
	for _, line := range strings.Split(out, "\n") {
		t := strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(t, "Channel "); ok {
			inChannel = v == family
			continue
		}
		if !inChannel {
			continue
		}
		// "Import updates:              3          0          0          0          3"
		// columns: received rejected filtered ignored accepted
		if v, ok := strings.CutPrefix(t, "Import updates:"); ok {
			_, _ = fmt.Sscan(v, &c.Updates)
		}
		if v, ok := strings.CutPrefix(t, "Import withdraws:"); ok {
			_, _ = fmt.Sscan(v, &c.Withdraws)
		}
	}
	return c
}

// waitFor polls cond until it holds, failing the test with cond's last
// word when timeout passes. The timeout only bounds a hung test; nothing
// asserts how fast the condition came true.
func waitFor(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last string
	for {
		ok, msg := cond()
		if ok {
			return
		}
		last = msg
		select {
		case <-ctx.Done():
			t.Fatalf("condition not met after %s: %s", timeout, last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Log is bird's log so far, with its debug lines on the session's states
// and every route it received or lost.
func (b *birdPeer) Log(t testing.TB) string {
	t.Helper()
	out, err := os.ReadFile(b.log)
	require.NoError(t, err)
	return string(out)
}
