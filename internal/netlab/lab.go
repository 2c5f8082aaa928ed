// Package netlab builds network-namespace labs for tests: namespaces joined
// by veth pairs, with addresses, routes and processes inside them, all torn
// down when the test ends. Tests of the load balancer node, its agent, its
// BGP speaker and the commands that run them share it, so a topology reads
// the same everywhere and the care it takes (unique names, nothing left
// behind, nothing configured on the host but a lab's own veth ends and
// routes through them to subnets it drew) is written once.
//
// Only tests import this package. It needs root and iproute2's ip command;
// without them New skips the test.
package netlab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
)

// maxInterfaceName is the kernel's limit on an interface name (IFNAMSIZ
// less the terminating NUL).
const maxInterfaceName = 15

// Lab is one test's set of namespaces and links. Every name carries a
// per-run prefix, so labs of tests running in parallel, in other packages
// or left over by a killed run never collide.
type Lab struct {
	t      testing.TB
	prefix string

	// mu guards the names below: goroutines of a test enter namespaces
	// while the test may still be adding to the lab.
	mu         sync.Mutex
	namespaces map[string]bool
	interfaces map[string]bool
	subnets    []netip.Prefix
}

// New starts an empty lab for t and skips t where a lab cannot be built:
// without root or without the ip command.
func New(t testing.TB) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: needs iproute2's ip command")
	}
	b := make([]byte, 3)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("netlab: drawing a name prefix: %v", err)
	}
	return &Lab{
		t:          t,
		prefix:     "mf" + hex.EncodeToString(b),
		namespaces: map[string]bool{},
		interfaces: map[string]bool{},
	}
}

// Namespace creates a namespace named after role, with loopback up, and
// returns its name. It is deleted when the test ends, whatever the outcome;
// links with an end inside go with it.
func (l *Lab) Namespace(role string) string {
	l.t.Helper()
	if role == "" || strings.ContainsAny(role, "/ \t\n") {
		l.t.Fatalf("netlab: namespace role %q: want a non-empty word without slashes or spaces", role)
	}
	name := l.prefix + "-" + role
	l.mu.Lock()
	taken := l.namespaces[name]
	l.mu.Unlock()
	if taken {
		l.t.Fatalf("netlab: namespace %s exists already in this lab", name)
	}
	l.mustIP("netns", "add", name)
	l.t.Cleanup(func() {
		// A namespace left behind would hold its links and addresses
		// until someone deletes it by hand: say so rather than pass.
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			l.t.Errorf("netlab: deleting namespace %s: %v: %s", name, err, out)
		}
	})
	l.mu.Lock()
	l.namespaces[name] = true
	l.mu.Unlock()
	l.mustIP("-n", name, "link", "set", "lo", "up")
	return name
}

// IP runs `ip -n ns args...` and returns its output, failing the test if
// it fails.
func (l *Lab) IP(ns string, args ...string) string {
	l.t.Helper()
	l.mustOwn(ns)
	return l.mustIP(append([]string{"-n", ns}, args...)...)
}

// Run runs a program inside ns and returns its combined output. Use it
// where failing is an outcome the test looks at.
func (l *Lab) Run(ns string, args ...string) (string, error) {
	l.t.Helper()
	if len(args) == 0 {
		l.t.Fatalf("netlab: Run in %s without a program", ns)
	}
	out, err := l.Command(ns, args[0], args[1:]...).CombinedOutput()
	return string(out), err
}

// MustRun runs a program inside ns and returns its combined output,
// failing the test if it fails.
func (l *Lab) MustRun(ns string, args ...string) string {
	l.t.Helper()
	out, err := l.Run(ns, args...)
	if err != nil {
		l.t.Fatalf("netlab: %s in %s: %v: %s", strings.Join(args, " "), ns, err, out)
	}
	return out
}

// Command prepares a program to run inside ns, for long-lived processes
// such as daemons or the command under test. `ip netns exec` replaces
// itself with the program, so the process's pid and signals are the
// program's own. The caller starts it and stops it at cleanup.
func (l *Lab) Command(ns, name string, args ...string) *exec.Cmd {
	l.t.Helper()
	l.mustOwn(ns)
	return exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// mustOwn fails the test unless ns is one of this lab's namespaces: a typo
// or an unset name must never reach ip, where an empty -n would configure
// the host itself.
func (l *Lab) mustOwn(ns string) {
	l.t.Helper()
	if !l.owns(ns) {
		l.t.Fatalf("netlab: %q is not a namespace of this lab", ns)
	}
}

func (l *Lab) owns(ns string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.namespaces[ns]
}

// interfaceNames are the per-run names for interface roles, reserved so
// two links of one lab never get the same name. All are checked before any
// is reserved, so a refused call leaves the lab as it was.
func (l *Lab) interfaceNames(roles ...string) []string {
	l.t.Helper()
	names, err := l.reserveInterfaces(roles)
	if err != nil {
		l.t.Fatalf("netlab: %v", err)
	}
	return names
}

func (l *Lab) reserveInterfaces(roles []string) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	names := make([]string, len(roles))
	for i, role := range roles {
		name := l.prefix + role
		if role == "" || len(name) > maxInterfaceName || strings.ContainsAny(name, "/ \t\n:") {
			return nil, fmt.Errorf("interface role %q: want at most %d characters without slashes, colons or spaces",
				role, maxInterfaceName-len(l.prefix))
		}
		if l.interfaces[name] || slices.Contains(names[:i], name) {
			return nil, fmt.Errorf("interface %s exists already in this lab", name)
		}
		names[i] = name
	}
	for _, name := range names {
		l.interfaces[name] = true
	}
	return names, nil
}

func (l *Lab) mustIP(args ...string) string {
	l.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("netlab: ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Sysctl sets kernel parameters inside ns, each given as key=value.
func (l *Lab) Sysctl(ns string, settings ...string) {
	l.t.Helper()
	for _, s := range settings {
		if k, _, ok := strings.Cut(s, "="); !ok || k == "" {
			l.t.Fatalf("netlab: sysctl setting %q: want key=value", s)
		}
	}
	l.MustRun(ns, append([]string{"sysctl", "-qw"}, settings...)...)
}

// Forward makes ns a router: it forwards IPv4 and IPv6 between its
// interfaces. Reverse-path filtering is off because lab topologies are
// asymmetric on purpose (direct server return, ECMP), where it would drop
// legitimate packets.
func (l *Lab) Forward(ns string) {
	l.t.Helper()
	l.Sysctl(ns, "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
		"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
}
