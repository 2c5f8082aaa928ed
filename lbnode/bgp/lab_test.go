package bgp

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/internal/netlab"
)

// lab is a network namespace for BGP peers, joined to the root namespace
// (where the speaker runs, in the test process) by one veth pair: a shared
// segment like the VLAN between a node and its top-of-rack switches. The
// speaker's addresses are the root end's, on a subnet netlab picked to
// overlap nothing the host has.
type lab struct {
	t          testing.TB
	namespaces *netlab.Lab
	ns         string
	link       netlab.RootLink
}

func newLab(t testing.TB) *lab {
	t.Helper()
	namespaces := netlab.New(t)
	for _, tool := range []string{"bird", "birdc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("skipping: needs %s on PATH (Debian package bird2 for bird and birdc)", tool)
		}
	}
	ns := namespaces.Namespace("peers")
	return &lab{t: t, namespaces: namespaces, ns: ns, link: namespaces.VethToRoot(ns, "n", "p")}
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
	peer4, peer6 := l.link.Subnet.Host4(opts.n), l.link.Subnet.Host6(opts.n)
	l.namespaces.Address(l.ns, l.link.Interface, peer4.String(), peer6.String())

	local, neighbor := peer4.Addr(), l.link.Root4
	if opts.v6Session {
		local, neighbor = peer6.Addr(), l.link.Root6
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
`, filepath.Join(dir, "bird.log"), peer4.Addr(), static, local, opts.port, opts.asn, neighbor, nodeASN, export4)
	confPath := filepath.Join(dir, "bird.conf")
	require.NoError(l.t, os.WriteFile(confPath, []byte(conf), 0o600))
	b := &birdPeer{t: l.t, sock: filepath.Join(dir, "bird.ctl"), log: filepath.Join(dir, "bird.log"), Addr: local, Port: opts.port, ASN: opts.asn}

	cmd := l.namespaces.Command(l.ns, "bird", "-f", "-c", confPath, "-s", b.sock, "-P", filepath.Join(dir, "bird.pid"))
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
