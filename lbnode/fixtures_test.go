package lbnode

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/metalflow/metalflow/lbnode/maglev"
)

const (
	xdpDrop = 1
	xdpPass = 2
	xdpTX   = 3

	testSeed = 7
	testMTU  = 1500
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

// testMACs: frames arrive from the router (routerMAC) to the node (nodeMAC);
// encapsulated frames leave for nextHopMAC.
type testMACs struct{ router, node, nextHop net.HardwareAddr }

func macs() testMACs {
	return testMACs{router: mac("02:00:00:00:00:aa"), node: mac("02:00:00:00:00:bb"), nextHop: mac("02:00:00:00:00:01")}
}

// requireBPF skips a test that needs to load BPF programs where that is
// impossible, and fails it where it should work.
func requireBPF(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: loading XDP programs and BPF_PROG_TEST_RUN need root")
	}
}

// bpffs mounts a private bpf filesystem for pins, unmounted at cleanup.
func bpffs(t testing.TB) string {
	dir := t.TempDir()
	require.NoError(t, MountBPFFS(dir))
	t.Cleanup(func() { _ = unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

func openTestNode(t testing.TB, cfg Config) *Node {
	t.Helper()
	requireBPF(t)
	if cfg.NextHopMAC == nil {
		cfg.NextHopMAC = macs().nextHop
	}
	if cfg.Seed == 0 {
		cfg.Seed = testSeed
	}
	if cfg.MTU == 0 {
		cfg.MTU = testMTU
	}
	n, err := Open(cfg)
	if errors.Is(err, ebpf.ErrNotSupported) {
		t.Skipf("skipping: kernel lacks BPF support needed here: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = n.Close() })
	return n
}

func runOpts(in []byte) ebpf.RunOptions {
	return ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
}

func run(t testing.TB, prog *ebpf.Program, in []byte) (uint32, []byte) {
	t.Helper()
	opts := runOpts(in)
	verdict, err := prog.Run(&opts)
	require.NoError(t, err)
	return verdict, opts.DataOut
}

// service is a VIP with its backends, as configured in a fixture world.
type service struct {
	vip      VIP
	backends []Backend
}

func setup(t testing.TB, n *Node, services []service) {
	t.Helper()
	for _, s := range services {
		require.NoError(t, n.AddVIP(s.vip))
		if s.backends != nil {
			require.NoError(t, n.SetBackends(s.vip.VIPKey, s.backends))
		}
	}
}

// expectBackend computes, without the data plane, which backend a flow to a
// service must reach.
func expectBackend(t testing.TB, s service, f flowTuple) netip.Addr {
	t.Helper()
	list := slices.Clone(s.backends)
	slices.SortFunc(list, func(a, b Backend) int { return a.Addr.Compare(b.Addr) })
	entries := make([]maglev.Backend, len(list))
	for i, b := range list {
		entries[i] = maglev.Backend{Key: b.Addr.String()}
		if b.takesNewFlows() {
			entries[i].Weight = b.Weight
		}
	}
	table, err := maglev.Build(entries, maglev.DefaultSize, testSeed)
	require.NoError(t, err)
	slot := hashFlow(applyHashFlags(f, s.vip.Flags), testSeed) % maglev.DefaultSize
	require.NotEqual(t, maglev.Empty, table.Slots[slot])
	return list[table.Slots[slot]].Addr
}

// encapsulated is the frame the balancer must send for in (an Ethernet frame
// without padding) to backend, in IP-in-IP.
func encapsulated(in []byte, backend netip.Addr, f flowTuple) []byte {
	return encapsulatedWith(in, backend, f, false)
}

// encapsulatedWith builds the expected frame, in GUE when gue is set.
func encapsulatedWith(in []byte, backend netip.Addr, f flowTuple, gue bool) []byte {
	m := macs()
	inner := in[14:]
	h := hashFlow(f, testSeed)
	var tos, next uint8
	if binary.BigEndian.Uint16(in[12:]) == ethIPv4 {
		tos, next = inner[1], protoIPIP
	} else {
		tos, next = uint8(binary.BigEndian.Uint32(inner[0:])>>20), protoIPv6
	}
	payload := inner
	if gue {
		next = protoUDP
		udp := make([]byte, 8, 8+len(inner))
		binary.BigEndian.PutUint16(udp[0:], uint16(0xc000|h&0x3fff))
		binary.BigEndian.PutUint16(udp[2:], DefaultGUEPort)
		binary.BigEndian.PutUint16(udp[4:], uint16(8+len(inner)))
		payload = append(udp, inner...)
	}
	if backend.Is4() {
		outer := make([]byte, 20)
		outer[0] = 0x45
		outer[1] = tos
		binary.BigEndian.PutUint16(outer[2:], uint16(20+len(payload)))
		outer[8] = 64
		outer[9] = next
		outer[12], outer[13], outer[14], outer[15] = 172, 16, byte(h>>8), byte(h)
		d := backend.As4()
		copy(outer[16:], d[:])
		binary.BigEndian.PutUint16(outer[10:], inetChecksum(outer, 0))
		return ether(m.nextHop, m.node, ethIPv4, append(outer, payload...))
	}
	outer := make([]byte, 40)
	binary.BigEndian.PutUint32(outer[0:], 6<<28|uint32(tos)<<20|h&0xfffff)
	binary.BigEndian.PutUint16(outer[4:], uint16(len(payload)))
	outer[6] = next
	outer[7] = 64
	src := addr("fd00:6d66::").As16()
	binary.BigEndian.PutUint32(src[12:], h)
	copy(outer[8:24], src[:])
	d := backend.As16()
	copy(outer[24:40], d[:])
	return ether(m.nextHop, m.node, ethIPv6, append(outer, payload...))
}

// fragNeeded is the ICMP reply the balancer must send for a too-big IPv4
// frame.
func fragNeeded(in []byte, mtu int) []byte {
	m := macs()
	orig := in[14:]
	reply := make([]byte, 20+8, 20+8+28)
	reply[0] = 0x45
	binary.BigEndian.PutUint16(reply[2:], 56)
	reply[8] = 64
	reply[9] = protoICMP
	copy(reply[12:16], orig[16:20])
	copy(reply[16:20], orig[12:16])
	binary.BigEndian.PutUint16(reply[10:], inetChecksum(reply[:20], 0))
	reply[20], reply[21] = 3, 4
	binary.BigEndian.PutUint16(reply[26:], uint16(mtu))
	reply = append(reply, orig[:28]...)
	binary.BigEndian.PutUint16(reply[22:], inetChecksum(reply[20:], 0))
	return ether(m.router, m.node, ethIPv4, reply)
}

// packetTooBig is the ICMPv6 reply for a too-big IPv6 frame.
func packetTooBig(in []byte, mtu int) []byte {
	m := macs()
	orig := in[14:]
	icmp := make([]byte, 8, 56)
	icmp[0] = 2
	binary.BigEndian.PutUint32(icmp[4:], uint32(mtu))
	icmp = append(icmp, orig[:48]...)
	var pseudo []byte
	pseudo = append(pseudo, orig[24:40]...)
	pseudo = append(pseudo, orig[8:24]...)
	pseudo = binary.BigEndian.AppendUint32(pseudo, uint32(len(icmp)))
	pseudo = binary.BigEndian.AppendUint32(pseudo, protoICMPv6)
	var sum uint32
	for i := 0; i < len(pseudo); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(pseudo[i:]))
	}
	binary.BigEndian.PutUint16(icmp[2:], inetChecksum(icmp, sum))
	hdr := make([]byte, 40)
	hdr[0] = 0x60
	binary.BigEndian.PutUint16(hdr[4:], uint16(len(icmp)))
	hdr[6] = protoICMPv6
	hdr[7] = 64
	copy(hdr[8:24], orig[24:40])
	copy(hdr[24:40], orig[8:24])
	return ether(m.router, m.node, ethIPv6, append(hdr, icmp...))
}
