//go:build !agent

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/metalflow/metalflow/lbnode"
)

// runDecap is `metalflow decap`: it installs the XDP program that strips
// the load balancer's outer header on a backend, pins it so it outlives the
// command, and exits. Where the pins cannot outlive it (inside `ip netns
// exec`, say), it stays in the foreground holding the program until
// SIGTERM or SIGINT, then detaches it.
func runDecap(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("decap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	iface := fs.String("iface", "", "interface encapsulated packets arrive on")
	mode := fs.String("xdp-mode", string(lbnode.AttachAuto), "native, generic or auto (native, falling back to generic)")
	pinRoot := fs.String("pin-root", lbnode.DefaultPinRoot, "bpf filesystem directory the program is pinned under; under `ip netns exec`, one mounted outside /sys, which outlives the command")
	guePort := fs.Uint("gue-port", lbnode.DefaultGUEPort, "UDP port GUE-encapsulated packets arrive on")
	stats := fs.Bool("stats", false, "print how many packets were decapsulated on --iface and exit")
	detach := fs.Bool("detach", false, "remove the program from --iface and exit")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: metalflow decap --iface IF [--stats | --detach] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("decap: unexpected arguments %q", fs.Args())
	}
	if *iface == "" {
		return errors.New("decap: --iface is required")
	}
	xdpMode, err := lbnode.ParseAttachMode(*mode)
	if err != nil {
		return fmt.Errorf("decap: %w", err)
	}
	if *guePort == 0 || *guePort > 65535 {
		return fmt.Errorf("decap: --gue-port %d out of range", *guePort)
	}
	if *stats && *detach {
		return errors.New("decap: --stats and --detach exclude each other")
	}
	if os.Geteuid() != 0 {
		return errors.New("decap: must run as root: it loads an XDP program")
	}
	if err := ensurePinRoot(*pinRoot); err != nil {
		return fmt.Errorf("decap: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}

	if *stats || *detach {
		d, err := lbnode.OpenPinnedDecap(*pinRoot, *iface)
		if err != nil {
			return fmt.Errorf("decap: %w", explainMissingPins(err, *pinRoot))
		}
		if *detach {
			if err := d.Detach(); err != nil {
				return fmt.Errorf("decap: %w", err)
			}
			fmt.Fprintf(stdout, "decap detached from %s\n", *iface)
			return nil
		}
		defer d.Close()
		s, err := d.Stats()
		if err != nil {
			return fmt.Errorf("decap: %w", err)
		}
		fmt.Fprintf(stdout, "decap %s: outer IPv4 %d packets %d bytes, outer IPv6 %d packets %d bytes, GUE %d packets %d bytes\n",
			*iface, s.IPv4.Packets, s.IPv4.Bytes, s.IPv6.Packets, s.IPv6.Bytes, s.GUE.Packets, s.GUE.Bytes)
		return nil
	}

	shortLived := lbnode.ShortLivedPins(*pinRoot)
	log := slog.New(slog.NewTextHandler(stderr, nil))
	d, err := lbnode.AttachDecap(lbnode.DecapConfig{Interface: *iface, Mode: xdpMode, PinRoot: *pinRoot, GUEPort: uint16(*guePort), Logger: log})
	if err != nil {
		return fmt.Errorf("decap: %w", err)
	}
	mode2 := string(d.Mode())
	if mode2 == "" {
		mode2 = "already installed"
	}
	fmt.Fprintf(stdout, "decap on %s (%s); the VIPs must be on lo\n", *iface, mode2)
	if shortLived == "" {
		return d.Close()
	}
	// Exiting would take the program away with the pins, and the backend
	// would answer every tunnelled packet with "protocol unreachable".
	log.Warn("staying in the foreground to keep the decap program attached: "+shortLived+
		"; SIGTERM or Ctrl-C detaches it; to install it and exit, pin on a bpf filesystem that outlives this command with --pin-root",
		"iface", *iface)
	<-ctx.Done()
	if err := d.Detach(); err != nil {
		return fmt.Errorf("decap: %w", err)
	}
	fmt.Fprintf(stdout, "decap detached from %s\n", *iface)
	return nil
}

// explainMissingPins adds to err, which says no pins were found under
// pinRoot, why pins made by another command may be out of sight here.
func explainMissingPins(err error, pinRoot string) error {
	why := lbnode.ShortLivedPins(pinRoot)
	if why == "" {
		return err
	}
	return fmt.Errorf("%w; pins made inside another `ip netns exec` are not visible here: %s. "+
		"Pin on a bpf filesystem mounted outside /sys on the host "+
		"(mkdir -p /run/metalflow/bpf && mount -t bpf bpf /run/metalflow/bpf) and give each command --pin-root /run/metalflow/bpf",
		err, why)
}
