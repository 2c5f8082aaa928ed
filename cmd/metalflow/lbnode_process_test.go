package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/metalflow/metalflow/lbnode"
)

// The process tests re-run this test binary as `metalflow lbnode`, so a
// restart is a real process exiting and another starting.
const childEnv = "METALFLOW_TEST_LBNODE_ARGS"

func TestMain(m *testing.M) {
	if args := os.Getenv(childEnv); args != "" {
		var argv []string
		if err := json.Unmarshal([]byte(args), &argv); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
		err := runLBNode(ctx, argv, os.Stdout, os.Stderr)
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
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
	prefix string
	client string
	router string
	lb     string
	lbIf   string
	pins   string
	config string
}

func execOK(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	require.NoError(t, err, "%s %s: %s", name, strings.Join(args, " "), out)
	return string(out)
}

func inTestNetns(ns string, fn func()) error {
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
		return err
	}
	fn()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return err // the thread stays locked and is retired
	}
	runtime.UnlockOSThread()
	return nil
}

func newProcLab(t *testing.T) *procLab {
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root for network namespaces and XDP")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("skipping: needs iproute2's ip command")
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	p := &procLab{t: t, prefix: "mp" + hex.EncodeToString(b)}
	p.client, p.router, p.lb = p.ns("client"), p.ns("router"), p.ns("lb")
	p.pins = t.TempDir()
	require.NoError(t, lbnode.MountBPFFS(p.pins))
	t.Cleanup(func() { _ = unix.Unmount(p.pins, unix.MNT_DETACH) })

	p.veth(p.client, p.prefix+"c", procClient+"/24", p.router, p.prefix+"rc", "10.20.1.1/24")
	execOK(t, "ip", "-n", p.client, "route", "add", "default", "via", "10.20.1.1")
	execOK(t, "ip", "netns", "exec", p.router, "sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0")
	p.lbIf = p.prefix + "l"
	p.veth(p.lb, p.lbIf, "10.20.2.2/24", p.router, p.prefix+"rl", "10.20.2.1/24")
	execOK(t, "ip", "-n", p.router, "route", "add", procVIP+"/32", "via", "10.20.2.2")
	for i := 1; i <= 2; i++ {
		ns := p.ns(fmt.Sprintf("b%d", i))
		dev := fmt.Sprintf("%sb%d", p.prefix, i)
		p.veth(ns, dev, fmt.Sprintf("10.20.1%d.2/24", i), p.router, fmt.Sprintf("%srb%d", p.prefix, i), fmt.Sprintf("10.20.1%d.1/24", i))
		execOK(t, "ip", "-n", ns, "addr", "add", procVIP+"/32", "dev", "lo")
		execOK(t, "ip", "-n", ns, "route", "add", "default", "via", fmt.Sprintf("10.20.1%d.1", i))
		var out, errOut bytes.Buffer
		var err error
		require.NoError(t, inTestNetns(ns, func() {
			err = runDecap(context.Background(), []string{"--iface", dev, "--xdp-mode", "generic", "--pin-root", p.pins}, &out, &errOut)
		}))
		require.NoError(t, err, errOut.String())
		assert.Contains(t, out.String(), "generic")
		t.Cleanup(func() {
			_ = runDecap(context.Background(), []string{"--iface", dev, "--detach", "--pin-root", p.pins}, io.Discard, io.Discard)
		})
		p.serve(ns, fmt.Sprintf("b%d", i))
	}
	p.config = filepath.Join(t.TempDir(), "lbnode.yaml")
	return p
}

func (p *procLab) ns(role string) string {
	name := p.prefix + "-" + role
	execOK(p.t, "ip", "netns", "add", name)
	p.t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	execOK(p.t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

func (p *procLab) veth(a, ifA, addrA, b, ifB, addrB string) {
	execOK(p.t, "ip", "link", "add", ifA, "netns", a, "type", "veth", "peer", "name", ifB, "netns", b)
	execOK(p.t, "ip", "-n", a, "addr", "add", addrA, "dev", ifA)
	execOK(p.t, "ip", "-n", b, "addr", "add", addrB, "dev", ifB)
	execOK(p.t, "ip", "-n", a, "link", "set", ifA, "up")
	execOK(p.t, "ip", "-n", b, "link", "set", ifB, "up")
}

func (p *procLab) serve(ns, name string) {
	var ln net.Listener
	var err error
	require.NoError(p.t, inTestNetns(ns, func() { ln, err = net.Listen("tcp", procVIP+":80") }))
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
	var mac net.HardwareAddr
	require.NoError(p.t, inTestNetns(p.router, func() {
		iface, err := net.InterfaceByName(p.prefix + "rl")
		require.NoError(p.t, err)
		mac = iface.HardwareAddr
	}))
	var b strings.Builder
	fmt.Fprintf(&b, "nextHopMAC: %q\nseed: 11\nvips:\n  - address: %s\n    port: 80\n    protocol: tcp\n    backends:\n", mac, procVIP)
	for _, be := range backends {
		fmt.Fprintf(&b, "      - {address: %s, weight: 100}\n", be)
	}
	require.NoError(p.t, os.WriteFile(p.config, []byte(b.String()), 0o600))
}

// lbProcess is one run of `metalflow lbnode` inside the LB namespace.
type lbProcess struct {
	cmd   *exec.Cmd
	lines chan string
}

func (p *procLab) startLBNode() *lbProcess {
	self, err := os.Executable()
	require.NoError(p.t, err)
	args, _ := json.Marshal([]string{"--iface", p.lbIf, "--config", p.config, "--xdp-mode", "generic", "--pin-root", p.pins})
	cmd := exec.Command("ip", "netns", "exec", p.lb, self, "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(args))
	stderr, err := cmd.StderrPipe()
	require.NoError(p.t, err)
	require.NoError(p.t, cmd.Start())
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
	p.t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	})
	return proc
}

// await waits for a log line containing s.
func (l *lbProcess) await(t *testing.T, s string) {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case line, ok := <-l.lines:
			require.True(t, ok, "lbnode exited before logging %q", s)
			if strings.Contains(line, s) {
				return
			}
		case <-deadline:
			t.Fatalf("lbnode did not log %q in time", s)
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
	if nsErr := inTestNetns(p.client, func() {
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
	p := newProcLab(t)
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
	assert.NotContains(t, execOK(t, "ip", "-n", p.lb, "link", "show", p.lbIf), "xdp")
}
