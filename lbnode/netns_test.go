package lbnode

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// lab is a set of network namespaces a test creates and always deletes.
// Every name carries a per-run prefix so parallel or leftover runs never
// collide, and no address is configured outside these namespaces.
type lab struct {
	t      testing.TB
	prefix string
}

func newLab(t testing.TB) *lab {
	t.Helper()
	requireBPF(t)
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: needs iproute2's ip command")
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return &lab{t: t, prefix: "mf" + hex.EncodeToString(b)}
}

// ns creates a namespace with loopback up, and returns its name.
func (l *lab) ns(role string) string {
	name := l.prefix + "-" + role
	l.ip("netns", "add", name)
	l.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	l.ip("-n", name, "link", "set", "lo", "up")
	return name
}

// ifname is a per-run interface name (at most 15 bytes).
func (l *lab) ifname(role string) string {
	n := l.prefix + role
	require.LessOrEqual(l.t, len(n), 15, "interface name %s too long", n)
	return n
}

func (l *lab) ip(args ...string) string {
	l.t.Helper()
	out, err := exec.Command("ip", args...).CombinedOutput()
	require.NoError(l.t, err, "ip %s: %s", strings.Join(args, " "), out)
	return string(out)
}

// addr6 adds an IPv6 address without duplicate address detection, which
// would otherwise hold the address back for a second or two.
func (l *lab) addr6(ns, ifname, cidr string) {
	l.ip("-n", ns, "-6", "addr", "add", cidr, "dev", ifname, "nodad")
}

func (l *lab) sysctl(ns, key, value string) {
	l.t.Helper()
	out, err := exec.Command("ip", "netns", "exec", ns, "sysctl", "-qw", key+"="+value).CombinedOutput()
	require.NoError(l.t, err, "sysctl %s in %s: %s", key, ns, out)
}

// veth connects namespaces a and b with a veth pair named ifA/ifB, and
// gives each end an address (CIDR notation, may be empty).
func (l *lab) veth(a, ifA, addrA, b, ifB, addrB string) {
	l.ip("link", "add", ifA, "netns", a, "type", "veth", "peer", "name", ifB, "netns", b)
	for _, end := range [][3]string{{a, ifA, addrA}, {b, ifB, addrB}} {
		if end[2] != "" {
			l.ip("-n", end[0], "addr", "add", end[2], "dev", end[1])
		}
		l.ip("-n", end[0], "link", "set", end[1], "up")
	}
}

// in runs fn on an OS thread switched into namespace ns. Sockets and
// interface lookups made by fn belong to ns.
func (l *lab) in(ns string, fn func()) {
	l.t.Helper()
	require.NoError(l.t, inNetns(ns, fn))
}

func inNetns(ns string, fn func()) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", ns, err)
	}
	fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, so the runtime retires it rather than
		// letting another goroutine run in the wrong namespace.
		return fmt.Errorf("leaving netns %s: %w", ns, err)
	}
	runtime.UnlockOSThread()
	return nil
}

func (l *lab) macOf(ns, ifname string) net.HardwareAddr {
	var hw net.HardwareAddr
	l.in(ns, func() {
		iface, err := net.InterfaceByName(ifname)
		require.NoError(l.t, err)
		hw = iface.HardwareAddr
	})
	return hw
}

// bpffs mounts a private bpf filesystem for pins, unmounted at cleanup.
func bpffs(t testing.TB) string {
	dir := t.TempDir()
	require.NoError(t, MountBPFFS(dir))
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}
