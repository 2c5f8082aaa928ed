//go:build !agent

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/internal/netlab"
	"github.com/metalflow/metalflow/lbnode"
)

// The process tests re-run this test binary as `metalflow`, so a restart
// is a real process exiting and another starting, and a command run
// through `ip netns exec` gets the mount namespace a user's would.
const childEnv = "METALFLOW_TEST_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		var argv []string
		if err := json.Unmarshal([]byte(args), &argv); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		code := run(ctx, argv, os.Stdout, os.Stderr)
		stop()
		os.Exit(code)
	}
	os.Exit(m.Run())
}

const (
	procVIP    = "10.201.0.10"
	procClient = "10.20.1.2"
)

// procLab is the smallest topology for the process tests: a client, a
// router, one load balancer node and two backends, all in namespaces this
// test creates.
type procLab struct {
	t      *testing.T
	lab    *netlab.Lab
	client string
	router string
	lb     string
	lbIf   string
	// routerIf is the router's port to the LB node, the node's next hop.
	routerIf string
	pins     string
	config   string
	// xdp are the flags decap and lbnode get for the XDP mode: none, for
	// a lab built with the defaults.
	xdp []string
}

// newProcLab builds the lab with decap and lbnode attaching in mode, or in
// their default mode when mode is empty.
func newProcLab(t *testing.T, mode lbnode.AttachMode) *procLab {
	l := netlab.New(t)
	p := &procLab{t: t, lab: l, client: l.Namespace("client"), router: l.Namespace("router"), lb: l.Namespace("lb")}
	// The decap program passes frames up and never sends one back out, so
	// native mode works on a veth and auto picks it.
	decapMode := lbnode.AttachNative
	if mode != "" {
		p.xdp = []string{"--xdp-mode", string(mode)}
		decapMode = mode
	}
	p.pins = pinRoot(t)

	c, rc := l.Veth(p.client, "c", p.router, "rc")
	l.Address(p.client, c, procClient+"/24")
	l.Address(p.router, rc, "10.20.1.1/24")
	l.Route(p.client, "default", "10.20.1.1")
	l.Forward(p.router)
	p.lbIf, p.routerIf = l.Veth(p.lb, "l", p.router, "rl")
	l.Address(p.lb, p.lbIf, "10.20.2.2/24")
	l.Address(p.router, p.routerIf, "10.20.2.1/24")
	l.Route(p.router, procVIP+"/32", "10.20.2.2")
	for i := 1; i <= 2; i++ {
		ns := l.Namespace(fmt.Sprintf("b%d", i))
		dev, rdev := l.Veth(ns, fmt.Sprintf("b%d", i), p.router, fmt.Sprintf("rb%d", i))
		l.Address(ns, dev, fmt.Sprintf("10.20.1%d.2/24", i))
		l.Address(p.router, rdev, fmt.Sprintf("10.20.1%d.1/24", i))
		l.Address(ns, "lo", procVIP+"/32")
		l.Route(ns, "default", fmt.Sprintf("10.20.1%d.1", i))
		var out, errOut bytes.Buffer
		var err error
		l.MustCall(ns, func() {
			err = runDecap(context.Background(), append([]string{"--iface", dev, "--pin-root", p.pins}, p.xdp...), &out, &errOut)
		})
		require.NoError(t, err, errOut.String())
		assert.Contains(t, out.String(), "("+string(decapMode)+")")
		t.Cleanup(func() {
			_ = runDecap(context.Background(), []string{"--iface", dev, "--detach", "--pin-root", p.pins}, io.Discard, io.Discard)
		})
		p.serve(ns, fmt.Sprintf("b%d", i))
	}
	p.config = filepath.Join(t.TempDir(), "lbnode.yaml")
	return p
}

func (p *procLab) serve(ns, name string) {
	var ln net.Listener
	var err error
	p.lab.MustCall(ns, func() { ln, err = net.Listen("tcp", procVIP+":80") })
	require.NoError(p.t, err)
	p.t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "%s\n", name)
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
}

// writeConfig writes the standalone config with the given backends.
func (p *procLab) writeConfig(backends ...string) {
	mac := p.lab.MAC(p.router, p.routerIf)
	var b strings.Builder
	fmt.Fprintf(&b, "nextHopMAC: %q\nseed: 11\nvips:\n  - address: %s\n    port: 80\n    protocol: tcp\n    backends:\n", mac, procVIP)
	for _, be := range backends {
		fmt.Fprintf(&b, "      - {address: %s, weight: 100}\n", be)
	}
	require.NoError(p.t, os.WriteFile(p.config, []byte(b.String()), 0o600))
}

// lbProcess is one run of `metalflow` inside a namespace: lbnode, mostly.
type lbProcess struct {
	// name is the subcommand, for messages.
	name  string
	cmd   *exec.Cmd
	lines chan string
}

func (p *procLab) startLBNode() *lbProcess {
	return startLBProcess(p.t, p.lab, p.lb, append([]string{"--iface", p.lbIf, "--config", p.config, "--pin-root", p.pins}, p.xdp...)...)
}

// startLBProcess runs `metalflow lbnode args...` inside ns, stopped with
// SIGTERM at cleanup if the test has not stopped it.
func startLBProcess(t *testing.T, l *netlab.Lab, ns string, args ...string) *lbProcess {
	t.Helper()
	return startProcess(t, l, ns, append([]string{"lbnode"}, args...)...)
}

// metalflowCommand prepares `ip netns exec ns metalflow args...`.
func metalflowCommand(t *testing.T, l *netlab.Lab, ns string, args ...string) *exec.Cmd {
	t.Helper()
	self, err := os.Executable()
	require.NoError(t, err)
	argv, err := json.Marshal(args)
	require.NoError(t, err)
	cmd := l.Command(ns, self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(argv))
	return cmd
}

// runMetalflow runs `ip netns exec ns metalflow args...` to its end and
// returns what it wrote.
func runMetalflow(t *testing.T, l *netlab.Lab, ns string, args ...string) (string, error) {
	t.Helper()
	out, err := metalflowCommand(t, l, ns, args...).CombinedOutput()
	return string(out), err
}

// startProcess runs `metalflow args...` inside ns, stopped with SIGTERM at
// cleanup if the test has not stopped it.
func startProcess(t *testing.T, l *netlab.Lab, ns string, args ...string) *lbProcess {
	t.Helper()
	cmd := metalflowCommand(t, l, ns, args...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	proc := &lbProcess{name: args[0], cmd: cmd, lines: make(chan string, 100)}
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
	return proc
}

// await waits for a log line containing s and returns it.
func (l *lbProcess) await(t *testing.T, s string) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-l.lines:
			require.True(t, ok, "%s exited before logging %q", l.name, s)
			if strings.Contains(line, s) {
				return line
			}
		case <-deadline:
			t.Fatalf("%s did not log %q in time", l.name, s)
		}
	}
}

func (l *lbProcess) stop(t *testing.T) {
	require.NoError(t, l.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, l.cmd.Wait())
}

// dial connects from the client and returns the backend's name.
func (p *procLab) dial() (string, error) {
	var c net.Conn
	var err error
	if nsErr := p.lab.Call(p.client, func() {
		c, err = (&net.Dialer{Timeout: 3 * time.Second}).Dial("tcp", procVIP+":80")
	}); nsErr != nil {
		return "", nsErr
	}
	if err != nil {
		return "", err
	}
	defer func() {
		_ = c.(*net.TCPConn).SetLinger(0)
		c.Close()
	}()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimSpace(line), err
}

func TestLBNodeProcessRestartLosesNoConnection(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the process test in -short mode")
	}
	p := newProcLab(t, lbnode.AttachGeneric)
	p.writeConfig("10.20.11.2")
	lb := p.startLBNode()
	lb.await(t, "msg=serving")
	b, err := p.dial()
	require.NoError(t, err)
	assert.Equal(t, "b1", b)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	stop := make(chan struct{})
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		failures []error
		ok       int
	)
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				_, err := p.dial()
				mu.Lock()
				if err != nil {
					failures = append(failures, err)
				} else {
					ok++
				}
				mu.Unlock()
			}
		}()
	}
	for i := 0; i < 3; i++ {
		time.Sleep(150 * time.Millisecond)
		lb.stop(t)
		time.Sleep(150 * time.Millisecond) // no lbnode process at all
		lb = p.startLBNode()
		lb.await(t, "adopted=true")
	}
	time.Sleep(150 * time.Millisecond)
	close(stop)
	wg.Wait()
	t.Logf("%d connections across 3 process restarts", ok)
	assert.Empty(t, failures)
	assert.Greater(t, ok, 10)

	// SIGHUP swaps the backend list.
	p.writeConfig("10.20.12.2")
	require.NoError(t, lb.cmd.Process.Signal(syscall.SIGHUP))
	lb.await(t, "msg=reloaded")
	for i := 0; i < 10; i++ {
		b, err := p.dial()
		require.NoError(t, err)
		assert.Equal(t, "b2", b)
	}
	// A bad file is refused and the old config keeps serving.
	require.NoError(t, os.WriteFile(p.config, []byte("vips: [{address: nope}]\n"), 0o600))
	require.NoError(t, lb.cmd.Process.Signal(syscall.SIGHUP))
	lb.await(t, "reload rejected")
	b, err = p.dial()
	require.NoError(t, err)
	assert.Equal(t, "b2", b)

	var out bytes.Buffer
	require.NoError(t, runLBNode(context.Background(), []string{"--iface", p.lbIf, "--stats", "--pin-root", p.pins}, &out, io.Discard))
	assert.Regexp(t, `vip\s+10\.201\.0\.10:80/tcp\s+packets\s+[1-9]`, out.String())

	lb.stop(t)
	out.Reset()
	require.NoError(t, runLBNode(context.Background(), []string{"--iface", p.lbIf, "--detach", "--pin-root", p.pins}, &out, io.Discard))
	assert.NotContains(t, p.lab.IP(p.lb, "link", "show", p.lbIf), "xdp")
}

// A namespace lab built with the flags left at their defaults, as a new
// user builds one: every connection through the VIP must get through. On a
// veth, native XDP sends XDP_TX frames nowhere unless the peer runs an XDP
// program too, so auto must not pick it there.
func TestLBNodeProcessDefaultXDPModeOnVeth(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the process test in -short mode")
	}
	p := newProcLab(t, "")
	p.writeConfig("10.20.11.2", "10.20.12.2")
	lb := p.startLBNode()
	lb.await(t, "driver=veth")
	lb.await(t, "msg=serving")
	assert.Contains(t, p.lab.IP(p.lb, "link", "show", p.lbIf), "xdpgeneric")
	seen := map[string]int{}
	for range 20 {
		b, err := p.dial()
		require.NoError(t, err, "a connection through the VIP")
		seen[b]++
	}
	assert.Len(t, seen, 2, "both backends answer: %v", seen)
}
