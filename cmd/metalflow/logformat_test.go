//go:build !agent

package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// openPTY opens a pseudo-terminal: what a person's shell gives metalflow
// as stdout and stderr.
func openPTY(t *testing.T) (master, tty *os.File) {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("skipping: no pseudo-terminals here: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	require.NoError(t, unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return m, s
}

func TestLogFormatFollowsTheTerminal(t *testing.T) {
	var buf bytes.Buffer
	log, err := (&logFlags{level: "info", format: "auto"}).logger(&buf)
	require.NoError(t, err)
	log.Info("hello", "k", "v")
	require.True(t, strings.HasPrefix(buf.String(), `{"time":`), "a pipe or file gets JSON: %s", buf.String())

	buf.Reset()
	log, err = (&logFlags{level: "info", format: "text"}).logger(&buf)
	require.NoError(t, err)
	log.Info("hello", "k", "v")
	require.Contains(t, buf.String(), `level=INFO msg=hello k=v`)

	_, tty := openPTY(t)
	require.True(t, isTerminal(tty))
	require.False(t, isTerminal(&buf))

	_, err = (&logFlags{level: "info", format: "yaml"}).logger(&buf)
	require.ErrorContains(t, err, `--log-format "yaml": want auto, text or json`)
}

// TestDevOnATerminalGreetsAPerson runs dev as a person does, in a
// terminal: a banner saying where everything is, then text logs.
func TestDevOnATerminalGreetsAPerson(t *testing.T) {
	master, tty := openPTY(t)
	free := func() string {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		defer l.Close()
		return l.Addr().String()
	}
	httpAddr, temporal := free(), free()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runDev(ctx, []string{"--ephemeral", "--workers=false", "--http", httpAddr, "--temporal-listen", temporal, "--temporal-ui", ""}, tty, tty)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Error("dev did not stop")
		}
	})

	lines := make(chan string, 256)
	go func() {
		sc := bufio.NewScanner(master)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	var seen []string
	want := map[string]bool{"banner": false, "operator UI": false, "worker": false, "text log": false}
	deadline := time.After(90 * time.Second)
	for !want["banner"] || !want["operator UI"] || !want["worker"] || !want["text log"] {
		select {
		case line, ok := <-lines:
			require.True(t, ok, "the terminal closed:\n%s", strings.Join(seen, "\n"))
			seen = append(seen, line)
			switch {
			case strings.TrimSpace(line) == "metalflow dev is up":
				want["banner"] = true
			case strings.Contains(line, "operator UI") && strings.Contains(line, "http://"+httpAddr):
				want["operator UI"] = true
			case strings.Contains(line, "worker") && strings.Contains(line, "metalflow worker --temporal "+temporal):
				want["worker"] = true
			case strings.Contains(line, `level=INFO msg="metalflow dev is up"`):
				want["text log"] = true
			}
			require.False(t, strings.HasPrefix(line, `{"time":`), "no JSON on a terminal: %s", line)
		case <-deadline:
			t.Fatalf("missing %v in:\n%s", want, strings.Join(seen, "\n"))
		}
	}
}
