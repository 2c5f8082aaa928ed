package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/metalflow/metalflow/lbnode"
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
		"negative capacity": {[]string{"--iface", "eth0", "--temporal", "h:1", "--cluster", "c", "--node", "n", "--capacity", "-1"}, "negative"},
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
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root for network namespaces and XDP")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: needs iproute2's ip command")
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	p := &procLab{t: t, prefix: "mw" + hex.EncodeToString(b)}
	ns := p.ns("lb")
	iface := p.prefix + "l"
	p.veth(ns, iface, "10.30.0.2/24", ns, p.prefix+"r", "10.30.0.1/24")
	pins := t.TempDir()
	require.NoError(t, lbnode.MountBPFFS(pins))
	t.Cleanup(func() { _ = unix.Unmount(pins, unix.MNT_DETACH) })
	t.Cleanup(func() { _ = lbnode.DetachPinned(pins, iface) })
	state := filepath.Join(t.TempDir(), "state")

	const metrics = "127.0.0.1:9109"
	self, err := os.Executable()
	require.NoError(t, err)
	args, _ := json.Marshal([]string{"--iface", iface, "--temporal", "127.0.0.1:1", "--cluster", "c1", "--node", "lb1",
		"--state-dir", state, "--metrics-listen", metrics, "--next-hop-mac", "02:00:00:00:00:01",
		"--xdp-mode", "generic", "--pin-root", pins})
	cmd := exec.Command("ip", "netns", "exec", ns, self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(args))
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	proc := &lbProcess{cmd: cmd, lines: make(chan string, 100)}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			select {
			case proc.lines <- sc.Text():
			default:
			}
		}
		close(proc.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	proc.await(t, "agent started")

	var body string
	deadline := time.Now().Add(20 * time.Second)
	for body == "" && time.Now().Before(deadline) {
		// The HTTP client dials from another goroutine, outside the
		// namespace: connect here, on the thread that is inside it.
		var conn net.Conn
		require.NoError(t, inTestNetns(ns, func() { conn, err = net.Dial("tcp", metrics) }))
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
	assert.Contains(t, execOK(t, "ip", "-n", ns, "link", "show", iface), "xdp", "the data plane stays attached")
	_, err = os.Stat(state)
	assert.NoError(t, err, "the state directory exists")
}
