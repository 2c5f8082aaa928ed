package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// process is one running metalflow subcommand.
type process struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	once sync.Once
	err  error
}

func startProcess(t *testing.T, name string, args ...string) *process {
	t.Helper()
	return startCommand(t, name, exec.Command(binaryPath, args...))
}

// startCommand is startProcess for a prepared command, such as metalflow
// run inside a network namespace by `ip netns exec`, which replaces itself
// with the program so signals reach metalflow.
func startCommand(t *testing.T, name string, cmd *exec.Cmd) *process {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	require.NoError(t, err)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	require.NoError(t, cmd.Start())
	p := &process{t: t, name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		_ = logFile.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop()
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- %s log (last 4 KiB) ---\n%s", name, tail(b, 4096))
		}
	})
	return p
}

// stop sends SIGTERM, as an operator's Ctrl-C or a service manager would,
// and waits for a clean exit.
func (p *process) stop() {
	p.once.Do(func() {
		select {
		case <-p.done:
			return
		default:
		}
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(30 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
			p.t.Errorf("%s did not stop within 30s of SIGTERM", p.name)
		}
	})
}

// kill is kill -9: no chance to finish anything in flight.
func (p *process) kill() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

func (p *process) exitedCleanly() bool {
	<-p.done
	return p.err == nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

// freeAddr picks a free port on loopback; see freePortOn.
func freeAddr(t *testing.T) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", fmt.Sprint(freePortOn(t, netip.MustParseAddr("127.0.0.1"))))
}

// handedOut holds every port freePortOn has returned in this test binary.
// A port is free when picked but only bound a moment later by a child
// process, so two picks in a row (a test's admin address, then dev's
// API address) could otherwise return the same port and the second
// process dies with "address already in use". It is the test binary's
// one piece of shared state, guarded by its own lock.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}

// freePortOn picks a free port on addr below the kernel's ephemeral range
// (32768 and up), so no client socket or simulated BMC (both bound to
// ephemeral ports) can take it first, and never the same port twice.
func freePortOn(t *testing.T, addr netip.Addr) int {
	t.Helper()
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 200 {
		port := 20000 + rand.IntN(12000)
		if handedOut.ports[port] {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(addr.String(), fmt.Sprint(port)))
		if err != nil {
			continue
		}
		require.NoError(t, l.Close())
		handedOut.ports[port] = true
		return port
	}
	t.Fatal("no free port found below the ephemeral range")
	return 0
}

// eventually polls fn until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: not reached within %s: %v", what, timeout, err)
}

type response struct {
	code int
	body []byte
}

func (r response) json(t *testing.T, v any) {
	t.Helper()
	require.NoError(t, json.Unmarshal(r.body, v), string(r.body))
}

func (r response) errorMessage(t *testing.T) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	r.json(t, &e)
	require.NotEmpty(t, e.Error, "an error answer must carry a message: %s", r.body)
	return e.Error
}

func do(t *testing.T, method, url, body string) response {
	t.Helper()
	return doWithHeader(t, method, url, body, nil)
}

// doWithHeader is do with extra request headers.
func doWithHeader(t *testing.T, method, url, body string, header http.Header) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	require.NoError(t, err)
	bearerFromURL(req)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{code: res.StatusCode, body: b}
}

// apiURL is the base URL of an API with the token its tests act with
// carried as the URL's password: every helper that builds a request from
// it sends the token as a bearer token (bearerFromURL), so test code
// concatenates paths as before.
func apiURL(hostPort, token string) string {
	return "http://" + url.UserPassword("test", token).String() + "@" + hostPort
}

// bearerFromURL moves a token carried in the request URL into the
// Authorization header, as a real client would send it.
func bearerFromURL(req *http.Request) {
	if req.URL.User == nil {
		return
	}
	if tok, ok := req.URL.User.Password(); ok && req.Header.Get("Authorization") == "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	req.URL.User = nil
	req.Host = req.URL.Host
}

// withoutToken is an API URL stripped of its token, for tests of what a
// caller without one gets.
func withoutToken(base string) string {
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	u.User = nil
	return u.String()
}

// adminToken waits for the token a fresh metalflow API prints once.
func (p *process) adminToken(t *testing.T) string {
	t.Helper()
	var tok string
	eventually(t, 60*time.Second, p.name+" prints its admin token", func() error {
		b, err := os.ReadFile(p.log)
		if err != nil {
			return err
		}
		_, rest, ok := strings.Cut(string(b), "admin token: ")
		if !ok {
			return fmt.Errorf("no admin token in the log yet")
		}
		// The token ends where its alphabet does (a quote in JSON logs, a
		// space in text logs).
		end := strings.IndexFunc(rest, func(r rune) bool {
			return !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9')
		})
		if end < 0 {
			end = len(rest)
		}
		tok = rest[:end]
		return nil
	})
	return tok
}

func waitHTTP(t *testing.T, url string, want int, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, "GET "+url, func() error {
		res, err := http.Get(url)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != want {
			return fmt.Errorf("status %d: %s", res.StatusCode, bytes.TrimSpace(b))
		}
		return nil
	})
}
