package lbapi

import (
	"strings"
	"testing"
)

func TestDigestIgnoresListingOrder(t *testing.T) {
	a := VIPSpec{Name: "web", Address: "10.0.0.10", Protocol: "tcp", Ports: []uint16{443, 80},
		Backends: []Backend{{Address: "10.1.0.2", Weight: 1}, {Address: "10.1.0.1", Weight: 2, State: BackendActive}}}
	b := VIPSpec{Name: "web", Address: "10.0.0.10", Protocol: "TCP", Ports: []uint16{80, 443},
		Backends: []Backend{{Address: "10.1.0.1", Weight: 2}, {Address: "10.1.0.2", Weight: 1}}}
	if Digest(a) != Digest(b) {
		t.Fatalf("same VIP listed in another order: %s != %s", Digest(a), Digest(b))
	}
	c := b
	c.Backends = []Backend{{Address: "10.1.0.1", Weight: 2, State: BackendDrain}, {Address: "10.1.0.2", Weight: 1}}
	if Digest(b) == Digest(c) {
		t.Fatal("draining a backend did not change the digest")
	}
	d := b
	d.Announce = AnnouncePublic
	if Digest(b) == Digest(d) {
		t.Fatal("announcing publicly did not change the digest")
	}
}

func TestValidate(t *testing.T) {
	good := VIPSpec{Name: "web", Address: "2001:db8::10", Protocol: "udp", Ports: []uint16{53},
		Backends: []Backend{{Address: "2001:db8:1::1", Weight: 1}}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		change func(*VIPSpec)
		want   string
	}{
		{"no name", func(s *VIPSpec) { s.Name = "" }, "no name"},
		{"bad address", func(s *VIPSpec) { s.Address = "10.0.0" }, "not a usable IP"},
		{"unspecified", func(s *VIPSpec) { s.Address = "::" }, "not a usable IP"},
		{"protocol", func(s *VIPSpec) { s.Protocol = "sctp" }, "want tcp or udp"},
		{"no ports", func(s *VIPSpec) { s.Ports = nil }, "no ports"},
		{"announce", func(s *VIPSpec) { s.Announce = "world" }, "announce"},
		{"backend", func(s *VIPSpec) { s.Backends = []Backend{{Address: "x"}} }, "backend address"},
		{"duplicate", func(s *VIPSpec) {
			s.Backends = []Backend{{Address: "10.1.0.1"}, {Address: "10.1.0.1"}}
		}, "twice"},
		{"state", func(s *VIPSpec) { s.Backends = []Backend{{Address: "10.1.0.1", State: "gone"}} }, "state"},
		{"check", func(s *VIPSpec) { s.HealthCheck = &HealthCheck{Kind: "icmp"} }, "health check"},
	} {
		s := good
		tc.change(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.name, err, tc.want)
		}
	}
}
