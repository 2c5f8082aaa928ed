package lbnode

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"

	"github.com/metalflow/metalflow/bpf"
)

// DecapConfig describes the backend-side decapsulation program.
type DecapConfig struct {
	// Interface to attach to; empty loads without attaching, for tests.
	Interface string
	Mode      AttachMode
	// PinRoot as for Config; the program pins under PinRoot/Interface/decap.
	PinRoot string
	// GUEPort is the UDP port GUE packets arrive on (default 6080).
	GUEPort uint16
	Logger  *slog.Logger
}

// Decap strips the load balancer's outer IP header on a backend, so the
// stack sees the client's packet addressed to the VIP on loopback.
type Decap struct {
	objs struct {
		Program *ebpf.Program `ebpf:"xdp_decap"`
		Events  *ebpf.Map     `ebpf:"event_stats"`
		Drops   *ebpf.Map     `ebpf:"drop_stats"`
	}
	xdp    link.Link
	mode   AttachMode
	pinDir string
}

// DecapStats counts decapsulated packets: IP-in-IP by outer IP version,
// and GUE.
type DecapStats struct {
	IPv4 Counter
	IPv6 Counter
	GUE  Counter
}

const decapPinDir = "decap"

// AttachDecap loads the decap program and attaches it, or adopts the one an
// earlier process pinned for the interface.
func AttachDecap(cfg DecapConfig) (*Decap, error) {
	if cfg.Mode == "" {
		cfg.Mode = AttachAuto
	}
	if _, err := ParseAttachMode(string(cfg.Mode)); err != nil {
		return nil, err
	}
	if cfg.PinRoot == "" {
		cfg.PinRoot = DefaultPinRoot
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("lifting the memlock limit for BPF maps: %w", err)
	}
	d := &Decap{}
	var iface *net.Interface
	if cfg.Interface != "" {
		var err error
		if iface, err = net.InterfaceByName(cfg.Interface); err != nil {
			return nil, fmt.Errorf("interface %s: %w", cfg.Interface, err)
		}
		if err := checkBPFFS(cfg.PinRoot); err != nil {
			return nil, err
		}
		d.pinDir = filepath.Join(cfg.PinRoot, cfg.Interface, decapPinDir)
		adopt, err := pinsFitInterface(d.pinDir, iface, cfg.Logger)
		if err != nil {
			return nil, err
		}
		if adopt {
			return d, d.adopt()
		}
		if err := d.removePins(); err != nil {
			return nil, err
		}
	}
	spec, err := bpf.LoadLb()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded decap program: %w", err)
	}
	if cfg.GUEPort == 0 {
		cfg.GUEPort = DefaultGUEPort
	}
	if err := spec.Variables[bpf.LbVarGuePort].Set(cfg.GUEPort); err != nil {
		return nil, err
	}
	if err := spec.LoadAndAssign(&d.objs, nil); err != nil {
		return nil, fmt.Errorf("loading the decap program: %w", err)
	}
	if cfg.Interface == "" {
		return d, nil
	}
	if err := d.pin(); err != nil {
		d.Close()
		_ = d.removePins()
		return nil, err
	}
	l, mode, err := attach(d.objs.Program, iface.Index, cfg.Mode, false, cfg.Logger, cfg.Interface)
	if err == nil {
		if err = l.Pin(filepath.Join(d.pinDir, linkPin)); err != nil {
			l.Close()
		}
	}
	if err != nil {
		d.Close()
		_ = d.removePins()
		return nil, err
	}
	d.xdp, d.mode = l, mode
	cfg.Logger.Info("XDP decap attached", "iface", cfg.Interface, "mode", mode)
	return d, nil
}

func (d *Decap) pin() error {
	if err := os.MkdirAll(d.pinDir, 0o700); err != nil {
		return err
	}
	if err := d.objs.Events.Pin(filepath.Join(d.pinDir, bpf.LbMapEventStats)); err != nil {
		return err
	}
	return d.objs.Drops.Pin(filepath.Join(d.pinDir, bpf.LbMapDropStats))
}

func (d *Decap) adopt() (err error) {
	defer func() {
		if err != nil {
			d.Close()
		}
	}()
	if d.objs.Events, err = ebpf.LoadPinnedMap(filepath.Join(d.pinDir, bpf.LbMapEventStats), nil); err != nil {
		return err
	}
	if d.objs.Drops, err = ebpf.LoadPinnedMap(filepath.Join(d.pinDir, bpf.LbMapDropStats), nil); err != nil {
		return err
	}
	d.xdp, err = link.LoadPinnedLink(filepath.Join(d.pinDir, linkPin), nil)
	return err
}

func (d *Decap) removePins() error {
	var errs []error
	for _, name := range []string{linkPin, bpf.LbMapEventStats, bpf.LbMapDropStats, ""} {
		if err := os.Remove(filepath.Join(d.pinDir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	_ = os.Remove(filepath.Dir(d.pinDir))
	return errors.Join(errs...)
}

// Program is the decap program, for packet tests.
func (d *Decap) Program() *ebpf.Program { return d.objs.Program }

// Mode is how the program was attached ("" if adopted or not attached).
func (d *Decap) Mode() AttachMode { return d.mode }

// Stats reads the decap counters.
func (d *Decap) Stats() (DecapStats, error) {
	v4, err := readCounter(d.objs.Events, evDecapV4)
	if err != nil {
		return DecapStats{}, err
	}
	v6, err := readCounter(d.objs.Events, evDecapV6)
	if err != nil {
		return DecapStats{}, err
	}
	gue, err := readCounter(d.objs.Events, evDecapGUE)
	return DecapStats{IPv4: v4, IPv6: v6, GUE: gue}, err
}

// Close lets go of the program; if attached, it stays attached and pinned.
func (d *Decap) Close() error {
	var errs []error
	if d.xdp != nil {
		errs = append(errs, d.xdp.Close())
		d.xdp = nil
	}
	errs = append(errs, d.objs.Program.Close(), d.objs.Events.Close(), d.objs.Drops.Close())
	return errors.Join(errs...)
}

// Detach removes the program from the interface and deletes its pins.
func (d *Decap) Detach() error {
	var errs []error
	if d.xdp != nil {
		errs = append(errs, d.xdp.Unpin())
	}
	errs = append(errs, d.Close())
	if d.pinDir != "" {
		errs = append(errs, d.removePins())
	}
	return errors.Join(errs...)
}

// OpenPinnedDecap takes hold of the decap program pinned for iface, failing
// if there is none.
func OpenPinnedDecap(pinRoot, iface string) (*Decap, error) {
	d := &Decap{pinDir: filepath.Join(pinRoot, iface, decapPinDir)}
	if _, err := os.Stat(filepath.Join(d.pinDir, linkPin)); err != nil {
		return nil, fmt.Errorf("no decap program pinned for %s under %s", iface, pinRoot)
	}
	if err := d.adopt(); err != nil {
		return nil, err
	}
	return d, nil
}
