package lbnode

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/metalflow/metalflow/bpf"
	"github.com/metalflow/metalflow/lbnode/maglev"
)

// Layout constants shared with bpf/lb.h.
const (
	abiVersion   = 2 // 2: drop reason "malformed" grew drop_stats
	maxVIPs      = 512
	maxBackends  = 4096
	maxMembers   = 65536
	familyV4     = 4
	familyV6     = 6
	backendValid = 1
	memberDrain  = 1
)

// Defaults for Config fields left zero.
const (
	DefaultPinRoot           = "/sys/fs/bpf/metalflow"
	DefaultMTU               = 1500
	DefaultFlowTableSize     = 65536
	DefaultSYNFloodThreshold = 50_000
	DefaultGUEPort           = 6080
)

// Config describes one load balancer node's data plane.
type Config struct {
	// Interface to attach to. Empty loads the program without attaching or
	// pinning it, for packet tests and benchmarks.
	Interface string
	Mode      AttachMode
	// PinRoot is a directory on a bpf filesystem; the node pins under
	// PinRoot/Interface.
	PinRoot string
	// NextHopMAC is where encapsulated packets go: the router in front of
	// the node. Required with an Interface.
	NextHopMAC net.HardwareAddr
	// MTU is the largest outer IP packet the path to backends carries.
	MTU int
	// RingSize is the Maglev table size, prime. Every node must agree.
	RingSize uint32
	// Seed keys the Maglev tables and the flow hash. Every node must agree.
	Seed uint32
	// FlowTableSize is the LRU flow table's capacity, shared by all CPUs.
	FlowTableSize int
	// SYNFloodThreshold is SYNs per second per CPU above which new flows
	// stop entering the flow table. 0 turns the protection off.
	SYNFloodThreshold uint32
	// GUEPort is the UDP destination port of GUE-encapsulated packets; the
	// backends' decap programs must use the same.
	GUEPort uint16
	// EncapSourceV4 and EncapSourceV6 are the outer source prefixes; the
	// low 16 (IPv4) or 32 (IPv6) bits come from the flow hash.
	EncapSourceV4 netip.Addr
	EncapSourceV6 netip.Addr
	Logger        *slog.Logger
}

func (c Config) withDefaults() (Config, error) {
	if c.Mode == "" {
		c.Mode = AttachAuto
	}
	if _, err := ParseAttachMode(string(c.Mode)); err != nil {
		return c, err
	}
	if c.PinRoot == "" {
		c.PinRoot = DefaultPinRoot
	}
	if c.MTU == 0 {
		c.MTU = DefaultMTU
	}
	if c.MTU < 1280+40 || c.MTU > 65535 {
		return c, fmt.Errorf("MTU %d: must leave room for a 1280-byte IPv6 packet plus encapsulation and fit 65535", c.MTU)
	}
	if c.RingSize == 0 {
		c.RingSize = maglev.DefaultSize
	}
	if _, err := maglev.Build(nil, c.RingSize, 0); err != nil {
		return c, err
	}
	if c.FlowTableSize == 0 {
		c.FlowTableSize = DefaultFlowTableSize
	}
	if c.FlowTableSize < 0 {
		return c, errors.New("flow table size must be positive")
	}
	if c.GUEPort == 0 {
		c.GUEPort = DefaultGUEPort
	}
	if c.SYNFloodThreshold == 0 {
		c.SYNFloodThreshold = DefaultSYNFloodThreshold
	}
	if !c.EncapSourceV4.IsValid() {
		c.EncapSourceV4 = netip.MustParseAddr("172.16.0.0")
	}
	if !c.EncapSourceV6.IsValid() {
		c.EncapSourceV6 = netip.MustParseAddr("fd00:6d66::")
	}
	if !c.EncapSourceV4.Is4() || !c.EncapSourceV6.Is6() || c.EncapSourceV6.Is4In6() {
		return c, errors.New("encapsulation sources must be an IPv4 and an IPv6 address")
	}
	if c.NextHopMAC != nil && len(c.NextHopMAC) != 6 {
		return c, fmt.Errorf("next hop MAC %s is not an Ethernet address", c.NextHopMAC)
	}
	if c.Interface != "" && c.NextHopMAC == nil {
		return c, errors.New("a next hop MAC is needed to attach to an interface")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return c, nil
}

// Node is one load balancer node's data plane: the loaded program, its maps,
// and what the node knows about its VIPs and backends.
type Node struct {
	cfg      Config
	log      *slog.Logger
	objs     bpf.LbObjects
	ringSpec *ebpf.MapSpec
	xdp      link.Link
	mode     AttachMode
	pinDir   string
	adopted  bool

	mu        sync.Mutex
	vips      map[VIPKey]*vipState
	vipNums   map[uint32]VIPKey
	backends  map[netip.Addr]*backendSlot
	indexAddr map[uint32]netip.Addr
	lastIndex uint32
}

type vipState struct {
	num      uint32
	flags    VIPFlags
	backends []Backend
}

type backendSlot struct {
	index uint32
	refs  int
}

// Open loads the data plane and, with an Interface, attaches it. If an
// earlier process left the data plane pinned for that interface, Open adopts
// it instead: forwarding never stops, and the VIPs and backends it was
// serving are known again.
func Open(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("lifting the memlock limit for BPF maps: %w", err)
	}
	spec, err := bpf.LoadLb()
	if err != nil {
		return nil, fmt.Errorf("reading the embedded data plane: %w", err)
	}
	spec.Maps[bpf.LbMapMaglevRings].InnerMap.MaxEntries = cfg.RingSize
	spec.Maps[bpf.LbMapFlows].MaxEntries = uint32(cfg.FlowTableSize)
	if err := spec.Variables[bpf.LbVarRingSize].Set(cfg.RingSize); err != nil {
		return nil, err
	}
	if err := spec.Variables[bpf.LbVarGuePort].Set(cfg.GUEPort); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:       cfg,
		log:       cfg.Logger,
		ringSpec:  spec.Maps[bpf.LbMapMaglevRings].InnerMap.Copy(),
		vips:      map[VIPKey]*vipState{},
		vipNums:   map[uint32]VIPKey{},
		backends:  map[netip.Addr]*backendSlot{},
		indexAddr: map[uint32]netip.Addr{},
	}
	n.ringSpec.Name = "maglev_ring"

	if cfg.Interface == "" {
		if err := spec.LoadAndAssign(&n.objs, nil); err != nil {
			return nil, fmt.Errorf("loading the data plane: %w", err)
		}
		if err := n.writeConfig(); err != nil {
			n.objs.Close()
			return nil, err
		}
		return n, nil
	}

	iface, err := net.InterfaceByName(cfg.Interface)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", cfg.Interface, err)
	}
	if err := checkBPFFS(cfg.PinRoot); err != nil {
		return nil, err
	}
	n.pinDir = filepath.Join(cfg.PinRoot, cfg.Interface)
	adopt, err := pinsFitInterface(n.pinDir, iface, n.log)
	if err != nil {
		return nil, err
	}
	if adopt {
		if err := n.adopt(); err != nil {
			return nil, fmt.Errorf("adopting the data plane pinned at %s: %w", n.pinDir, err)
		}
		return n, nil
	}
	// start clears whatever is pinned, stale pins included.
	if err := n.start(spec, iface.Index); err != nil {
		return nil, err
	}
	return n, nil
}

// Mode is how the program ended up attached ("" when not attached, or when
// adopted from an earlier process, which decided it).
func (n *Node) Mode() AttachMode { return n.mode }

// Adopted says whether Open found the data plane already running.
func (n *Node) Adopted() bool { return n.adopted }

// Program is the balancer program, for packet tests and benchmarks.
func (n *Node) Program() *ebpf.Program { return n.objs.XdpBalance }

// Attached says whether the program still runs on the interface. Deleting
// the interface, or detaching the link from outside, leaves a node whose maps
// answer but which forwards nothing; only the link knows.
func (n *Node) Attached() (bool, error) {
	if n.xdp == nil {
		return false, nil
	}
	info, err := n.xdp.Info()
	if err != nil {
		return false, fmt.Errorf("reading the XDP link: %w", err)
	}
	xdp := info.XDP()
	if xdp == nil {
		return false, errors.New("the node's link is not an XDP link")
	}
	return xdp.Ifindex != 0, nil
}

// PassProgram is a program that passes every packet: the benchmark baseline.
func (n *Node) PassProgram() *ebpf.Program { return n.objs.XdpPass }

func (n *Node) writeConfig() error {
	c := bpf.LbLbConfig{
		AbiVersion:        abiVersion,
		RingSize:          n.cfg.RingSize,
		GuePort:           n.cfg.GUEPort,
		Mtu:               uint32(n.cfg.MTU),
		SynFloodThreshold: n.cfg.SYNFloodThreshold,
		HashSeed:          n.cfg.Seed,
		EncapSrc4:         encodeAddr(n.cfg.EncapSourceV4)[0],
		EncapSrc6:         encodeAddr(n.cfg.EncapSourceV6),
	}
	copy(c.NextHopMac[:], n.cfg.NextHopMAC)
	if err := n.objs.Config.Put(uint32(0), c); err != nil {
		return fmt.Errorf("writing the data plane config: %w", err)
	}
	return nil
}

// SetNextHop changes the MAC address encapsulated packets are sent to.
func (n *Node) SetNextHop(mac net.HardwareAddr) error {
	if len(mac) != 6 {
		return fmt.Errorf("next hop MAC %s is not an Ethernet address", mac)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.cfg.NextHopMAC
	n.cfg.NextHopMAC = slices.Clone(mac)
	if err := n.writeConfig(); err != nil {
		n.cfg.NextHopMAC = old
		return err
	}
	return nil
}

// Close releases this process's hold on the data plane. An attached data
// plane stays pinned and keeps forwarding, ready for the next Open to adopt.
func (n *Node) Close() error {
	var errs []error
	if n.xdp != nil {
		errs = append(errs, n.xdp.Close())
		n.xdp = nil
	}
	errs = append(errs, n.objs.Close())
	return errors.Join(errs...)
}

// Detach stops forwarding on the interface and removes the pins.
func (n *Node) Detach() error {
	var errs []error
	if n.xdp != nil {
		errs = append(errs, n.xdp.Unpin())
	}
	errs = append(errs, n.Close())
	if n.pinDir != "" {
		errs = append(errs, removePins(n.pinDir))
	}
	return errors.Join(errs...)
}

// attach links prog to the interface in the wanted mode. sendsBack says
// whether prog sends frames back out of the interface (XDP_TX).
func attach(prog *ebpf.Program, ifindex int, mode AttachMode, sendsBack bool, log *slog.Logger, iface string) (link.Link, AttachMode, error) {
	flags := map[AttachMode]link.XDPAttachFlags{AttachNative: link.XDPDriverMode, AttachGeneric: link.XDPGenericMode}
	try := func(m AttachMode) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags[m]})
	}
	if mode == AttachAuto && sendsBack {
		// Native XDP on a veth attaches fine, then every XDP_TX frame
		// vanishes unless the peer runs an XDP program too: a lab where
		// every connection times out and nothing says why.
		if driver, err := interfaceDriver(iface); err == nil && driver == "veth" {
			log.Info("attaching XDP in generic mode: in native mode a veth drops the frames the program sends back unless its peer runs XDP too; --xdp-mode native to insist",
				"iface", iface, "driver", driver)
			mode = AttachGeneric
		}
	}
	if mode != AttachAuto {
		l, err := try(mode)
		if err != nil {
			return nil, "", fmt.Errorf("attaching XDP in %s mode to %s: %w", mode, iface, err)
		}
		return l, mode, nil
	}
	l, err := try(AttachNative)
	if err == nil {
		return l, AttachNative, nil
	}
	log.Warn("native XDP unavailable, falling back to generic mode", "iface", iface, "err", err)
	l, err = try(AttachGeneric)
	if err != nil {
		return nil, "", fmt.Errorf("attaching XDP in generic mode to %s: %w", iface, err)
	}
	return l, AttachGeneric, nil
}

// interfaceDriver is the name of the driver behind iface, as `ethtool -i`
// shows it, in the calling thread's network namespace. It asks the kernel
// rather than /sys, which shows another namespace's interfaces after a
// setns without a fresh sysfs.
func interfaceDriver(iface string) (string, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", err
	}
	defer unix.Close(fd)
	info, err := unix.IoctlGetEthtoolDrvinfo(fd, iface)
	if err != nil {
		return "", fmt.Errorf("asking %s for its driver: %w", iface, err)
	}
	return unix.ByteSliceToString(info.Driver[:]), nil
}

const bpfFSMagic = 0xcafe4a11

func checkBPFFS(dir string) error {
	probe, err := existingPart(dir)
	if err != nil {
		return err
	}
	var st unix.Statfs_t
	if err := unix.Statfs(probe, &st); err != nil {
		return fmt.Errorf("checking %s: %w", probe, err)
	}
	if uint32(st.Type) != bpfFSMagic {
		return fmt.Errorf("%s is not on a bpf filesystem (mount one with `mount -t bpf bpf /sys/fs/bpf`)", probe)
	}
	return nil
}

// existingPart is dir or, where dir is still to be created, its nearest
// ancestor that exists: the filesystem dir will be on.
func existingPart(dir string) (string, error) {
	probe := dir
	for {
		var st unix.Stat_t
		err := unix.Stat(probe, &st)
		if err == nil {
			return probe, nil
		}
		if !errors.Is(err, unix.ENOENT) {
			return "", fmt.Errorf("checking %s: %w", probe, err)
		}
		parent := filepath.Dir(probe)
		if parent == probe {
			return "", fmt.Errorf("%s does not exist", dir)
		}
		probe = parent
	}
}

// MountBPFFS mounts a bpf filesystem at dir unless one is already there.
func MountBPFFS(dir string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err == nil && uint32(st.Type) == bpfFSMagic {
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("bpf", dir, "bpf", 0, "mode=0700"); err != nil {
		return fmt.Errorf("mounting a bpf filesystem at %s: %w", dir, err)
	}
	return nil
}
