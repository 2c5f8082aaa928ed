package lbnode

import (
	"testing"
)

func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(issueExample))
	f.Add([]byte(""))
	f.Add([]byte("vips: []\nnextHop: x\n"))
	f.Add([]byte("nextHopMAC: 02:00\n"))
	f.Add([]byte("nextHopMAC: 02:00:00:00:00:00:00:01\n"))
	f.Add([]byte("encapSourceV4: 2001:db8::1\nencapSourceV6: ::ffff:10.0.0.1\nflowTableSize: -1\n"))
	f.Add([]byte("vips: [{address: 10.200.0.10, port: 80, protocol: tcp}, {address: '::ffff:10.200.0.10', port: 80, protocol: TCP}]\n"))
	f.Add([]byte("vips: [{address: 10.200.0.10, port: 80, protocol: tcp, backends: [{address: 10.0.1.1}, {address: '::ffff:10.0.1.1'}]}]\n"))
	f.Add([]byte("vips: [{address: 'fe80::1%eth0', port: 80, protocol: udp, backends: [{address: 'fe80::2%eth0', weight: 4294967295}]}]\n"))
	f.Add([]byte("vips: [{address: 10.200.0.10, port: 80, protocol: tcp, flags: [hash-no-source-port, hash-destination-port-only]}]\n"))
	f.Add([]byte("vips: [{address: 0.0.0.0, port: 80, protocol: tcp, backends: [{address: '::'}]}]\n"))
	f.Add([]byte("vips: [{address: 10.200.0.10, port: 80, protocol: tcp, flags: [gue, bogus]}]\n"))
	f.Add([]byte("vips: [{address: '::', port: 53, protocol: udp}]\n"))
	f.Add([]byte("vips: &a [*a]\n"))
	f.Add([]byte("vips:\n  - address: [\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := ParseConfig(data)
		if err != nil {
			if d.Services != nil || d.NextHopMAC != nil || d.MTU != 0 {
				t.Fatalf("refused config still returned %+v", d)
			}
			return
		}
		if d.NextHopMAC != nil && len(d.NextHopMAC) != 6 {
			t.Fatalf("accepted next hop %v", d.NextHopMAC)
		}
		if d.EncapSourceV4.IsValid() && !d.EncapSourceV4.Is4() || d.EncapSourceV6.IsValid() && (!d.EncapSourceV6.Is6() || d.EncapSourceV6.Is4In6()) {
			t.Fatalf("accepted encap sources %s %s", d.EncapSourceV4, d.EncapSourceV6)
		}
		if d.FlowTableSize < 0 {
			t.Fatalf("accepted flow table size %d", d.FlowTableSize)
		}
		// Everything a file can say, Node.Apply must take: it checks the
		// same things before touching the maps, so a file accepted here
		// never half-applies.
		seen := map[VIPKey]bool{}
		for _, s := range d.Services {
			if err := s.validate(); err != nil {
				t.Fatalf("accepted service fails its own check: %v", err)
			}
			k := s.VIP.VIPKey.normal()
			if k != s.VIP.VIPKey {
				t.Fatalf("VIP %s kept an IPv4-mapped address", s.VIP.VIPKey)
			}
			if seen[k] {
				t.Fatalf("VIP %s accepted twice", k)
			}
			seen[k] = true
			if k.Addr.IsUnspecified() {
				t.Fatalf("VIP at the unspecified address %s accepted", k)
			}
			for _, b := range s.Backends {
				if !b.Addr.IsValid() || b.Addr.IsUnspecified() || b.Addr.Zone() != "" || b.Weight > maxWeight {
					t.Fatalf("accepted backend %+v", b)
				}
			}
		}
	})
}
