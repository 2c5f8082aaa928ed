//go:build !agent

package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/internal/netlab"
)

// These tests run the commands as a user does in a namespace lab, `ip netns
// exec NS metalflow ...` with the default pin root. ip netns exec gives each
// command a mount namespace and a /sys of its own, so the bpf filesystem a
// command mounts at /sys/fs/bpf is its alone (the host's is never touched)
// and ends with it.

// Issue #17: decap installed its program, pinned it on its private bpf
// filesystem and exited, taking the program along; the backend answered
// IP-in-IP with "protocol unreachable" and nothing said why. decap must
// stay in the foreground holding the program, say why, detach on SIGTERM;
// --stats from another `ip netns exec` must say why it finds nothing; and a
// --pin-root that outlives the command must let decap install and exit.
func TestDecapInsideIPNetnsExec(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the process test in -short mode")
	}
	l := netlab.New(t)
	ns := l.Namespace("be")
	dev, _ := l.Veth(ns, "b", ns, "r")

	decap := startProcess(t, l, ns, "decap", "--iface", dev)
	assert.Contains(t, decap.await(t, "staying in the foreground"), "ip netns exec")
	time.Sleep(300 * time.Millisecond)
	assert.Contains(t, l.IP(ns, "link", "show", dev), "prog/xdp", "the program stays while decap runs")

	for _, cmd := range []string{"decap", "lbnode"} {
		out, err := runMetalflow(t, l, ns, cmd, "--iface", dev, "--stats")
		assert.Error(t, err, cmd)
		assert.Contains(t, out, "pins made inside another `ip netns exec` are not visible here", cmd)
		assert.Contains(t, out, "--pin-root", cmd)
	}
	// Typed at a shell opened in the namespace (`ip netns exec be bash`):
	// the shell shares the command's mount namespace, and the one the pins
	// are missing from is further up.
	shell := metalflowCommand(t, l, ns, "lbnode", "--iface", dev, "--stats")
	shell.Args = append(shell.Args[:4:4], "sh", "-c", `"$0" "$1"; exit $?`, shell.Args[4], shell.Args[5])
	shellOut, err := shell.CombinedOutput()
	assert.Error(t, err)
	assert.Contains(t, string(shellOut), "pins made inside another `ip netns exec` are not visible here")

	decap.stop(t)
	assert.NotContains(t, l.IP(ns, "link", "show", dev), "prog/xdp", "SIGTERM detaches the program")

	// A bpf filesystem mounted outside /sys in the test's mount namespace,
	// which ip netns exec copies, outlives each command.
	pins := pinRoot(t)
	out, err := runMetalflow(t, l, ns, "decap", "--iface", dev, "--pin-root", pins)
	require.NoError(t, err, out)
	assert.NotContains(t, out, "foreground")
	assert.Contains(t, l.IP(ns, "link", "show", dev), "prog/xdp", "installed and left running")
	out, err = runMetalflow(t, l, ns, "decap", "--iface", dev, "--stats", "--pin-root", pins)
	require.NoError(t, err, out)
	assert.Contains(t, out, "decap "+dev+": outer IPv4 0 packets")
	out, err = runMetalflow(t, l, ns, "decap", "--iface", dev, "--detach", "--pin-root", pins)
	require.NoError(t, err, out)
	assert.NotContains(t, l.IP(ns, "link", "show", dev), "prog/xdp")
}

// The same lab's load balancer node: it runs in the foreground anyway, but
// its data plane goes when it exits and a restart cannot adopt it, so it
// says so when it starts.
func TestLBNodeInsideIPNetnsExecWarnsItsPinsAreItsOwn(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the process test in -short mode")
	}
	l := netlab.New(t)
	ns := l.Namespace("lb")
	dev, _ := l.Veth(ns, "l", ns, "r")
	config := filepath.Join(t.TempDir(), "lb.yaml")
	require.NoError(t, os.WriteFile(config, []byte("nextHopMAC: \"02:00:00:00:00:01\"\nvips: []\n"), 0o600))

	lb := startLBProcess(t, l, ns, "--iface", dev, "--config", config)
	assert.Contains(t, lb.await(t, "the data plane goes when this process exits"), "ip netns exec")
	lb.await(t, "msg=serving")
	out, err := runMetalflow(t, l, ns, "lbnode", "--iface", dev, "--stats")
	assert.Error(t, err)
	assert.Contains(t, out, "pins made inside another `ip netns exec` are not visible here")
	lb.stop(t)
}
