package hardware_test

import (
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/stretchr/testify/require"
)

// countingProxy forwards TCP to target and counts the connections made
// through it, so a test sees how many a client opened.
func countingProxy(t *testing.T, target string) (addr string, conns *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	conns = &atomic.Int64{}
	var wg sync.WaitGroup
	t.Cleanup(func() { _ = ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			out, err := net.Dial("tcp", target)
			if err != nil {
				_ = in.Close()
				continue
			}
			wg.Go(func() { _, _ = io.Copy(out, in); _ = out.Close() })
			wg.Go(func() { _, _ = io.Copy(in, out); _ = in.Close() })
		}
	})
	return ln.Addr().String(), conns
}

func TestSessionReusesConnections(t *testing.T) {
	f, b := quickFleet(t, bmcsim.VendorDell)
	ep := endpointOf(f, b)
	hostPort := strings.TrimPrefix(ep.Address, "https://")
	proxy, conns := countingProxy(t, hostPort)
	ep.Address = "https://" + proxy

	m := dial(t, ep)
	ctx := ctxT(t)
	const reads = 10
	for range reads {
		_, err := m.PowerState(ctx)
		require.NoError(t, err)
		_, err = m.BIOS(ctx)
		require.NoError(t, err)
	}
	_, err := m.Inventory(ctx)
	require.NoError(t, err)
	// Each read is several Redfish requests; with a connection per
	// request there would be well over a hundred.
	require.LessOrEqual(t, conns.Load(), int64(4), "TCP connections for %d reads", 2*reads+1)
}
