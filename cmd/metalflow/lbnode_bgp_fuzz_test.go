//go:build !agent

package main

import (
	"fmt"
	"slices"
	"strings"
	"testing"
)

func FuzzBGPPeerFlag(f *testing.F) {
	for _, s := range []string{"192.0.2.1,65001", "2001:db8::1,65002,external,port=1179", " 192.0.2.1 , 65001 , external ",
		"192.0.2.1", "192.0.2.1,", ",65001", "192.0.2.1,4294967296", "192.0.2.1,-1", "192.0.2.1,65001,port=0",
		"192.0.2.1,65001,port=65536", "192.0.2.1,65001,port=", "192.0.2.1,65001,internal", "fe80::1%eth0,65001",
		"192.0.2.1,65001,,", "192.0.2.1,0x10", "192.0.2.1,65001,port=179,port=180"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		first := bgpPeerList{}
		if err := first.Set("198.51.100.1,64512"); err != nil {
			t.Fatal(err)
		}
		l := slices.Clone(first)
		err := l.Set(v)
		if err != nil {
			if !slices.Equal(l, first) {
				t.Fatalf("refused %q still changed the peers to %v", v, l)
			}
			if !strings.Contains(err.Error(), fmt.Sprintf("%q", v)) {
				t.Fatalf("refusal %q does not quote the flag", err)
			}
			return
		}
		if len(l) != 2 || l[0] != first[0] {
			t.Fatalf("accepted %q made peers %v", v, l)
		}
		p := l[1]
		if !p.Address.IsValid() {
			t.Fatalf("accepted %q with no address", v)
		}
		portGiven := slices.ContainsFunc(strings.Split(v, ",")[2:], func(o string) bool {
			return strings.HasPrefix(strings.TrimSpace(o), "port=")
		})
		if portGiven == (p.Port == 0) {
			t.Fatalf("accepted %q as port %d", v, p.Port)
		}
		// The peer written back in the flag's own syntax is the same
		// peer: what the operator sees in logs can be pasted back.
		again := fmt.Sprintf("%s,%d", p.Address, p.ASN)
		if p.External {
			again += ",external"
		}
		if p.Port != 0 {
			again += fmt.Sprintf(",port=%d", p.Port)
		}
		var back bgpPeerList
		if err := back.Set(again); err != nil || len(back) != 1 || back[0] != p {
			t.Fatalf("%q re-read as %q gave %v, %v", v, again, back, err)
		}
	})
}
