package netlab_test

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalflow/metalflow/internal/netlab"
)

// greet listens on addr:0 inside ns (or in the root namespace when ns is
// empty) and answers every connection with word; it returns the address it
// listens on.
func greet(t *testing.T, l *netlab.Lab, ns string, addr netip.Addr, word string) string {
	t.Helper()
	var ln net.Listener
	var err error
	listen := func() { ln, err = net.Listen("tcp", net.JoinHostPort(addr.String(), "0")) }
	if ns == "" {
		listen()
	} else {
		l.MustCall(ns, listen)
	}
	if err != nil {
		t.Fatalf("listening on %s in %q: %v", addr, ns, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintln(c, word)
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// dial connects from inside ns and returns the first line it reads.
func dial(l *netlab.Lab, ns, hostPort string) (string, error) {
	return dialWithin(l, ns, hostPort, 5*time.Second)
}

func dialWithin(l *netlab.Lab, ns, hostPort string, timeout time.Duration) (string, error) {
	var c net.Conn
	var err error
	if nsErr := l.Call(ns, func() { c, err = net.DialTimeout("tcp", hostPort, timeout) }); nsErr != nil {
		return "", nsErr
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func namespaces(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns list: %v: %s", err, out)
	}
	return string(out)
}

func hasNamespace(t *testing.T, name string) bool {
	t.Helper()
	for _, line := range strings.Split(namespaces(t), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[0] == name {
			return true
		}
	}
	return false
}

func hasRootInterface(name string) bool {
	return exec.Command("ip", "link", "show", "dev", name).Run() == nil
}

// A client and a server in their own namespaces reach each other over
// IPv4 and IPv6 only through a third namespace routing between them.
func TestClientReachesServerThroughRouter(t *testing.T) {
	l := netlab.New(t)
	client, router, server := l.Namespace("client"), l.Namespace("router"), l.Namespace("server")
	c, rc := l.Veth(client, "c", router, "rc")
	s, rs := l.Veth(server, "s", router, "rs")
	l.Address(client, c, "10.1.1.2/24", "fd01:1::2/64")
	l.Address(router, rc, "10.1.1.1/24", "fd01:1::1/64")
	l.Address(server, s, "10.1.2.2/24", "fd01:2::2/64")
	l.Address(router, rs, "10.1.2.1/24", "fd01:2::1/64")
	l.Route(client, "default", "10.1.1.1")
	l.Route(client, "default", "fd01:1::1")
	l.Route(server, "default", "10.1.2.1")
	l.Route(server, "default", "fd01:2::1")

	v4 := greet(t, l, server, netip.MustParseAddr("10.1.2.2"), "hello4")
	v6 := greet(t, l, server, netip.MustParseAddr("fd01:2::2"), "hello6")
	// Not forwarding, the router drops the SYN: the dial can only time out,
	// so a short wait is enough to tell.
	if _, err := dialWithin(l, client, v4, 300*time.Millisecond); err == nil {
		t.Fatal("the client reached the server before the router forwarded")
	}
	l.Forward(router)
	for hostPort, want := range map[string]string{v4: "hello4", v6: "hello6"} {
		got, err := dial(l, client, hostPort)
		if err != nil || got != want {
			t.Errorf("dialing %s from the client: got %q, %v; want %q", hostPort, got, err, want)
		}
	}

	// The MAC is the router port's own, as ip reports it.
	mac := l.MAC(router, rc)
	if out := l.IP(router, "link", "show", "dev", rc); !strings.Contains(out, "link/ether "+mac.String()) {
		t.Errorf("MAC of %s is %s, ip says: %s", rc, mac, out)
	}
	if out := l.MustRun(router, "sysctl", "-n", "net.ipv4.ip_forward"); strings.TrimSpace(out) != "1" {
		t.Errorf("router forwards IPv4: %q", out)
	}
}

// Route with several gateways spreads over all of them, and moves a route.
func TestRouteOverSeveralGateways(t *testing.T) {
	l := netlab.New(t)
	ns := l.Namespace("r")
	a, _ := l.Veth(ns, "a", ns, "b")
	l.Address(ns, a, "10.2.0.1/24")
	l.Route(ns, "10.9.0.0/16", "10.2.0.7", "10.2.0.8")
	out := l.IP(ns, "route", "show", "10.9.0.0/16")
	if !strings.Contains(out, "nexthop via 10.2.0.7") || !strings.Contains(out, "nexthop via 10.2.0.8") {
		t.Errorf("want two next hops: %s", out)
	}
	l.Route(ns, "10.9.0.0/16", "10.2.0.9")
	if out := l.IP(ns, "route", "show", "10.9.0.0/16"); !strings.Contains(out, "via 10.2.0.9") || strings.Contains(out, "10.2.0.7") {
		t.Errorf("want the route moved to 10.2.0.9: %s", out)
	}
}

// A process in a lab namespace reaches a server the test runs in the root
// namespace on the root end of a RootLink, whose subnet is the host's only
// new one and is gone with the lab.
func TestVethToRootReachesTheTestProcess(t *testing.T) {
	var rootIf string
	var subnet netlab.Subnet
	t.Run("lab", func(t *testing.T) {
		l := netlab.New(t)
		ns := l.Namespace("node")
		link := l.VethToRoot(ns, "root", "node")
		rootIf, subnet = link.RootInterface, link.Subnet
		if link.Root4 != link.Subnet.Host4(1).Addr() || link.Root6 != link.Subnet.Host6(1).Addr() {
			t.Errorf("root end %s %s is not the first address of %v", link.Root4, link.Root6, link.Subnet)
		}
		l.Address(ns, link.Interface, link.Subnet.Host4(2).String(), link.Subnet.Host6(2).String())
		for _, addr := range []netip.Addr{link.Root4, link.Root6} {
			hostPort := greet(t, l, "", addr, "root")
			got, err := dial(l, ns, hostPort)
			if err != nil || got != "root" {
				t.Errorf("dialing the root end %s from %s: got %q, %v", hostPort, ns, got, err)
			}
		}
		// The next subnet is another one.
		next := l.FreeSubnet()
		if next.V4.Overlaps(subnet.V4) || next.V6.Overlaps(subnet.V6) {
			t.Errorf("FreeSubnet gave %v after %v", next, subnet)
		}
	})
	if hasRootInterface(rootIf) {
		t.Errorf("root end %s outlived the lab", rootIf)
	}
	out, err := exec.Command("ip", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), subnet.Host4(1).Addr().String()+"/") {
		t.Errorf("the root end's address outlived the lab: %s", out)
	}
}

// Namespaces behind a router reach one server the test process runs, on
// the root end of the router's RootLink, as LB nodes reach Temporal.
func TestNamespacesBehindARouterReachTheTestProcess(t *testing.T) {
	l := netlab.New(t)
	mgmt, node := l.Namespace("mgmt"), l.Namespace("node")
	link := l.VethToRoot(mgmt, "root", "mgmt")
	l.Address(mgmt, link.Interface, link.Subnet.Host4(2).String(), link.Subnet.Host6(2).String())
	l.Forward(mgmt)
	behind := l.FreeSubnet()
	n, m := l.Veth(node, "n", mgmt, "m")
	l.Address(node, n, behind.Host4(2).String(), behind.Host6(2).String())
	l.Address(mgmt, m, behind.Host4(1).String(), behind.Host6(1).String())
	l.Route(node, "default", behind.Host4(1).Addr().String())
	l.Route(node, "default", behind.Host6(1).Addr().String())
	l.Route(mgmt, "default", link.Root4.String())
	l.Route(mgmt, "default", link.Root6.String())
	l.RouteFromRoot(link, 2, behind)
	for _, addr := range []netip.Addr{link.Root4, link.Root6} {
		hostPort := greet(t, l, "", addr, "temporal")
		got, err := dial(l, node, hostPort)
		if err != nil || got != "temporal" {
			t.Errorf("dialing %s from behind the router: got %q, %v", hostPort, got, err)
		}
	}
}

// recorder stands in for a test's testing.TB to watch a lab fail: Fatalf
// and Skip record the message and end the goroutine, as FailNow does, and
// cleanups wait until the caller runs them.
type recorder struct {
	testing.TB
	mu       sync.Mutex
	failure  string
	cleanups []func()
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.failure = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func (r *recorder) Skip(args ...any) { r.Fatalf("skipped: %s", fmt.Sprint(args...)) }

func (r *recorder) Cleanup(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, fn)
}

// do runs fn as a test body and returns how it failed ("" if it did not).
func (r *recorder) do(fn func()) string {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.failure
	r.failure = ""
	return f
}

// cleanup runs the cleanups last first, as the testing package does.
func (r *recorder) cleanup() {
	r.mu.Lock()
	fns := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(fns) - 1; i >= 0; i-- {
		fns[i]()
	}
}

// A test that fails halfway still leaves no namespace and no root veth
// end behind, and bad input is refused before it changes anything.
func TestFailedTestLeavesNothingBehind(t *testing.T) {
	netlab.New(t) // skips where no lab can be built
	r := &recorder{TB: t}
	defer r.cleanup()
	var l *netlab.Lab
	var a, b string
	var root netlab.RootLink
	if f := r.do(func() {
		l = netlab.New(r)
		a, b = l.Namespace("a"), l.Namespace("b")
		l.Veth(a, "x", b, "y")
		root = l.VethToRoot(a, "root", "up")
	}); f != "" {
		t.Fatalf("building the lab failed: %s", f)
	}
	for _, c := range []struct {
		name string
		bad  func()
		want string
	}{
		{"an unknown namespace", func() { l.Veth(a, "v", "nope", "w") }, `"nope" is not a namespace of this lab`},
		{"no namespace at all", func() { l.IP("", "link", "add", "bad0", "type", "dummy") }, `"" is not a namespace of this lab`},
		{"a taken namespace", func() { l.Namespace("a") }, "exists already"},
		{"a taken interface", func() { l.Veth(a, "x", b, "z") }, "exists already"},
		{"a long interface role", func() { l.Veth(a, "12345678", b, "w") }, "at most 7 characters"},
		{"a bad address", func() { l.Address(a, "lo", "10.0.0.300/24") }, "address"},
		{"a mixed route", func() { l.Route(a, "default", "10.0.0.1", "fd00::1") }, "mixes IPv4 and IPv6"},
		{"a route without gateway", func() { l.Route(a, "default") }, "without a gateway"},
		{"a bad sysctl", func() { l.Sysctl(a, "net.ipv4.ip_forward") }, "want key=value"},
		{"a root route to a subnet the lab did not draw", func() {
			l.RouteFromRoot(root, 2, netlab.Subnet{V4: netip.MustParsePrefix("192.0.2.0/24"), V6: netip.MustParsePrefix("fd00::/64")})
		}, "not a subnet this lab drew"},
		{"a root route via the root itself", func() { l.RouteFromRoot(root, 1, l.FreeSubnet()) }, "want an address of the namespace end"},
	} {
		if f := r.do(c.bad); !strings.Contains(f, c.want) {
			t.Errorf("%s: failure %q, want it to say %q", c.name, f, c.want)
		}
	}
	if err := l.Call("nope", func() { t.Error("ran in no namespace") }); err == nil {
		t.Error("Call entered a namespace the lab does not have")
	}
	// The refused calls changed nothing.
	if out := l.IP(a, "-o", "link", "show"); strings.Contains(out, "v@") || strings.Contains(out, "z@") || strings.Contains(out, "w@") {
		t.Errorf("a refused veth exists: %s", out)
	}
	if out := l.IP(a, "-o", "addr", "show", "dev", "lo"); strings.Contains(out, "10.0.0.") {
		t.Errorf("a refused address exists: %s", out)
	}

	if f := r.do(func() { l.IP(a, "link", "set", "no-such-link", "up") }); !strings.Contains(f, "no-such-link") {
		t.Fatalf("a failing ip command fails the test: %q", f)
	}
	for _, name := range []string{a, b} {
		if !hasNamespace(t, name) {
			t.Fatalf("namespace %s is missing before cleanup", name)
		}
	}
	r.cleanup()
	for _, name := range []string{a, b} {
		if hasNamespace(t, name) {
			t.Errorf("namespace %s outlived the lab: %s", name, namespaces(t))
		}
	}
	if hasRootInterface(root.RootInterface) {
		t.Errorf("root end %s outlived the lab", root.RootInterface)
	}
}
