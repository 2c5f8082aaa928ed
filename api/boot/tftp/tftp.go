// Package tftp serves the iPXE builds that PXE firmware fetches before
// anything else: firmware speaks nothing but TFTP. It serves those few
// files read-only from one directory and nothing else, so a machine on the
// provisioning network can neither write here nor read what lies around.
package tftp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/pin/tftp/v3"
)

// DefaultDir is where Debian's ipxe package puts its builds.
const DefaultDir = "/usr/lib/ipxe"

// Files are the iPXE builds the DHCP server hands out: undionly.kpxe for
// BIOS, snponly.efi and ipxe.efi for UEFI.
func Files() []string {
	return []string{"undionly.kpxe", "snponly.efi", "ipxe.efi"}
}

// Config is one TFTP server.
type Config struct {
	// Dir holds the files; empty means DefaultDir.
	Dir string
	// Files are the names served; empty means Files().
	Files  []string
	Logger *slog.Logger
}

// Server serves files to netbooting firmware.
type Server struct {
	cfg Config
}

// New builds the server.
func New(cfg Config) *Server {
	if cfg.Dir == "" {
		cfg.Dir = DefaultDir
	}
	if len(cfg.Files) == 0 {
		cfg.Files = Files()
	}
	return &Server{cfg: cfg}
}

// Serve answers on conn until ctx ends, then waits for transfers in
// flight. Each transfer gets a socket of its own (RFC 1350's transfer
// ID), opened by the goroutine calling Serve, in its network namespace.
func (s *Server) Serve(ctx context.Context, conn net.PacketConn) error {
	srv := tftp.NewServer(s.read, nil)
	srv.SetHook(hook{s.cfg.Logger})
	// Firmware retries slowly on its own; a lost ACK should not cost the
	// five-second default.
	srv.SetTimeout(2 * time.Second)
	s.cfg.Logger.Info("TFTP server listening", "address", conn.LocalAddr().String(), "dir", s.cfg.Dir, "files", s.cfg.Files)
	stopped, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		select {
		case <-ctx.Done():
			srv.Shutdown()
		case <-stopped:
		}
	}()
	err := srv.Serve(conn)
	close(stopped)
	<-done
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// read serves one request. Names are compared whole against the set,
// never joined to the directory as given, so no path reaches a file
// outside it.
func (s *Server) read(name string, rf io.ReaderFrom) error {
	peer := ""
	if t, ok := rf.(tftp.OutgoingTransfer); ok {
		addr := t.RemoteAddr()
		peer = addr.String()
	}
	if !slices.Contains(s.cfg.Files, name) {
		s.cfg.Logger.Warn("TFTP: refused", "file", name, "client", peer, "reason", "not one of the files served")
		return errors.New("file not found")
	}
	f, err := os.Open(filepath.Join(s.cfg.Dir, name))
	if err != nil {
		s.cfg.Logger.Error("TFTP: cannot open a served file", "file", name, "client", peer, "error", err)
		return errors.New("file not found")
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil {
		// The tsize option lets firmware size its buffer up front.
		if t, ok := rf.(tftp.OutgoingTransfer); ok {
			t.SetSize(fi.Size())
		}
	}
	s.cfg.Logger.Info("TFTP: sending", "file", name, "client", peer)
	if _, err := rf.ReadFrom(f); err != nil {
		return fmt.Errorf("sending %s: %w", name, err)
	}
	return nil
}

// hook logs how each transfer ended.
type hook struct{ log *slog.Logger }

func (h hook) OnSuccess(st tftp.TransferStats) {
	h.log.Info("TFTP: sent", "file", st.Filename, "client", st.RemoteAddr.String(),
		"duration", st.Duration.String(), "datagrams", st.DatagramsSent)
}

func (h hook) OnFailure(st tftp.TransferStats, err error) {
	if st.Filename == "" {
		// Not a transfer: a packet that was no request.
		h.log.Debug("TFTP: bad packet", "client", st.RemoteAddr.String(), "error", err)
		return
	}
	if strings.Contains(err.Error(), "code=8") {
		// Error 8 is the client declining the options (RFC 2347). UEFI
		// firmware does it on purpose: it asks for the size, then fetches.
		h.log.Info("TFTP: client ended the transfer after the options", "file", st.Filename, "client", st.RemoteAddr.String())
		return
	}
	h.log.Warn("TFTP: transfer failed", "file", st.Filename, "client", st.RemoteAddr.String(), "error", err)
}
