package lbnode

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/metalflow/metalflow/bpf"
)

// Pin names under PinRoot/Interface. The link is pinned last on start, so
// its presence means the rest is complete.
const (
	linkPin    = "link"
	programPin = "xdp_balance"
)

func (n *Node) pinnedMaps() map[string]**ebpf.Map {
	m := &n.objs.LbMaps
	return map[string]**ebpf.Map{
		bpf.LbMapBackendStats: &m.BackendStats,
		bpf.LbMapBackends:     &m.Backends,
		bpf.LbMapConfig:       &m.Config,
		bpf.LbMapDropStats:    &m.DropStats,
		bpf.LbMapEventStats:   &m.EventStats,
		bpf.LbMapFlows:        &m.Flows,
		bpf.LbMapMaglevRings:  &m.MaglevRings,
		bpf.LbMapMembers:      &m.Members,
		bpf.LbMapSynWindows:   &m.SynWindows,
		bpf.LbMapVipAddrs:     &m.VipAddrs,
		bpf.LbMapVipStats:     &m.VipStats,
		bpf.LbMapVips:         &m.Vips,
	}
}

// start loads a fresh data plane, pins it and attaches it.
func (n *Node) start(spec *ebpf.CollectionSpec, ifindex int) (err error) {
	// Leftovers without a link pin are from a start that did not finish.
	if err := removePins(n.pinDir); err != nil {
		return err
	}
	if err := spec.LoadAndAssign(&n.objs, nil); err != nil {
		return fmt.Errorf("loading the data plane: %w", err)
	}
	defer func() {
		if err != nil {
			n.objs.Close()
			_ = removePins(n.pinDir)
		}
	}()
	if err := n.writeConfig(); err != nil {
		return err
	}
	if err := os.MkdirAll(n.pinDir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", n.pinDir, err)
	}
	for name, m := range n.pinnedMaps() {
		if err := (*m).Pin(filepath.Join(n.pinDir, name)); err != nil {
			return fmt.Errorf("pinning map %s: %w", name, err)
		}
	}
	if err := n.objs.XdpBalance.Pin(filepath.Join(n.pinDir, programPin)); err != nil {
		return fmt.Errorf("pinning the program: %w", err)
	}
	l, mode, err := attach(n.objs.XdpBalance, ifindex, n.cfg.Mode, true, n.log, n.cfg.Interface)
	if err != nil {
		return err
	}
	if err := l.Pin(filepath.Join(n.pinDir, linkPin)); err != nil {
		l.Close()
		return fmt.Errorf("pinning the XDP link: %w", err)
	}
	n.xdp, n.mode = l, mode
	n.log.Info("XDP load balancer attached", "iface", n.cfg.Interface, "mode", mode, "pins", n.pinDir)
	return nil
}

// adopt takes over a data plane pinned by an earlier process, and rebuilds
// what that process knew from the maps.
func (n *Node) adopt() (err error) {
	defer func() {
		if err != nil {
			n.Close()
		}
	}()
	for name, m := range n.pinnedMaps() {
		if *m, err = ebpf.LoadPinnedMap(filepath.Join(n.pinDir, name), nil); err != nil {
			return fmt.Errorf("map %s: %w", name, err)
		}
	}
	if n.objs.XdpBalance, err = ebpf.LoadPinnedProgram(filepath.Join(n.pinDir, programPin), nil); err != nil {
		return fmt.Errorf("program: %w", err)
	}
	if n.xdp, err = link.LoadPinnedLink(filepath.Join(n.pinDir, linkPin), nil); err != nil {
		return fmt.Errorf("link: %w", err)
	}

	var running bpf.LbLbConfig
	if err := n.objs.Config.Lookup(uint32(0), &running); err != nil {
		return fmt.Errorf("reading the running config: %w", err)
	}
	switch {
	case running.AbiVersion != abiVersion:
		return fmt.Errorf("running data plane has map layout %d, this build has %d: detach it first", running.AbiVersion, abiVersion)
	case running.RingSize != n.cfg.RingSize:
		return fmt.Errorf("running data plane has Maglev size %d, config asks for %d: detach it first", running.RingSize, n.cfg.RingSize)
	case running.GuePort != n.cfg.GUEPort:
		return fmt.Errorf("running data plane sends GUE to port %d, config asks for %d: detach it first", running.GuePort, n.cfg.GUEPort)
	case running.HashSeed != n.cfg.Seed:
		return fmt.Errorf("running data plane has seed %d, config asks for %d: changing it moves every flow; detach first", running.HashSeed, n.cfg.Seed)
	}
	if err := n.loadState(true); err != nil {
		return err
	}
	if err := n.writeConfig(); err != nil {
		return err
	}
	n.adopted = true
	n.log.Info("adopted the running XDP load balancer", "iface", n.cfg.Interface, "vips", len(n.vips), "backends", len(n.backends))
	return nil
}

// pinsFitInterface says whether dir holds a data plane to adopt for iface:
// its link is pinned and its program runs on iface as the interface is now.
// An interface deleted and re-created under the same name (a re-created
// bond, VF or veth) has a new ifindex, and the program pinned for the old
// one is attached to nothing: adopting it would leave a node that forwards
// nothing and stays unhealthy. Such pins are logged as discarded; the
// caller attaches afresh, clearing them.
func pinsFitInterface(dir string, iface *net.Interface, log *slog.Logger) (bool, error) {
	path := filepath.Join(dir, linkPin)
	if _, err := os.Stat(path); err != nil {
		return false, nil
	}
	l, err := link.LoadPinnedLink(path, nil)
	if err != nil {
		return false, fmt.Errorf("reading the XDP link pinned at %s: %w", path, err)
	}
	defer l.Close()
	info, err := l.Info()
	if err != nil {
		return false, fmt.Errorf("reading the XDP link pinned at %s: %w", path, err)
	}
	xdp := info.XDP()
	if xdp == nil {
		return false, fmt.Errorf("%s is not an XDP link", path)
	}
	if int(xdp.Ifindex) == iface.Index {
		return true, nil
	}
	why := fmt.Sprintf("it runs on ifindex %d", xdp.Ifindex)
	if xdp.Ifindex == 0 {
		why = "it is attached to nothing (its interface was deleted, or the link detached)"
	}
	log.Warn("discarding the data plane pinned for an earlier interface of this name, "+why+"; attaching afresh",
		"iface", iface.Name, "pinned_ifindex", xdp.Ifindex, "ifindex", iface.Index, "pins", dir)
	return false, nil
}

// loadState rebuilds the node's view from the maps. With tidy, it also
// finishes releasing backends no VIP lists.
func (n *Node) loadState(tidy bool) error {
	var (
		key  bpf.LbVipKey
		meta bpf.LbVipMeta
	)
	iter := n.objs.Vips.Iterate()
	for iter.Next(&key, &meta) {
		vk := VIPKey{Addr: decodeAddr(key.Addr, key.Family), Port: swapPort(key.Port), Protocol: Protocol(key.Proto)}
		n.vips[vk] = &vipState{num: meta.VipNum, flags: VIPFlags(meta.Flags)}
		n.vipNums[meta.VipNum] = vk
	}
	if err := iter.Err(); err != nil {
		return fmt.Errorf("reading VIPs: %w", err)
	}

	var (
		idx uint32
		be  bpf.LbBackend
	)
	biter := n.objs.Backends.Iterate()
	for biter.Next(&idx, &be) {
		if be.Flags&backendValid == 0 {
			continue
		}
		addr := decodeAddr(be.Addr, be.Family)
		n.backends[addr] = &backendSlot{index: idx}
		n.indexAddr[idx] = addr
		n.lastIndex = max(n.lastIndex, idx)
	}
	if err := biter.Err(); err != nil {
		return fmt.Errorf("reading backends: %w", err)
	}

	var (
		mk bpf.LbMemberKey
		mv bpf.LbMember
	)
	miter := n.objs.Members.Iterate()
	for miter.Next(&mk, &mv) {
		vk, ok := n.vipNums[mk.VipNum]
		addr, known := n.indexAddr[mk.Backend]
		if !ok || !known {
			continue
		}
		state := BackendActive
		if mv.State == memberDrain {
			state = BackendDrain
		}
		v := n.vips[vk]
		v.backends = append(v.backends, Backend{Addr: addr, Weight: mv.Weight, State: state})
		n.backends[addr].refs++
	}
	if err := miter.Err(); err != nil {
		return fmt.Errorf("reading VIP members: %w", err)
	}
	for _, v := range n.vips {
		slices.SortFunc(v.backends, func(a, b Backend) int { return a.Addr.Compare(b.Addr) })
	}
	// A backend with no VIP left was being released when the last process
	// stopped; finish the job.
	for addr, slot := range n.backends {
		if tidy && slot.refs == 0 {
			if err := n.releaseBackend(addr); err != nil {
				return err
			}
		}
	}
	return nil
}

// removePins deletes the load balancer's pins in dir, leaving anything else
// (a decap program's pins, say) alone.
func removePins(dir string) error {
	names := []string{linkPin, programPin}
	for name := range (&Node{}).pinnedMaps() {
		names = append(names, name)
	}
	var errs []error
	for _, name := range names {
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func viewPinnedNode(pinRoot, iface string) *Node {
	return &Node{
		cfg:       Config{Interface: iface, PinRoot: pinRoot},
		pinDir:    filepath.Join(pinRoot, iface),
		vips:      map[VIPKey]*vipState{},
		vipNums:   map[uint32]VIPKey{},
		backends:  map[netip.Addr]*backendSlot{},
		indexAddr: map[uint32]netip.Addr{},
	}
}

// ReadPinnedStats reads the counters of the data plane pinned for iface,
// changing nothing.
func ReadPinnedStats(pinRoot, iface string) (Stats, error) {
	n := viewPinnedNode(pinRoot, iface)
	defer n.objs.Close()
	if _, err := os.Stat(filepath.Join(n.pinDir, linkPin)); err != nil {
		return Stats{}, fmt.Errorf("no load balancer pinned for %s under %s", iface, pinRoot)
	}
	for name, m := range n.pinnedMaps() {
		var err error
		if *m, err = ebpf.LoadPinnedMap(filepath.Join(n.pinDir, name), &ebpf.LoadPinOptions{ReadOnly: true}); err != nil {
			return Stats{}, fmt.Errorf("map %s: %w", name, err)
		}
	}
	if err := n.loadState(false); err != nil {
		return Stats{}, err
	}
	return n.Stats()
}

// DetachPinned stops the data plane pinned for iface and removes its pins,
// without needing its configuration.
func DetachPinned(pinRoot, iface string) error {
	dir := filepath.Join(pinRoot, iface)
	l, err := link.LoadPinnedLink(filepath.Join(dir, linkPin), nil)
	if err != nil {
		return fmt.Errorf("no load balancer pinned for %s under %s: %w", iface, pinRoot, err)
	}
	errs := []error{l.Unpin(), l.Close(), removePins(dir)}
	return errors.Join(errs...)
}
