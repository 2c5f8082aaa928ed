//go:build !agent

package main

import (
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/metalflow/metalflow/internal/netlab"
	"github.com/metalflow/metalflow/lbnode"
)

// pinRoot mounts a private bpf filesystem for a test's pins, so nothing it
// pins touches the host's; it is unmounted at cleanup.
func pinRoot(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, lbnode.MountBPFFS(dir))
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// soloNode is an LB node with no neighbours: a namespace with one veth
// pair, the node's interface (at .2 of subnet, a "10.x.y" /24) and its
// peer (at .1), for tests of the node's own process rather than traffic.
type soloNode struct {
	ns    string
	iface string
	peer  string
	pins  string
}

func newSoloNode(t *testing.T, l *netlab.Lab, subnet string) soloNode {
	t.Helper()
	ns := l.Namespace("lb")
	iface, peer := l.Veth(ns, "l", ns, "r")
	l.Address(ns, iface, subnet+".2/24")
	l.Address(ns, peer, subnet+".1/24")
	pins := pinRoot(t)
	// Tests leave the data plane attached on purpose (that is what a
	// restart adopts); detaching before the namespace goes frees its pins.
	t.Cleanup(func() { _ = lbnode.DetachPinned(pins, iface) })
	return soloNode{ns: ns, iface: iface, peer: peer, pins: pins}
}
