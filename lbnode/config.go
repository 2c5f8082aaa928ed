package lbnode

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"gopkg.in/yaml.v3"
)

// Service is a VIP and the backends behind it: the unit Apply works in.
type Service struct {
	VIP      VIP
	Backends []Backend
}

// StandaloneConfig is a parsed standalone configuration file.
type StandaloneConfig struct {
	// NextHopMAC is nil when the file leaves it to the default gateway.
	NextHopMAC net.HardwareAddr
	MTU        int
	Seed       uint32
	GUEPort    uint16
	// EncapSourceV4/V6 are invalid (zero) when the file leaves them to the
	// defaults.
	EncapSourceV4     netip.Addr
	EncapSourceV6     netip.Addr
	FlowTableSize     int
	SYNFloodThreshold uint32
	Services          []Service
}

// fileConfig is the YAML layout of `metalflow lbnode --config`.
type fileConfig struct {
	NextHopMAC string `yaml:"nextHopMAC"`
	MTU        int    `yaml:"mtu"`
	Seed       uint32 `yaml:"seed"`
	GUEPort    uint16 `yaml:"guePort"`
	// Outer source prefixes and flow table tuning; zero means the default.
	EncapSourceV4     string    `yaml:"encapSourceV4"`
	EncapSourceV6     string    `yaml:"encapSourceV6"`
	FlowTableSize     int       `yaml:"flowTableSize"`
	SYNFloodThreshold uint32    `yaml:"synFloodThreshold"`
	VIPs              []fileVIP `yaml:"vips"`
}

type fileVIP struct {
	Address  string        `yaml:"address"`
	Port     uint16        `yaml:"port"`
	Protocol string        `yaml:"protocol"`
	Flags    []string      `yaml:"flags"`
	Backends []fileBackend `yaml:"backends"`
}

type fileBackend struct {
	Address string  `yaml:"address"`
	Weight  *uint32 `yaml:"weight"`
	State   string  `yaml:"state"`
}

// DefaultBackendWeight is the weight of a backend whose entry has none.
const DefaultBackendWeight = 100

// ParseConfig reads and checks a standalone configuration. Any error names
// the offending entry; nothing is half-accepted.
func ParseConfig(data []byte) (StandaloneConfig, error) {
	var fc fileConfig
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&fc); err != nil && !errors.Is(err, io.EOF) {
		return StandaloneConfig{}, fmt.Errorf("config: %w", err)
	}
	d := StandaloneConfig{MTU: fc.MTU, Seed: fc.Seed, GUEPort: fc.GUEPort, FlowTableSize: fc.FlowTableSize, SYNFloodThreshold: fc.SYNFloodThreshold}
	if fc.EncapSourceV4 != "" {
		a, err := netip.ParseAddr(fc.EncapSourceV4)
		if err != nil || !a.Is4() {
			return StandaloneConfig{}, fmt.Errorf("config: encapSourceV4 %q is not an IPv4 address", fc.EncapSourceV4)
		}
		d.EncapSourceV4 = a
	}
	if fc.EncapSourceV6 != "" {
		a, err := netip.ParseAddr(fc.EncapSourceV6)
		if err != nil || !a.Is6() || a.Is4In6() {
			return StandaloneConfig{}, fmt.Errorf("config: encapSourceV6 %q is not an IPv6 address", fc.EncapSourceV6)
		}
		d.EncapSourceV6 = a
	}
	if fc.FlowTableSize < 0 {
		return StandaloneConfig{}, fmt.Errorf("config: flowTableSize %d is negative", fc.FlowTableSize)
	}
	if fc.NextHopMAC != "" {
		m, err := net.ParseMAC(fc.NextHopMAC)
		if err != nil || len(m) != 6 {
			return StandaloneConfig{}, fmt.Errorf("config: nextHopMAC %q is not an Ethernet address", fc.NextHopMAC)
		}
		d.NextHopMAC = m
	}
	seen := map[VIPKey]bool{}
	for i, fv := range fc.VIPs {
		where := fmt.Sprintf("config: vips[%d]", i)
		a, err := netip.ParseAddr(fv.Address)
		if err != nil {
			return StandaloneConfig{}, fmt.Errorf("%s: address %q: %w", where, fv.Address, err)
		}
		proto, err := ParseProtocol(fv.Protocol)
		if err != nil {
			return StandaloneConfig{}, fmt.Errorf("%s: %w", where, err)
		}
		v := VIP{VIPKey: VIPKey{Addr: a.Unmap(), Port: fv.Port, Protocol: proto}}
		for _, f := range fv.Flags {
			flag, err := parseVIPFlag(f)
			if err != nil {
				return StandaloneConfig{}, fmt.Errorf("%s: %w", where, err)
			}
			v.Flags |= flag
		}
		if seen[v.VIPKey] {
			return StandaloneConfig{}, fmt.Errorf("%s: VIP %s listed twice", where, v.VIPKey)
		}
		seen[v.VIPKey] = true
		s := Service{VIP: v}
		for j, fb := range fv.Backends {
			ba, err := netip.ParseAddr(fb.Address)
			if err != nil {
				return StandaloneConfig{}, fmt.Errorf("%s.backends[%d]: address %q: %w", where, j, fb.Address, err)
			}
			b := Backend{Addr: ba, Weight: DefaultBackendWeight, State: BackendState(fb.State)}
			if fb.Weight != nil {
				b.Weight = *fb.Weight
			}
			s.Backends = append(s.Backends, b)
		}
		if err := s.validate(); err != nil {
			return StandaloneConfig{}, fmt.Errorf("%s: %w", where, err)
		}
		d.Services = append(d.Services, s)
	}
	return d, nil
}

func parseVIPFlag(s string) (VIPFlags, error) {
	switch s {
	case "hash-no-source-port":
		return HashNoSourcePort, nil
	case "hash-destination-port-only":
		return HashDestinationPortOnly, nil
	case "no-flow-table":
		return NoFlowTable, nil
	case "gue":
		return EncapGUE, nil
	}
	return 0, fmt.Errorf("flag %q: want hash-no-source-port, hash-destination-port-only, no-flow-table or gue", s)
}

// ReadConfigFile reads and parses a standalone configuration file.
func ReadConfigFile(path string) (StandaloneConfig, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return StandaloneConfig{}, err
	}
	d, err := ParseConfig(data)
	if err != nil {
		return StandaloneConfig{}, fmt.Errorf("%s: %w", path, err)
	}
	return d, nil
}

func (s Service) validate() error {
	if err := s.VIP.validate(); err != nil {
		return err
	}
	if s.VIP.Flags&^knownVIPFlags != 0 {
		return fmt.Errorf("VIP %s: unknown flags %#x", s.VIP.VIPKey, uint32(s.VIP.Flags&^knownVIPFlags))
	}
	if s.VIP.Flags&HashDestinationPortOnly != 0 && s.VIP.Flags&HashNoSourcePort != 0 {
		return fmt.Errorf("VIP %s: hash on destination port only, or without source port, not both", s.VIP.VIPKey)
	}
	seen := map[netip.Addr]bool{}
	for _, b := range s.Backends {
		if err := b.validate(); err != nil {
			return fmt.Errorf("VIP %s: %w", s.VIP.VIPKey, err)
		}
		if seen[b.Addr.Unmap()] {
			return fmt.Errorf("VIP %s: backend %s listed twice", s.VIP.VIPKey, b.Addr)
		}
		seen[b.Addr.Unmap()] = true
	}
	return nil
}

// Apply makes the node serve exactly services: VIPs not listed are removed,
// new ones added, and every VIP's backends set. The whole list is checked
// first, so bad input changes nothing; each VIP then switches atomically.
func (n *Node) Apply(services []Service) error {
	backends := map[netip.Addr]bool{}
	want := map[VIPKey]bool{}
	for _, s := range services {
		if err := s.validate(); err != nil {
			return err
		}
		k := s.VIP.VIPKey.normal()
		if want[k] {
			return fmt.Errorf("VIP %s listed twice", k)
		}
		want[k] = true
		for _, b := range s.Backends {
			backends[b.Addr.Unmap()] = true
		}
	}
	if len(want) > maxVIPs {
		return fmt.Errorf("%d VIPs: the data plane holds at most %d", len(want), maxVIPs)
	}
	if len(backends) > maxBackends-1 {
		return fmt.Errorf("%d backends: the data plane holds at most %d", len(backends), maxBackends-1)
	}

	var errs []error
	for _, v := range n.VIPs() {
		if !want[v.VIPKey] {
			errs = append(errs, n.RemoveVIP(v.VIPKey))
		}
	}
	for _, s := range services {
		if err := n.AddVIP(s.VIP); err != nil {
			errs = append(errs, err)
			continue
		}
		errs = append(errs, n.SetBackends(s.VIP.VIPKey, s.Backends))
	}
	return errors.Join(errs...)
}

// LookupGatewayMAC finds the MAC address of iface's IPv4 default gateway
// in the kernel's routing table and neighbour cache.
func LookupGatewayMAC(iface string) (net.HardwareAddr, error) {
	routes, err := os.ReadFile("/proc/net/route")
	if err != nil {
		return nil, err
	}
	var gw netip.Addr
	sc := bufio.NewScanner(bytes.NewReader(routes))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[0] != iface || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		b, err := hex.DecodeString(f[2])
		if err != nil || len(b) != 4 {
			continue
		}
		// /proc/net/route prints the address as a host-order hex word.
		gw = netip.AddrFrom4([4]byte{b[3], b[2], b[1], b[0]})
		break
	}
	if !gw.IsValid() {
		return nil, fmt.Errorf("no IPv4 default route through %s: set nextHopMAC", iface)
	}
	arp, err := os.ReadFile("/proc/net/arp")
	if err != nil {
		return nil, err
	}
	sc = bufio.NewScanner(bytes.NewReader(arp))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 6 && f[0] == gw.String() && f[5] == iface && f[2] != "0x0" {
			return net.ParseMAC(f[3])
		}
	}
	return nil, fmt.Errorf("gateway %s on %s is not in the neighbour table yet: set nextHopMAC or let the node talk to it first", gw, iface)
}

// SetMTU changes the largest outer packet the node sends; bigger ones get
// ICMP "fragmentation needed" / "packet too big".
func (n *Node) SetMTU(mtu int) error {
	if mtu < 1280+40 || mtu > 65535 {
		return fmt.Errorf("MTU %d out of range", mtu)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	old := n.cfg.MTU
	n.cfg.MTU = mtu
	if err := n.writeConfig(); err != nil {
		n.cfg.MTU = old
		return err
	}
	return nil
}

// Seed is the seed the running data plane hashes with.
func (n *Node) Seed() uint32 { return n.cfg.Seed }

// GUEPort is the UDP port the data plane sends GUE packets to.
func (n *Node) GUEPort() uint16 { return n.cfg.GUEPort }

// WriteStats prints counters for operators, one line per VIP, backend and
// drop reason.
func WriteStats(w io.Writer, s Stats) error {
	var b strings.Builder
	vips := make([]VIPKey, 0, len(s.VIPs))
	for k := range s.VIPs {
		vips = append(vips, k)
	}
	slices.SortFunc(vips, func(a, b VIPKey) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range vips {
		fmt.Fprintf(&b, "vip      %-40s packets %12d bytes %15d\n", k, s.VIPs[k].Packets, s.VIPs[k].Bytes)
	}
	addrs := make([]netip.Addr, 0, len(s.Backends))
	for a := range s.Backends {
		addrs = append(addrs, a)
	}
	slices.SortFunc(addrs, netip.Addr.Compare)
	for _, a := range addrs {
		fmt.Fprintf(&b, "backend  %-40s packets %12d bytes %15d\n", a, s.Backends[a].Packets, s.Backends[a].Bytes)
	}
	for r := DropReason(0); r < dropReasonCount; r++ {
		fmt.Fprintf(&b, "drop     %-40s packets %12d\n", r, s.Drops[r].Packets)
	}
	fmt.Fprintf(&b, "flow table hits %d misses %d; SYN flood bypasses %d; ICMP too-big sent %d\n",
		s.FlowTableHits, s.FlowTableMisses, s.SYNFloodBypasses, s.ICMPTooBig)
	_, err := io.WriteString(w, b.String())
	return err
}
