package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/metalflow/metalflow/lbnode"
)

// runLBNode is `metalflow lbnode`: the XDP load balancer data plane run
// standalone from a YAML file, without Temporal.
func runLBNode(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lbnode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	iface := fs.String("iface", "", "interface the load balancer receives VIP traffic on and sends it back out of")
	configPath := fs.String("config", "", "YAML file with nextHopMAC and vips; SIGHUP reloads it")
	mode := fs.String("xdp-mode", string(lbnode.AttachAuto), "native, generic or auto (native, falling back to generic)")
	pinRoot := fs.String("pin-root", lbnode.DefaultPinRoot, "bpf filesystem directory the data plane is pinned under")
	stats := fs.Bool("stats", false, "print the counters of the data plane running on --iface and exit")
	detach := fs.Bool("detach", false, "remove the data plane from --iface and exit (forwarding stops)")
	statsEvery := fs.Duration("stats-interval", 0, "with --config, print counters this often (0 = never)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: metalflow lbnode --iface IF (--config FILE | --stats | --detach) [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("lbnode: unexpected arguments %q", fs.Args())
	}
	if *iface == "" {
		return errors.New("lbnode: --iface is required")
	}
	xdpMode, err := lbnode.ParseAttachMode(*mode)
	if err != nil {
		return fmt.Errorf("lbnode: %w", err)
	}
	modes := 0
	for _, set := range []bool{*configPath != "", *stats, *detach} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return errors.New("lbnode: give exactly one of --config, --stats or --detach")
	}
	if os.Geteuid() != 0 {
		return errors.New("lbnode: must run as root: it loads XDP programs and pins BPF maps")
	}
	if err := ensurePinRoot(*pinRoot); err != nil {
		return fmt.Errorf("lbnode: %w", err)
	}

	switch {
	case *stats:
		s, err := lbnode.ReadPinnedStats(*pinRoot, *iface)
		if err != nil {
			return fmt.Errorf("lbnode: %w", err)
		}
		return lbnode.WriteStats(stdout, s)
	case *detach:
		if err := lbnode.DetachPinned(*pinRoot, *iface); err != nil {
			return fmt.Errorf("lbnode: %w", err)
		}
		fmt.Fprintf(stdout, "load balancer detached from %s\n", *iface)
		return nil
	}

	log := slog.New(slog.NewTextHandler(stderr, nil))
	desired, err := lbnode.ReadConfigFile(*configPath)
	if err != nil {
		return fmt.Errorf("lbnode: %w", err)
	}
	nextHop := desired.NextHopMAC
	if nextHop == nil {
		if nextHop, err = lbnode.LookupGatewayMAC(*iface); err != nil {
			return fmt.Errorf("lbnode: %w", err)
		}
	}
	node, err := lbnode.Open(lbnode.Config{
		Interface:  *iface,
		Mode:       xdpMode,
		PinRoot:    *pinRoot,
		NextHopMAC: nextHop,
		MTU:        desired.MTU,
		Seed:       desired.Seed,
		GUEPort:    desired.GUEPort,
		Logger:     log,

		EncapSourceV4:     desired.EncapSourceV4,
		EncapSourceV6:     desired.EncapSourceV6,
		FlowTableSize:     desired.FlowTableSize,
		SYNFloodThreshold: desired.SYNFloodThreshold,
	})
	if err != nil {
		return fmt.Errorf("lbnode: %w", err)
	}
	// Closing leaves the data plane pinned and forwarding, so a restarted
	// process picks it up without a gap; --detach removes it.
	defer node.Close()
	if err := node.Apply(desired.Services); err != nil {
		return fmt.Errorf("lbnode: applying %s: %w", *configPath, err)
	}
	log.Info("serving", "iface", *iface, "vips", len(desired.Services), "adopted", node.Adopted(), "next_hop", nextHop.String())

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var tick <-chan time.Time
	if *statsEvery > 0 {
		t := time.NewTicker(*statsEvery)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			log.Info("stopping; the data plane stays attached", "iface", *iface)
			return nil
		case <-hup:
			if err := reloadLBNode(node, *configPath, *iface); err != nil {
				log.Error("reload rejected; still serving the previous config", "err", err)
				continue
			}
			log.Info("reloaded", "config", *configPath)
		case <-tick:
			s, err := node.Stats()
			if err != nil {
				log.Error("reading counters", "err", err)
				continue
			}
			_ = lbnode.WriteStats(stdout, s)
		}
	}
}

func reloadLBNode(node *lbnode.Node, path, iface string) error {
	desired, err := lbnode.ReadConfigFile(path)
	if err != nil {
		return err
	}
	if desired.Seed != node.Seed() {
		return fmt.Errorf("seed changed from %d to %d: that moves every flow, so it needs --detach and a restart", node.Seed(), desired.Seed)
	}
	if gue := cmp.Or(desired.GUEPort, lbnode.DefaultGUEPort); gue != node.GUEPort() {
		return fmt.Errorf("guePort changed from %d to %d: that needs --detach and a restart", node.GUEPort(), gue)
	}
	nextHop := desired.NextHopMAC
	if nextHop == nil {
		if nextHop, err = lbnode.LookupGatewayMAC(iface); err != nil {
			return err
		}
	}
	if err := node.Apply(desired.Services); err != nil {
		return err
	}
	if err := node.SetNextHop(nextHop); err != nil {
		return err
	}
	mtu := desired.MTU
	if mtu == 0 {
		mtu = lbnode.DefaultMTU
	}
	return node.SetMTU(mtu)
}

// ensurePinRoot mounts the bpf filesystem at /sys/fs/bpf when the pin root
// lives there and nothing is mounted yet, as on a freshly booted node.
func ensurePinRoot(pinRoot string) error {
	const bpffs = "/sys/fs/bpf"
	if rel, err := filepath.Rel(bpffs, pinRoot); err == nil && filepath.IsLocal(rel) {
		return lbnode.MountBPFFS(bpffs)
	}
	return nil
}
