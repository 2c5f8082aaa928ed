package tftp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pintftp "github.com/pin/tftp/v3"

	"github.com/metalflow/metalflow/api/boot/tftp"
	"github.com/metalflow/metalflow/internal/testlog"
)

// serve runs a server over dir on a loopback port and returns its
// address and the log it writes.
func serve(t *testing.T, dir string) (string, *testlog.Buffer) {
	t.Helper()
	conn, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logs := &testlog.Buffer{}
	srv := tftp.New(tftp.Config{Dir: dir, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, conn) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return conn.LocalAddr().String(), logs
}

func fetch(addr, name string) ([]byte, error) {
	c, err := pintftp.NewClient(addr)
	if err != nil {
		return nil, err
	}
	c.SetTimeout(time.Second)
	wt, err := c.Receive(name, "octet")
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	_, err = wt.WriteTo(&b)
	return b.Bytes(), err
}

// A lab of files: the iPXE builds, and readable files next to them and
// above them that must never be served.
func lab(t *testing.T) (dir string, want map[string][]byte) {
	t.Helper()
	root := t.TempDir()
	dir = filepath.Join(root, "ipxe")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	want = map[string][]byte{}
	// Several hundred blocks, and not a whole number of them.
	for i, name := range tftp.Files() {
		b := make([]byte, 200_000+i*777)
		_, _ = rand.Read(b)
		want[name] = b
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{filepath.Join(dir, "ipxe.lkrn"), filepath.Join(root, "secret")} {
		if err := os.WriteFile(f, []byte("not for netbooting machines"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir, want
}

func TestServesTheIPXEBuilds(t *testing.T) {
	dir, want := lab(t)
	addr, logs := serve(t, dir)
	for name, b := range want {
		got, err := fetch(addr, name)
		if err != nil {
			t.Fatalf("fetching %s: %v", name, err)
		}
		if !bytes.Equal(got, b) {
			t.Errorf("%s: got %d bytes, want the file's %d", name, len(got), len(b))
		}
	}
	// The transfer is logged once it is acknowledged, after the client
	// has its bytes.
	deadline := time.Now().Add(2 * time.Second)
	for !strings.Contains(logs.String(), "TFTP: sent") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "file=undionly.kpxe") || !strings.Contains(logs.String(), "TFTP: sent") {
		t.Errorf("transfers not logged:\n%s", logs)
	}
}

func TestRefusesEverythingElse(t *testing.T) {
	dir, _ := lab(t)
	addr, logs := serve(t, dir)
	for _, name := range []string{
		"ipxe.lkrn", // in the directory, not in the set
		"../secret",
		"/../secret",
		filepath.Join(filepath.Dir(dir), "secret"),
		"undionly.kpxe/../../secret",
		"./undionly.kpxe",
		"UNDIONLY.KPXE",
		"",
	} {
		got, err := fetch(addr, name)
		if err == nil {
			t.Errorf("%q: served %q, want refused", name, got)
			continue
		}
		if !strings.Contains(err.Error(), "file not found") {
			t.Errorf("%q: %v, want the server's refusal", name, err)
		}
	}
	if !strings.Contains(logs.String(), "TFTP: refused") {
		t.Errorf("refusals not logged:\n%s", logs)
	}
}

func TestDefaultDirHoldsDebianBuilds(t *testing.T) {
	if _, err := os.Stat(filepath.Join(tftp.DefaultDir, "undionly.kpxe")); err != nil {
		t.Skipf("skipping: Debian's ipxe package is not installed: %v", err)
	}
	addr, _ := serve(t, "")
	want, err := os.ReadFile(filepath.Join(tftp.DefaultDir, "undionly.kpxe"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := fetch(addr, "undionly.kpxe")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got %d bytes, want undionly.kpxe's %d", len(got), len(want))
	}
}
