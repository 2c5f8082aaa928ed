//go:build !agent

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/metalflow/metalflow/api/boot"
	"github.com/metalflow/metalflow/api/boot/dhcp"
	"github.com/metalflow/metalflow/api/boot/tftp"
	"github.com/metalflow/metalflow/api/images"
	"github.com/metalflow/metalflow/internal/stack"
	"github.com/metalflow/metalflow/internal/telemetry"
)

// netbootFlags configure what starts a machine's netboot before the boot
// service's script: DHCP and TFTP on the provisioning network.
type netbootFlags struct {
	dhcpInterface string
	dhcpMode      string
	dhcpRange     string
	dhcpLease     time.Duration
	dhcpRouter    string
	dhcpDNS       string
	uefiBootFile  string
	tftpListen    string
	tftpDir       string
}

// register adds the flags; tftpListen is the default TFTP address, empty
// for off.
func (n *netbootFlags) register(fs *flag.FlagSet, tftpListen string) {
	fs.StringVar(&n.dhcpInterface, "dhcp-interface", "", "provisioning network interface to answer netbooting machines' DHCP on (needs root); empty turns DHCP off")
	fs.StringVar(&n.dhcpMode, "dhcp-mode", string(dhcp.Proxy), "proxy: add PXE options to the site DHCP server's offers; full: also lease addresses (a lab without a DHCP server)")
	fs.StringVar(&n.dhcpRange, "dhcp-range", "", "full mode: addresses to lease, FIRST-LAST, on --dhcp-interface's network")
	fs.DurationVar(&n.dhcpLease, "dhcp-lease-time", time.Hour, "full mode: lease time")
	fs.StringVar(&n.dhcpRouter, "dhcp-router", "", "full mode: default gateway handed out; empty hands out none")
	fs.StringVar(&n.dhcpDNS, "dhcp-dns", "", "full mode: comma-separated DNS servers handed out")
	fs.StringVar(&n.uefiBootFile, "uefi-boot-file", "snponly.efi", "iPXE build for UEFI firmware: snponly.efi (the firmware's NIC driver) or ipxe.efi (iPXE's own drivers)")
	fs.StringVar(&n.tftpListen, "tftp-listen", tftpListen, "TFTP listen address for the iPXE builds (port 69 needs root); empty turns TFTP off")
	fs.StringVar(&n.tftpDir, "tftp-dir", tftp.DefaultDir, "directory of the iPXE builds (Debian's ipxe package)")
}

// config maps the flags to the servers' configs.
func (n *netbootFlags) config() (stack.NetbootConfig, error) {
	cfg := stack.NetbootConfig{TFTPAddress: n.tftpListen, TFTP: tftp.Config{Dir: n.tftpDir}}
	if n.uefiBootFile != "snponly.efi" && n.uefiBootFile != "ipxe.efi" {
		return cfg, usageError{fmt.Errorf("--uefi-boot-file %q: want snponly.efi or ipxe.efi", n.uefiBootFile)}
	}
	if n.dhcpInterface == "" {
		return cfg, nil
	}
	d := &dhcp.Config{Interface: n.dhcpInterface, Mode: dhcp.Mode(n.dhcpMode), UEFIBootFile: n.uefiBootFile}
	switch d.Mode {
	case dhcp.Proxy:
	case dhcp.Full:
		first, last, ok := strings.Cut(n.dhcpRange, "-")
		var err error
		if d.Leases.First, err = netip.ParseAddr(strings.TrimSpace(first)); err == nil && ok {
			d.Leases.Last, err = netip.ParseAddr(strings.TrimSpace(last))
		}
		if err != nil || !ok {
			return cfg, usageError{fmt.Errorf("--dhcp-range %q: want FIRST-LAST, e.g. 10.0.0.100-10.0.0.199", n.dhcpRange)}
		}
		d.Leases.Duration = n.dhcpLease
		if n.dhcpRouter != "" {
			if d.Leases.Router, err = netip.ParseAddr(n.dhcpRouter); err != nil {
				return cfg, usageError{fmt.Errorf("--dhcp-router: %w", err)}
			}
		}
		for s := range strings.SplitSeq(n.dhcpDNS, ",") {
			if s = strings.TrimSpace(s); s == "" {
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return cfg, usageError{fmt.Errorf("--dhcp-dns: %w", err)}
			}
			d.Leases.DNS = append(d.Leases.DNS, a)
		}
	default:
		return cfg, usageError{fmt.Errorf("--dhcp-mode %q: want proxy or full", n.dhcpMode)}
	}
	// Firmware fetches iPXE from the TFTP address if it names one, else
	// from the DHCP server's own.
	if host, _, err := net.SplitHostPort(n.tftpListen); err == nil {
		if a, err := netip.ParseAddr(host); err == nil && !a.IsUnspecified() {
			d.TFTPServer = a
		}
	}
	cfg.DHCP = d
	return cfg, nil
}

// runBoot serves netbooting machines apart from the API, next to them:
// DHCP, TFTP and the boot service's HTTP.
func runBoot(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		lf           logFlags
		tf           temporalFlags
		bf           bootFlags
		nf           netbootFlags
		imf          imageFlags
		df           dataFlags
		inventoryURL string
		httpAddr     string
	)
	fs := flag.NewFlagSet("boot", flag.ContinueOnError)
	fs.SetOutput(stderr)
	lf.register(fs)
	tf.register(fs)
	bf.register(fs)
	fs.Lookup("public-url").Usage = "URL machines on the provisioning network reach --http-listen at, e.g. http://10.0.0.1:8081 (required)"
	nf.register(fs, ":69")
	imf.register(fs, "", "directory of uploaded OS images, the API's own or a copy of it (URL images are proxied from their origin; default: images/ in --data)")
	df.register(fs)
	fs.StringVar(&inventoryURL, "inventory-db", "", "inventory database the API uses: postgres://… or a SQLite file path (default: metalflow.db in --data)")
	fs.StringVar(&httpAddr, "http-listen", ":8081", "listen address of the iPXE script, NoCloud seeds and phone-home")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if bf.publicURL == "" {
		return usageError{errors.New("--public-url is required: machines are told to fetch their script there")}
	}
	netboot, err := nf.config()
	if err != nil {
		return err
	}
	ic, err := imf.config()
	if err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	if inventoryURL == "" {
		if inventoryURL, err = df.file("metalflow.db"); err != nil {
			return err
		}
	}
	if ic.Dir == "" {
		if ic.Dir, err = df.file("images"); err != nil {
			return err
		}
	}
	inv, err := stack.OpenInventory(ctx, log, inventoryURL, "")
	if err != nil {
		return err
	}
	defer func() { _ = inv.Close() }()
	// Phone-home signals the lifecycle; the client is lazy, so machines
	// still get their scripts while Temporal is away.
	c, metrics, err := stack.NewTemporalClient(log, telemetry.NewRegistry(), tf.hostPort, tf.namespace)
	if err != nil {
		return err
	}
	defer func() { _ = metrics.Close() }()
	defer c.Close()
	bc := bf.config(httpAddr)
	// The deploy agent fetches its image here, next to it, not from the API.
	imgs := images.New(images.Config{Dir: ic.Dir, Open: ic.Open, Catalog: inv, Grants: inv, Logger: log})
	svc := boot.New(boot.Config{
		PublicURL: bc.PublicURL, KernelURL: bc.KernelURL, InitrdURL: bc.InitrdURL, KernelArgs: bc.KernelArgs,
		AgentKernel: bc.AgentKernel, AgentInitrd: bc.AgentInitrd, AgentDiskBenchmarkMiB: bc.AgentDiskBenchmarkMiB,
		Store: inv, Lifecycles: c, Logger: log,
		Mounts: []func(*echo.Group){imgs.MountBoot},
	})
	ln, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return fmt.Errorf("boot service listen on %s: %w", httpAddr, err)
	}
	log.Info("boot service listening", "address", ln.Addr().String(), "publicURL", bc.PublicURL)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		err := stack.ServeNetboot(ctx, log, netboot, svc, bc.PublicURL)
		cancel()
		errc <- err
	}()
	err = svc.Serve(ctx, ln)
	cancel()
	return errors.Join(err, <-errc)
}
