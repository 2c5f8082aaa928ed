package lbapi

import (
	"encoding/json"
	"slices"
	"testing"
)

func FuzzVIPSpec(f *testing.F) {
	f.Add([]byte(`{"name":"web","address":"10.0.0.10","protocol":"tcp","ports":[443,80],"backends":[{"address":"10.1.0.2","weight":1},{"address":"10.1.0.1","weight":2,"state":"active"}]}`))
	f.Add([]byte(`{"name":"dns","address":"2001:db8::10","protocol":"UDP","ports":[53,53],"backends":[{"address":"2001:db8:1::1"},{"address":"2001:db8:1::2","state":"drain","serial":"SN1"}],"announce":"public","healthCheck":{"kind":"http","path":"/"}}`))
	f.Add([]byte(`{"name":"web","address":"10.0.0.10","protocol":"tcp","ports":[80],"backends":[{"address":"2001:db8::1"},{"address":"2001:0db8::1"}]}`))
	f.Add([]byte(`{"name":"web","address":"fe80::1%eth0","protocol":"tcp","ports":[80]}`))
	f.Add([]byte(`{"name":"web","address":"0.0.0.0","protocol":"sctp","ports":[],"announce":"everyone"}`))
	f.Add([]byte(`{"name":"web","address":"10.0.0.10","protocol":"tcp","ports":[80],"backends":[{"address":"10.1.0.1","state":"gone"}],"healthCheck":{"kind":"icmp"}}`))
	f.Add([]byte(`{"name":"\xff","address":"10.0.0.10","protocol":"tcp","ports":[80],"backends":[{"address":"::ffff:10.1.0.1"},{"address":"10.1.0.1"}]}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, body []byte) {
		var s VIPSpec
		if json.Unmarshal(body, &s) != nil {
			return
		}
		if s.Validate() != nil {
			return
		}
		d := Digest(s)
		if len(d) != 16 {
			t.Fatalf("digest %q", d)
		}
		// The node and the workflow list ports and backends in whatever
		// order they got them: the digest must not care.
		r := s
		r.Ports = slices.Clone(s.Ports)
		slices.Reverse(r.Ports)
		r.Backends = slices.Clone(s.Backends)
		slices.Reverse(r.Backends)
		if Digest(r) != d {
			t.Fatalf("reversed spec digests to %s, not %s", Digest(r), d)
		}
		if len(r.Ports) > 1 {
			r.Ports = append(r.Ports[1:], r.Ports[0])
		}
		if len(r.Backends) > 1 {
			r.Backends = append(r.Backends[1:], r.Backends[0])
		}
		if Digest(r) != d {
			t.Fatalf("rotated spec digests to %s, not %s", Digest(r), d)
		}
		// The spec travels as an activity payload: the node must see
		// the same VIP after the trip.
		raw, err := json.Marshal(ApplyVIPInput{Spec: s})
		if err != nil {
			t.Fatal(err)
		}
		var back ApplyVIPInput
		if err := json.Unmarshal(raw, &back); err != nil {
			t.Fatal(err)
		}
		if err := back.Spec.Validate(); err != nil {
			t.Fatalf("round-tripped spec refused: %v", err)
		}
		if Digest(back.Spec) != d {
			t.Fatalf("round trip changed the digest from %s to %s", d, Digest(back.Spec))
		}
		// The defaulted state is part of the same VIP.
		for i := range r.Backends {
			if r.Backends[i].State == "" {
				r.Backends[i].State = BackendActive
			}
		}
		if Digest(r) != d {
			t.Fatalf("spelling out the active state changed the digest")
		}
	})
}
