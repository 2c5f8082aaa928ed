package lbnode

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"

	"github.com/cilium/ebpf"

	"github.com/metalflow/metalflow/bpf"
	"github.com/metalflow/metalflow/lbnode/maglev"
)

// UnknownVIPError is returned for operations on a VIP the node does not
// serve.
type UnknownVIPError struct{ Key VIPKey }

func (e UnknownVIPError) Error() string { return "unknown VIP " + e.Key.String() }

func encodeVIPKey(k VIPKey) bpf.LbVipKey {
	return bpf.LbVipKey{Addr: encodeAddr(k.Addr), Port: swapPort(k.Port), Proto: uint8(k.Protocol), Family: familyOf(k.Addr)}
}

func encodeVIPAddr(a netip.Addr) bpf.LbVipAddr {
	return bpf.LbVipAddr{Addr: encodeAddr(a), Family: familyOf(a)}
}

// AddVIP starts serving a VIP with no backends (its packets are dropped and
// counted as "no backend" until SetBackends). Adding a VIP that exists
// changes its flags in one map update.
func (n *Node) AddVIP(v VIP) error {
	v.Addr = v.Addr.Unmap()
	if err := v.validate(); err != nil {
		return err
	}
	if v.Flags&^knownVIPFlags != 0 {
		return fmt.Errorf("VIP %s: unknown flags %#x", v.VIPKey, uint32(v.Flags&^knownVIPFlags))
	}
	if v.Flags&HashDestinationPortOnly != 0 && v.Flags&HashNoSourcePort != 0 {
		return fmt.Errorf("VIP %s: hash on destination port only, or without source port, not both", v.VIPKey)
	}
	n.mu.Lock()
	defer n.mu.Unlock()

	if st, ok := n.vips[v.VIPKey]; ok {
		if st.flags == v.Flags {
			return nil
		}
		meta := bpf.LbVipMeta{VipNum: st.num, Flags: uint32(v.Flags)}
		if err := n.objs.Vips.Update(encodeVIPKey(v.VIPKey), meta, ebpf.UpdateExist); err != nil {
			return fmt.Errorf("VIP %s: updating flags: %w", v.VIPKey, err)
		}
		st.flags = v.Flags
		return nil
	}

	num, ok := n.freeVIPNum()
	if !ok {
		return fmt.Errorf("VIP %s: the data plane holds at most %d VIPs", v.VIPKey, maxVIPs)
	}
	if err := n.zeroCounter(n.objs.VipStats, num); err != nil {
		return fmt.Errorf("VIP %s: resetting counters: %w", v.VIPKey, err)
	}
	ring, err := ebpf.NewMap(n.ringSpec)
	if err != nil {
		return fmt.Errorf("VIP %s: creating its Maglev ring: %w", v.VIPKey, err)
	}
	defer ring.Close()
	if err := n.objs.MaglevRings.Put(num, ring); err != nil {
		return fmt.Errorf("VIP %s: installing its Maglev ring: %w", v.VIPKey, err)
	}
	if err := n.objs.VipAddrs.Put(encodeVIPAddr(v.Addr), uint32(n.vipsOnAddr(v.Addr)+1)); err != nil {
		_ = n.objs.MaglevRings.Delete(num)
		return fmt.Errorf("VIP %s: %w", v.VIPKey, err)
	}
	// The VIP goes live last, when everything it points at exists.
	if err := n.objs.Vips.Update(encodeVIPKey(v.VIPKey), bpf.LbVipMeta{VipNum: num, Flags: uint32(v.Flags)}, ebpf.UpdateNoExist); err != nil {
		_ = n.putVIPAddrCount(v.Addr, n.vipsOnAddr(v.Addr))
		_ = n.objs.MaglevRings.Delete(num)
		return fmt.Errorf("VIP %s: %w", v.VIPKey, err)
	}
	n.vips[v.VIPKey] = &vipState{num: num, flags: v.Flags}
	n.vipNums[num] = v.VIPKey
	return nil
}

// RemoveVIP stops serving a VIP: its packets go to the stack again.
func (n *Node) RemoveVIP(k VIPKey) error {
	k.Addr = k.Addr.Unmap()
	n.mu.Lock()
	defer n.mu.Unlock()
	st, ok := n.vips[k]
	if !ok {
		return UnknownVIPError{Key: k}
	}
	if err := n.objs.Vips.Delete(encodeVIPKey(k)); err != nil {
		return fmt.Errorf("VIP %s: %w", k, err)
	}
	delete(n.vips, k)
	delete(n.vipNums, st.num)
	// From here the VIP is gone for packets; the rest is cleanup, and a
	// failure is reported but the next start finishes it.
	var errs []error
	errs = append(errs, n.putVIPAddrCount(k.Addr, n.vipsOnAddr(k.Addr)))
	if err := n.objs.MaglevRings.Delete(st.num); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		errs = append(errs, err)
	}
	for _, b := range st.backends {
		errs = append(errs, n.objs.Members.Delete(bpf.LbMemberKey{VipNum: st.num, Backend: n.backends[b.Addr].index}))
		errs = append(errs, n.unref(b.Addr))
	}
	return errors.Join(errs...)
}

// SetBackends replaces a VIP's backends. The new Maglev table is built in a
// new ring and swapped in with one map update, so packets see the old table
// or the new one, never a mix; invalid input changes nothing.
func (n *Node) SetBackends(k VIPKey, backends []Backend) error {
	k.Addr = k.Addr.Unmap()
	list := make([]Backend, len(backends))
	seen := map[netip.Addr]bool{}
	for i, b := range backends {
		b.Addr = b.Addr.Unmap()
		if err := b.validate(); err != nil {
			return fmt.Errorf("VIP %s: %w", k, err)
		}
		if seen[b.Addr] {
			return fmt.Errorf("VIP %s: backend %s listed twice", k, b.Addr)
		}
		seen[b.Addr] = true
		if b.State == "" {
			b.State = BackendActive
		}
		list[i] = b
	}
	slices.SortFunc(list, func(a, b Backend) int { return a.Addr.Compare(b.Addr) })

	n.mu.Lock()
	defer n.mu.Unlock()
	st, ok := n.vips[k]
	if !ok {
		return UnknownVIPError{Key: k}
	}
	var fresh []netip.Addr
	for _, b := range list {
		if _, ok := n.backends[b.Addr]; !ok {
			fresh = append(fresh, b.Addr)
		}
	}
	if len(n.backends)+len(fresh) > maxBackends-1 {
		return fmt.Errorf("VIP %s: the data plane holds at most %d backends", k, maxBackends-1)
	}
	if members := n.memberCount() - len(st.backends) + len(list); members > maxMembers {
		return fmt.Errorf("VIP %s: %d VIP-backend pairs in all, the data plane holds at most %d", k, members, maxMembers)
	}
	entries := make([]maglev.Backend, len(list))
	for i, b := range list {
		entries[i] = maglev.Backend{Key: b.Addr.String()}
		if b.takesNewFlows() {
			entries[i].Weight = b.Weight
		}
	}
	table, err := maglev.Build(entries, n.cfg.RingSize, uint64(n.cfg.Seed))
	if err != nil {
		return fmt.Errorf("VIP %s: %w", k, err)
	}

	// Input is good; now change the kernel, undoing on failure.
	var added []netip.Addr
	undo := func() {
		for _, a := range added {
			_ = n.releaseBackend(a)
		}
	}
	for _, a := range fresh {
		if err := n.allocBackend(a); err != nil {
			undo()
			return fmt.Errorf("VIP %s: %w", k, err)
		}
		added = append(added, a)
	}
	ring, err := n.fillRing(table, list)
	if err != nil {
		undo()
		return fmt.Errorf("VIP %s: %w", k, err)
	}
	defer ring.Close()
	if err := n.objs.MaglevRings.Put(st.num, ring); err != nil {
		undo()
		return fmt.Errorf("VIP %s: swapping in the new Maglev ring: %w", k, err)
	}

	old := st.backends
	st.backends = list
	for _, b := range list {
		n.backends[b.Addr].refs++
	}
	var errs []error
	for _, b := range list {
		m := bpf.LbMember{Weight: b.Weight}
		if b.State == BackendDrain {
			m.State = memberDrain
		}
		errs = append(errs, n.objs.Members.Put(bpf.LbMemberKey{VipNum: st.num, Backend: n.backends[b.Addr].index}, m))
	}
	for _, b := range old {
		if !seen[b.Addr] {
			errs = append(errs, n.objs.Members.Delete(bpf.LbMemberKey{VipNum: st.num, Backend: n.backends[b.Addr].index}))
		}
		errs = append(errs, n.unref(b.Addr))
	}
	return errors.Join(errs...)
}

// VIPs lists the VIPs the node serves.
func (n *Node) VIPs() []VIP {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make([]VIP, 0, len(n.vips))
	for k, st := range n.vips {
		out = append(out, VIP{VIPKey: k, Flags: st.flags})
	}
	slices.SortFunc(out, func(a, b VIP) int {
		return cmp.Or(a.Addr.Compare(b.Addr), cmp.Compare(a.Port, b.Port), cmp.Compare(a.Protocol, b.Protocol))
	})
	return out
}

// Backends lists a VIP's backends as last set.
func (n *Node) Backends(k VIPKey) ([]Backend, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	st, ok := n.vips[k.normal()]
	if !ok {
		return nil, UnknownVIPError{Key: k}
	}
	return slices.Clone(st.backends), nil
}

func (k VIPKey) normal() VIPKey { k.Addr = k.Addr.Unmap(); return k }

func (n *Node) fillRing(table maglev.Table, list []Backend) (*ebpf.Map, error) {
	ring, err := ebpf.NewMap(n.ringSpec)
	if err != nil {
		return nil, fmt.Errorf("creating a Maglev ring: %w", err)
	}
	keys := make([]uint32, len(table.Slots))
	values := make([]uint32, len(table.Slots))
	for i, s := range table.Slots {
		keys[i] = uint32(i)
		if s != maglev.Empty {
			values[i] = n.backends[list[s].Addr].index
		}
	}
	if _, err := ring.BatchUpdate(keys, values, nil); err != nil {
		ring.Close()
		return nil, fmt.Errorf("filling a Maglev ring: %w", err)
	}
	return ring, nil
}

func (n *Node) memberCount() int {
	c := 0
	for _, st := range n.vips {
		c += len(st.backends)
	}
	return c
}

func (n *Node) vipsOnAddr(a netip.Addr) int {
	c := 0
	for k := range n.vips {
		if k.Addr == a {
			c++
		}
	}
	return c
}

func (n *Node) putVIPAddrCount(a netip.Addr, count int) error {
	if count == 0 {
		if err := n.objs.VipAddrs.Delete(encodeVIPAddr(a)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return err
		}
		return nil
	}
	return n.objs.VipAddrs.Put(encodeVIPAddr(a), uint32(count))
}

func (n *Node) freeVIPNum() (uint32, bool) {
	for i := uint32(0); i < maxVIPs; i++ {
		if _, used := n.vipNums[i]; !used {
			return i, true
		}
	}
	return 0, false
}

// allocBackend gives an address a backend index. Indexes are handed out
// round robin rather than lowest-first, so a freed index is reused as late
// as possible.
func (n *Node) allocBackend(a netip.Addr) error {
	for step := uint32(1); step < maxBackends; step++ {
		idx := (n.lastIndex+step-1)%(maxBackends-1) + 1
		if _, used := n.indexAddr[idx]; used {
			continue
		}
		be := bpf.LbBackend{Addr: encodeAddr(a), Family: familyOf(a), Flags: backendValid}
		if err := n.zeroCounter(n.objs.BackendStats, idx); err != nil {
			return err
		}
		if err := n.objs.Backends.Put(idx, be); err != nil {
			return fmt.Errorf("backend %s: %w", a, err)
		}
		n.backends[a] = &backendSlot{index: idx}
		n.indexAddr[idx] = a
		n.lastIndex = idx
		return nil
	}
	return errors.New("no free backend index")
}

func (n *Node) unref(a netip.Addr) error {
	slot := n.backends[a]
	slot.refs--
	if slot.refs > 0 {
		return nil
	}
	return n.releaseBackend(a)
}

// releaseBackend retires a backend no VIP lists any more: it stops matching
// in the data plane, and flow-table entries that point at it are removed so
// that a later backend given the same index does not inherit its flows.
func (n *Node) releaseBackend(a netip.Addr) error {
	slot := n.backends[a]
	if err := n.objs.Backends.Put(slot.index, bpf.LbBackend{}); err != nil {
		return fmt.Errorf("retiring backend %s: %w", a, err)
	}
	var (
		key   bpf.LbFlowKey
		val   bpf.LbFlowBackend
		stale []bpf.LbFlowKey
	)
	iter := n.objs.Flows.Iterate()
	for iter.Next(&key, &val) {
		if val.Backend == slot.index {
			stale = append(stale, key)
		}
	}
	for _, k := range stale {
		_ = n.objs.Flows.Delete(k)
	}
	delete(n.backends, a)
	delete(n.indexAddr, slot.index)
	return nil
}

func (n *Node) zeroCounter(m *ebpf.Map, idx uint32) error {
	zero := make([]bpf.LbCounter, runtime.NumCPU())
	if possible, err := ebpf.PossibleCPU(); err == nil {
		zero = make([]bpf.LbCounter, possible)
	}
	return m.Put(idx, zero)
}
