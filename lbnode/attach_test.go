package lbnode

import (
	"bytes"
	"log/slog"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/internal/netlab"
)

// On a veth, native XDP attaches and then loses every frame the balancer
// sends back out unless the peer runs XDP too, so auto must pick generic
// there and say why. (Asking for native still gets it:
// TestEndToEndNativeModeOnVeth.)
func TestAutoModeIsGenericOnVeth(t *testing.T) {
	requireBPF(t)
	l := netlab.New(t)
	ns := l.Namespace("lb")
	dev, _ := l.Veth(ns, "lb0", ns, "lb1")
	var logs bytes.Buffer
	cfg := Config{Interface: dev, PinRoot: bpffs(t), NextHopMAC: macs().nextHop, Seed: testSeed,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))}

	var n *Node
	var err error
	l.MustCall(ns, func() { n, err = Open(cfg) })
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Detach() })
	assert.Equal(t, AttachGeneric, n.Mode())
	assert.Contains(t, l.IP(ns, "link", "show", dev), "xdpgeneric")
	assert.Contains(t, logs.String(), "driver=veth", "the choice is logged with its reason")
}
