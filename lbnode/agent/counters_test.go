package agent

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/lbnode"
	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// syn4 is a TCP SYN in an Ethernet frame, written out field by field here
// rather than with the agent's probe builder.
func syn4(src, dst netip.Addr, sport, dport uint16) []byte {
	f := make([]byte, 14+20+20)
	copy(f[0:6], []byte{2, 0, 0, 0, 0, 0xbb})
	copy(f[6:12], []byte{2, 0, 0, 0, 0, 0xaa})
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	ip[8] = 64
	ip[9] = 6
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	var sum uint32
	for i := 0; i < 20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	tcp := f[34:]
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	tcp[12] = 5 << 4
	tcp[13] = 0x02
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	return f
}

// sendThrough runs a frame through the node's program and returns the
// verdict and, for an IP-in-IP frame, the outer destination.
func sendThrough(t *testing.T, n *lbnode.Node, frame []byte) (uint32, netip.Addr) {
	t.Helper()
	opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
	v, err := n.Program().Run(&opts)
	require.NoError(t, err)
	out := opts.DataOut
	if len(out) >= 34 && binary.BigEndian.Uint16(out[12:]) == 0x0800 && out[14+9] == 4 {
		return v, netip.AddrFrom4([4]byte(out[30:34]))
	}
	return v, netip.Addr{}
}

func TestCountersProbeAndMetrics(t *testing.T) {
	l := newNodeLab(t)
	l.detachAtCleanup()
	node := l.open()
	t.Cleanup(func() { _ = node.Close() })
	ann := newRecordingAnnouncer(node)
	a := startAgent(t, l, node, ann, nil)
	t.Cleanup(a.Close)
	x := newActivities(t, a)

	spec := lbapi.VIPSpec{Name: "api", Address: "10.200.0.40", Protocol: "tcp", Ports: []uint16{8080, 8443},
		Backends: []lbapi.Backend{
			{Address: "10.1.0.41", Weight: 100}, {Address: "10.1.0.42", Weight: 100},
			{Address: "10.1.0.43", Weight: 100, State: lbapi.BackendDrain},
		}}
	x.mustApply(spec)
	vip := netip.MustParseAddr("10.200.0.40")
	client := netip.MustParseAddr("198.51.100.7")
	active := map[netip.Addr]bool{netip.MustParseAddr("10.1.0.41"): true, netip.MustParseAddr("10.1.0.42"): true}

	const flows = 40
	sent := map[netip.Addr]uint64{}
	var bytes uint64
	for i := range flows {
		port := spec.Ports[i%2]
		frame := syn4(client, vip, uint16(20000+i), port)
		v, dst := sendThrough(t, node, frame)
		require.Equal(t, uint32(3), v, "XDP_TX")
		require.True(t, active[dst], "flow %d went to %s, not an active backend", i, dst)
		sent[dst]++
		bytes += uint64(len(frame))
	}
	require.Len(t, sent, 2, "forty flows all landed on one backend")

	t.Run("the report counts the VIP and each backend", func(t *testing.T) {
		rep := x.report("api")
		require.Len(t, rep.VIPs, 1)
		v := rep.VIPs[0]
		assert.Equal(t, lbapi.Counter{Packets: flows, Bytes: bytes}, v.Counter)
		got := map[string]uint64{}
		for _, b := range v.Backends {
			got[b.Address] = b.Counter.Packets
		}
		assert.Equal(t, map[string]uint64{
			"10.1.0.41": sent[netip.MustParseAddr("10.1.0.41")],
			"10.1.0.42": sent[netip.MustParseAddr("10.1.0.42")],
			"10.1.0.43": 0,
		}, got)
	})

	t.Run("ProbeVIP sees its probe forwarded to an active backend", func(t *testing.T) {
		res, err := x.probeVIP(lbapi.ProbeVIPInput{VIP: "api"})
		require.NoError(t, err)
		assert.Equal(t, "tx", res.Verdict)
		assert.True(t, res.Forwarded)
		assert.True(t, active[netip.MustParseAddr(res.Backend)], "probe went to %s", res.Backend)
		assert.Equal(t, res.PacketsBefore+1, res.PacketsAfter)

		// The probe flow is the one a real client with that source would
		// be: the same backend our own SYN reaches.
		_, dst := sendThrough(t, node, syn4(netip.MustParseAddr("203.0.113.9"), vip, 41000, 8080))
		res, err = x.probeVIP(lbapi.ProbeVIPInput{VIP: "api", SourceAddress: "203.0.113.9", SourcePort: 41000})
		require.NoError(t, err)
		assert.Equal(t, dst.String(), res.Backend)

		_, err = x.probeVIP(lbapi.ProbeVIPInput{VIP: "nope"})
		requireNonRetryable(t, err, "does not run VIP")
		_, err = x.probeVIP(lbapi.ProbeVIPInput{VIP: "api", SourceAddress: "2001:db8::5"})
		requireNonRetryable(t, err, "different IP versions")
	})

	t.Run("ProbeVIP fails a VIP whose backends all drain, and drops are reported", func(t *testing.T) {
		drained := spec
		drained.Backends = []lbapi.Backend{{Address: "10.1.0.41", Weight: 100, State: lbapi.BackendDrain}}
		x.mustApply(drained)
		res, err := x.probeVIP(lbapi.ProbeVIPInput{VIP: "api", SourcePort: 50000})
		require.NoError(t, err)
		assert.False(t, res.Forwarded)
		assert.Equal(t, "drop", res.Verdict)
		assert.Equal(t, res.PacketsBefore+1, res.PacketsAfter)
		assert.Equal(t, uint64(1), x.report("").Drops["no_backend"])
		x.mustApply(spec)
	})

	t.Run("a UDP VIP on IPv6 is probed with a datagram", func(t *testing.T) {
		dns := lbapi.VIPSpec{Name: "dns", Address: "2001:db8:200::53", Protocol: "udp", Ports: []uint16{53},
			Backends: []lbapi.Backend{{Address: "fd00:1::53", Weight: 1}}}
		x.mustApply(dns)
		res, err := x.probeVIP(lbapi.ProbeVIPInput{VIP: "dns"})
		require.NoError(t, err)
		assert.True(t, res.Forwarded)
		assert.Equal(t, "fd00:1::53", res.Backend)
		x.remove("dns")
	})

	t.Run("the collector exposes the same counters", func(t *testing.T) {
		reg := prometheus.NewPedanticRegistry()
		require.NoError(t, reg.Register(NewCollector(a)))
		rep := x.report("api").VIPs[0]
		families, err := reg.Gather()
		require.NoError(t, err)
		got := map[string][]string{}
		for _, mf := range families {
			for _, m := range mf.GetMetric() {
				var labels []string
				for _, lp := range m.GetLabel() {
					labels = append(labels, lp.GetName()+"="+lp.GetValue())
				}
				v := m.GetGauge().GetValue()
				if m.GetCounter() != nil {
					v = m.GetCounter().GetValue()
				}
				got[mf.GetName()] = append(got[mf.GetName()], strings.Join(labels, ",")+" "+strconv.FormatFloat(v, 'f', -1, 64))
			}
		}
		assert.Equal(t, []string{"address=10.200.0.40,vip=api " + strconv.FormatUint(rep.Counter.Packets, 10)},
			got["metalflow_lb_vip_packets_total"])
		assert.Equal(t, []string{" 1"}, got["metalflow_lb_dataplane_healthy"])
		assert.Len(t, got["metalflow_lb_backend_packets_total"], 3)
		assert.Contains(t, got["metalflow_lb_backend_packets_total"],
			"backend=10.1.0.41,vip=api "+strconv.FormatUint(rep.Backends[0].Counter.Packets, 10))
	})
}
