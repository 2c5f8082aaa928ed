package stack

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"

	"github.com/metalflow/metalflow/api/boot"
	"github.com/metalflow/metalflow/api/boot/dhcp"
	"github.com/metalflow/metalflow/api/boot/tftp"
)

// NetbootConfig is what starts a machine's netboot before the boot
// service's iPXE script: DHCP, and TFTP for the iPXE builds. Both need
// the provisioning network's interface and root, so each is off unless
// asked for.
type NetbootConfig struct {
	// DHCP is off if nil; ServeNetboot fills in its Installs, and its
	// ScriptURL and Logger if empty.
	DHCP *dhcp.Config
	// TFTPAddress is the TFTP server's listen address; empty is off.
	TFTPAddress string
	TFTP        tftp.Config
}

// ServeNetboot runs the servers cfg asks for until ctx ends or one fails.
// DHCP asks installs whether a machine has an install pending and hands
// iPXE the boot service's script at publicURL. The ports are bound before
// anything is served, so a port taken or an interface missing fails at
// once.
func ServeNetboot(ctx context.Context, log *slog.Logger, cfg NetbootConfig, installs dhcp.Installs, publicURL string) error {
	var parts []func(context.Context) error
	if cfg.TFTPAddress != "" {
		conn, err := net.ListenPacket("udp4", cfg.TFTPAddress)
		if err != nil {
			return fmt.Errorf("TFTP listen on %s: %w", cfg.TFTPAddress, err)
		}
		defer conn.Close()
		if cfg.TFTP.Logger == nil {
			cfg.TFTP.Logger = log
		}
		srv := tftp.New(cfg.TFTP)
		parts = append(parts, func(ctx context.Context) error { return srv.Serve(ctx, conn) })
	}
	if cfg.DHCP != nil {
		d := *cfg.DHCP
		d.Installs = installs
		if d.ScriptURL == "" {
			d.ScriptURL = strings.TrimRight(publicURL, "/") + boot.ScriptPath
		}
		if d.Logger == nil {
			d.Logger = log
		}
		srv, err := dhcp.Listen(d)
		if err != nil {
			return err
		}
		parts = append(parts, srv.Serve)
	}
	if len(parts) == 0 {
		// Neither is asked for (the site's DHCP points at the boot
		// service itself): nothing to serve, but nothing has ended either.
		<-ctx.Done()
		return nil
	}
	return runAll(ctx, parts...)
}

// runAll runs parts until ctx ends or one fails, which stops the others.
func runAll(ctx context.Context, parts ...func(context.Context) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(parts))
	for i, part := range parts {
		wg.Go(func() {
			if errs[i] = part(ctx); errs[i] != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
