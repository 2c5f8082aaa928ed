package vipapi

import (
	"encoding/json"
	"net/netip"
	"slices"
	"testing"
)

func FuzzValidateVIPInput(f *testing.F) {
	f.Add([]byte(`{"name":"web","ports":[80,443],"backends":[{"address":"10.0.0.1"},{"address":"10.0.0.2","weight":5,"state":"drain"}]}`))
	f.Add([]byte(`{"name":"dns","protocol":"UDP","ports":[53],"servers":["SN1","SN2"],"exposure":"public","requestedBy":"alice","clusters":3}`))
	f.Add([]byte(`{"name":"web","ports":[80],"backends":[{"address":"2001:db8::1"},{"address":"2001:DB8::1"}]}`))
	f.Add([]byte(`{"name":"web","ports":[80],"backends":[{"address":"fe80::1%eth0"}],"healthCheck":{"kind":"tcp","path":"/"}}`))
	f.Add([]byte(`{"name":"web","ports":[0,80,80],"backends":[{"address":"0.0.0.0","weight":4294967295}],"clusters":9}`))
	f.Add([]byte(`{"name":"web","ports":[80],"backends":[{"address":"10.0.0.1","serial":"bad/serial"}],"healthCheck":{"kind":"http","intervalMs":-1}}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"name":"web","ports":[80],"backends":[{"address":"::ffff:10.0.0.1"},{"address":"10.0.0.1"}]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var in VIPRolloutInput
		if json.Unmarshal(body, &in) != nil {
			return
		}
		n := NormalizeVIPInput(in)
		if ValidateVIPInput(n) != nil {
			return
		}
		// Normalizing is idempotent, and what was accepted stays
		// accepted after the trip through workflow history.
		if again := NormalizeVIPInput(n); !vipInputsEqual(again, n) {
			t.Fatalf("normalizing twice changed %+v into %+v", n, again)
		}
		raw, err := json.Marshal(n)
		if err != nil {
			t.Fatal(err)
		}
		var back VIPRolloutInput
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		if err := ValidateVIPInput(NormalizeVIPInput(back)); err != nil {
			t.Fatalf("round-tripped VIP request refused: %v", err)
		}
		addrs := map[netip.Addr]bool{}
		for _, b := range n.Backends {
			a, err := netip.ParseAddr(b.Address)
			if err != nil || a.IsUnspecified() || a.Zone() != "" || a.String() != b.Address {
				t.Fatalf("accepted backend address %q", b.Address)
			}
			if addrs[a] {
				t.Fatalf("accepted backend %s twice", a)
			}
			addrs[a] = true
			if b.Weight == 0 || b.Weight > MaxBackendWeight {
				t.Fatalf("accepted weight %d", b.Weight)
			}
		}
		if len(n.Ports) == 0 || slices.Contains(n.Ports, 0) {
			t.Fatalf("accepted ports %v", n.Ports)
		}
	})
}

func vipInputsEqual(a, b VIPRolloutInput) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}
