//go:build !agent

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/internal/netlab"
)

func TestLBNodeWorkerFlags(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no cluster":        {[]string{"--iface", "eth0", "--temporal", "127.0.0.1:7233", "--node", "n1"}, "--cluster and --node"},
		"no node":           {[]string{"--iface", "eth0", "--temporal", "127.0.0.1:7233", "--cluster", "c1"}, "--cluster and --node"},
		"with a config":     {[]string{"--iface", "eth0", "--temporal", "127.0.0.1:7233", "--config", "x.yaml"}, "exactly one"},
		"with stats":        {[]string{"--iface", "eth0", "--temporal", "127.0.0.1:7233", "--stats"}, "exactly one"},
		"negative capacity": {[]string{"--iface", "eth0", "--temporal", "h:1", "--cluster", "c", "--node", "n", "--capacity", "-1"}, "at least one VIP"},
		"zero capacity":     {[]string{"--iface", "eth0", "--temporal", "h:1", "--cluster", "c", "--node", "n", "--capacity", "0"}, "at least one VIP"},
		"bad next hop":      {[]string{"--iface", "eth0", "--temporal", "h:1", "--cluster", "c", "--node", "n", "--next-hop-mac", "router"}, "Ethernet"},
	} {
		err := runLBNode(context.Background(), tc.args, io.Discard, io.Discard)
		require.Error(t, err, name)
		assert.Contains(t, err.Error(), tc.want, name)
	}
}

// TestLBNodeWorkerProcess runs `metalflow lbnode --temporal` as a process
// in a namespace with no Temporal reachable: the node still comes up,
// serves its metrics, and on SIGTERM stops cleanly leaving the data plane
// attached for the next run.
func TestLBNodeWorkerProcess(t *testing.T) {
	l := netlab.New(t)
	node := newSoloNode(t, l, "10.30.0")
	state := filepath.Join(t.TempDir(), "state")

	const metrics = "127.0.0.1:9109"
	proc := startLBProcess(t, l, node.ns, "--iface", node.iface, "--temporal", "127.0.0.1:1", "--cluster", "c1", "--node", "lb1",
		"--state-dir", state, "--metrics-listen", metrics, "--next-hop-mac", "02:00:00:00:00:01",
		"--xdp-mode", "generic", "--pin-root", node.pins)
	proc.await(t, "agent started")

	var body string
	deadline := time.Now().Add(20 * time.Second)
	for body == "" && time.Now().Before(deadline) {
		// The HTTP client dials from another goroutine, outside the
		// namespace: connect here, on the thread that is inside it.
		var conn net.Conn
		var err error
		l.MustCall(node.ns, func() { conn, err = net.Dial("tcp", metrics) })
		if err == nil {
			req, _ := http.NewRequest(http.MethodGet, "http://"+metrics+"/metrics", nil)
			req.Close = true
			if err := req.Write(conn); err == nil {
				if resp, err := http.ReadResponse(bufio.NewReader(conn), req); err == nil {
					raw, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					body = string(raw)
				}
			}
			conn.Close()
		}
		if body == "" {
			time.Sleep(20 * time.Millisecond)
		}
	}
	assert.Contains(t, body, "metalflow_lb_dataplane_healthy 1")
	assert.Contains(t, body, "metalflow_lb_vips 0")

	proc.stop(t)
	assert.Contains(t, l.IP(node.ns, "link", "show", node.iface), "xdp", "the data plane stays attached")
	_, err := os.Stat(state)
	assert.NoError(t, err, "the state directory exists")
}

// The operator's steps from issue #17: run a node on an interface, stop it,
// delete and re-create the interface under the same name (a re-created
// bond, VF or veth), start it again. The pins left for the old interface
// hold a program attached to nothing; adopting them left the worker
// unhealthy for good. Whether run as a Temporal worker or standalone, the
// node must drop them, say so with both ifindexes, and attach afresh.
func TestLBNodeOnARecreatedInterfaceAttachesAfresh(t *testing.T) {
	for name, tc := range map[string]struct {
		args  func(t *testing.T) []string
		ready string
		want  string
	}{
		"temporal worker": {
			args: func(t *testing.T) []string {
				return []string{"--temporal", "127.0.0.1:1", "--cluster", "c1", "--node", "lb1",
					"--state-dir", filepath.Join(t.TempDir(), "state"), "--next-hop-mac", "02:00:00:00:00:01"}
			},
			ready: "agent started",
			want:  "healthy=true",
		},
		"standalone": {
			args: func(t *testing.T) []string {
				config := filepath.Join(t.TempDir(), "lb.yaml")
				require.NoError(t, os.WriteFile(config, []byte("nextHopMAC: \"02:00:00:00:00:01\"\n"+
					"vips: [{address: 10.201.0.10, port: 80, protocol: tcp, backends: [{address: 10.33.0.1}]}]\n"), 0o600))
				return []string{"--config", config}
			},
			ready: "msg=serving",
			want:  "adopted=false",
		},
	} {
		t.Run(name, func(t *testing.T) {
			l := netlab.New(t)
			node := newSoloNode(t, l, "10.33.0")
			args := append([]string{"--iface", node.iface, "--xdp-mode", "generic", "--pin-root", node.pins}, tc.args(t)...)
			proc := startLBProcess(t, l, node.ns, args...)
			proc.await(t, tc.ready)
			proc.stop(t)

			l.IP(node.ns, "link", "del", node.iface)
			l.IP(node.ns, "link", "add", node.iface, "type", "veth", "peer", "name", node.peer)
			l.IP(node.ns, "link", "set", node.iface, "up")
			l.IP(node.ns, "link", "set", node.peer, "up")
			var ifindex int
			l.MustCall(node.ns, func() {
				iface, err := net.InterfaceByName(node.iface)
				require.NoError(t, err)
				ifindex = iface.Index
			})

			proc = startLBProcess(t, l, node.ns, args...)
			discarded := proc.await(t, "discarding the data plane pinned")
			assert.Contains(t, discarded, fmt.Sprintf("pinned_ifindex=0 ifindex=%d", ifindex))
			assert.Contains(t, proc.await(t, tc.ready), tc.want)
			assert.Contains(t, l.IP(node.ns, "link", "show", node.iface), "xdpgeneric", "attached to the interface there is now")
		})
	}
}
