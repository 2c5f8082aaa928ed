package dhcp_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/metalflow/metalflow/api/boot/dhcp"
	"github.com/metalflow/metalflow/internal/netlab"
	"github.com/metalflow/metalflow/internal/testlog"
)

// installs is the inventory's answer: the MACs with an install pending.
type installs map[string]bool

func (i installs) Pending(_ context.Context, mac string) (bool, error) { return i[mac], nil }

// Machines of the tests; only pending has an install pending.
const (
	pending = "52:54:00:00:00:01"
	idle    = "52:54:00:00:00:02"
)

const scriptURL = "http://10.99.0.1:8080/boot/ipxe"

// segment is a provisioning network: the server in one namespace, the
// machines in another, a veth between them.
type segment struct {
	lab              *netlab.Lab
	serverNS, hostNS string
	hostIf           string
	sub              netlab.Subnet
	server, tftp     netip.Addr
	subnet           netip.Prefix
	logs             *testlog.Buffer
}

// newSegment starts a DHCP server in mode on a fresh segment.
func newSegment(t *testing.T, mode dhcp.Mode) *segment {
	t.Helper()
	l := netlab.New(t)
	s := &segment{lab: l, serverNS: l.Namespace("dhcpd"), hostNS: l.Namespace("host"), logs: &testlog.Buffer{}}
	var serverIf string
	serverIf, s.hostIf = l.Veth(s.serverNS, "srv", s.hostNS, "host")
	sub := l.FreeSubnet()
	s.sub = sub
	s.server, s.subnet = sub.Host4(1).Addr(), sub.Host4(1).Masked()
	s.tftp = sub.Host4(2).Addr()
	l.Address(s.serverNS, serverIf, sub.Host4(1).String())

	// The server takes its address and subnet from the interface.
	cfg := dhcp.Config{
		Interface: serverIf, Mode: mode, TFTPServer: s.tftp, ScriptURL: scriptURL,
		Installs: installs{pending: true},
		Logger:   slog.New(slog.NewTextHandler(s.logs, nil)),
	}
	if mode == dhcp.Full {
		cfg.Leases = dhcp.LeaseConfig{
			First: sub.Host4(100).Addr(), Last: sub.Host4(101).Addr(),
			Router: s.server, DNS: []netip.Addr{s.server}, Duration: time.Hour,
		}
	}
	var srv *dhcp.Server
	var err error
	l.MustCall(s.serverNS, func() { srv, err = dhcp.Listen(cfg) })
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s
}

// client is a DHCP client for mac on the host side, sending from
// 0.0.0.0:68 on a raw socket as firmware does.
func (s *segment) client(t *testing.T, mac string) *nclient4.Client {
	t.Helper()
	hw, err := net.ParseMAC(mac)
	if err != nil {
		t.Fatal(err)
	}
	var c *nclient4.Client
	s.lab.MustCall(s.hostNS, func() {
		c, err = nclient4.New(s.hostIf, nclient4.WithHWAddr(hw), nclient4.WithTimeout(500*time.Millisecond), nclient4.WithRetry(2))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// PXE firmware's DHCPDISCOVER: its class, its architecture, its machine
// ID.
func pxeClient(arch iana.Arch) []dhcpv4.Modifier {
	return []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(arch)),
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionClientMachineIdentifier,
			append([]byte{0}, bytes.Repeat([]byte{0xab}, 16)...))),
	}
}

// iPXE's: the same, and its user class, raw.
func ipxeClient(arch iana.Arch) []dhcpv4.Modifier {
	return append(pxeClient(arch), dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE"))))
}

// quiet is how long a test waits before calling a client unanswered:
// an answer comes within milliseconds on a veth.
const quiet = 1500 * time.Millisecond

func discover(c *nclient4.Client, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	ctx, cancel := context.WithTimeout(context.Background(), quiet)
	defer cancel()
	return c.DiscoverOffer(ctx, mods...)
}

// checkNetboot asserts the boot options of an answer.
func checkNetboot(t *testing.T, s *segment, reply *dhcpv4.DHCPv4, bootFile string) {
	t.Helper()
	if reply.BootFileName != bootFile {
		t.Errorf("boot file %q, want %q", reply.BootFileName, bootFile)
	}
	if !reply.ServerIPAddr.Equal(s.tftp.AsSlice()) {
		t.Errorf("next server %v, want the TFTP server %v", reply.ServerIPAddr, s.tftp)
	}
	if !reply.ServerIdentifier().Equal(s.server.AsSlice()) {
		t.Errorf("server identifier %v, want %v", reply.ServerIdentifier(), s.server)
	}
	if reply.ClassIdentifier() != "PXEClient" {
		t.Errorf("class identifier %q, want PXEClient", reply.ClassIdentifier())
	}
	pxe := dhcpv4.Options{}
	if err := pxe.FromBytes(reply.Options.Get(dhcpv4.OptionVendorSpecificInformation)); err != nil {
		t.Errorf("option 43: %v", err)
	}
	if got := pxe.Get(dhcpv4.GenericOptionCode(6)); !bytes.Equal(got, []byte{8}) {
		t.Errorf("PXE discovery control %v, want [8]: the boot file of this answer, no discovery", got)
	}
	if got := reply.GetOneOption(dhcpv4.OptionClientMachineIdentifier); len(got) != 17 {
		t.Errorf("client machine ID %x not echoed", got)
	}
}

func TestProxyAnswersPXEFirmwareWithAnInstallPending(t *testing.T) {
	s := newSegment(t, dhcp.Proxy)
	c := s.client(t, pending)
	for _, tc := range []struct {
		name     string
		mods     []dhcpv4.Modifier
		bootFile string
	}{
		{"BIOS", pxeClient(iana.INTEL_X86PC), "undionly.kpxe"},
		{"UEFI x64", pxeClient(iana.EFI_X86_64), "snponly.efi"},
		{"UEFI BC", pxeClient(iana.EFI_BC), "snponly.efi"},
		{"iPXE", ipxeClient(iana.INTEL_X86PC), scriptURL + "?mac=52%3A54%3A00%3A00%3A00%3A01"},
		{"iPXE UEFI", ipxeClient(iana.EFI_X86_64), scriptURL + "?mac=52%3A54%3A00%3A00%3A00%3A01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			offer, err := discover(c, tc.mods...)
			if err != nil {
				t.Fatalf("no offer: %v\n%s", err, s.logs)
			}
			if !offer.YourIPAddr.IsUnspecified() {
				t.Errorf("a proxy offered address %v; the site's DHCP server hands them out", offer.YourIPAddr)
			}
			checkNetboot(t, s, offer, tc.bootFile)
		})
	}
	if !strings.Contains(s.logs.String(), "DHCP: answered") {
		t.Errorf("answers not logged:\n%s", s.logs)
	}
}

func TestProxyIsSilentToOthers(t *testing.T) {
	s := newSegment(t, dhcp.Proxy)
	for _, tc := range []struct {
		name   string
		mac    string
		mods   []dhcpv4.Modifier
		reason string
	}{
		{"no install pending", idle, pxeClient(iana.INTEL_X86PC), "no install pending"},
		{"no install pending, iPXE", idle, ipxeClient(iana.EFI_X86_64), "no install pending"},
		{"not PXE", pending, nil, ""},
		{"unknown architecture", pending, pxeClient(iana.EFI_ARM64), "no iPXE build for the client's architecture"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			offer, err := discover(s.client(t, tc.mac), tc.mods...)
			if err == nil {
				t.Fatalf("offered %s", offer.Summary())
			}
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nclient4.ErrNoResponse) {
				t.Fatalf("want no answer, got %v", err)
			}
			if tc.reason != "" && !strings.Contains(s.logs.String(), tc.reason) {
				t.Errorf("silence not logged with %q:\n%s", tc.reason, s.logs)
			}
		})
	}
}

// A PXE client that already has an address asks the proxy again on
// port 4011 (PXE 2.1, section 2.2.3) before it fetches the boot file.
func TestProxyAnswersTheBootServerRequest(t *testing.T) {
	s := newSegment(t, dhcp.Proxy)
	host := s.sub.Host4(3).Addr()
	s.lab.Address(s.hostNS, s.hostIf, netip.PrefixFrom(host, s.subnet.Bits()).String())

	ask := func(mac string) (*dhcpv4.DHCPv4, error) {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			t.Fatal(err)
		}
		var conn *net.UDPConn
		s.lab.MustCall(s.hostNS, func() { conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: host.AsSlice()}) })
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		req, err := dhcpv4.New(append(pxeClient(iana.EFI_X86_64),
			dhcpv4.WithHwAddr(hw), dhcpv4.WithClientIP(host.AsSlice()),
			dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest))...)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := conn.WriteToUDP(req.ToBytes(), &net.UDPAddr{IP: s.server.AsSlice(), Port: 4011}); err != nil {
			t.Fatal(err)
		}
		_ = conn.SetReadDeadline(time.Now().Add(quiet))
		buf := make([]byte, 1500)
		n, err := conn.Read(buf)
		if err != nil {
			return nil, err
		}
		return dhcpv4.FromBytes(buf[:n])
	}

	ack, err := ask(pending)
	if err != nil {
		t.Fatalf("no answer on port 4011: %v\n%s", err, s.logs)
	}
	if ack.MessageType() != dhcpv4.MessageTypeAck {
		t.Errorf("answer %s, want ACK", ack.MessageType())
	}
	checkNetboot(t, s, ack, "snponly.efi")

	if ack, err := ask(idle); err == nil {
		t.Errorf("answered a machine without an install pending: %s", ack.Summary())
	}
}

func TestFullModeLeasesAndRenews(t *testing.T) {
	s := newSegment(t, dhcp.Full)
	c := s.client(t, pending)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	lease, err := c.Request(ctx, pxeClient(iana.INTEL_X86PC)...)
	if err != nil {
		t.Fatalf("no lease: %v\n%s", err, s.logs)
	}
	ack := lease.ACK
	addr, _ := netip.AddrFromSlice(ack.YourIPAddr.To4())
	first, last := s.sub.Host4(100).Addr(), s.sub.Host4(101).Addr()
	if addr.Less(first) || last.Less(addr) {
		t.Fatalf("leased %v, outside the range %v-%v", addr, first, last)
	}
	checkNetboot(t, s, ack, "undionly.kpxe")
	if ones, _ := ack.SubnetMask().Size(); ones != s.subnet.Bits() {
		t.Errorf("mask /%d, want /%d", ones, s.subnet.Bits())
	}
	if got := ack.IPAddressLeaseTime(0); got != time.Hour {
		t.Errorf("lease time %v, want 1h", got)
	}
	if r := ack.Router(); len(r) != 1 || !r[0].Equal(s.server.AsSlice()) {
		t.Errorf("router %v, want %v", r, s.server)
	}

	// The client takes the address and renews it, unicast, from it.
	s.lab.Address(s.hostNS, s.hostIf, netip.PrefixFrom(addr, s.subnet.Bits()).String())
	renewed, err := c.Renew(ctx, lease)
	if err != nil {
		t.Fatalf("renewal refused: %v\n%s", err, s.logs)
	}
	if !renewed.ACK.YourIPAddr.Equal(addr.AsSlice()) {
		t.Errorf("renewed %v, want %v", renewed.ACK.YourIPAddr, addr)
	}

	// The installer the machine boots next is no PXE client: it still
	// gets its address.
	installer, err := c.Request(ctx)
	if err != nil {
		t.Fatalf("the installer got no lease: %v\n%s", err, s.logs)
	}
	if !installer.ACK.YourIPAddr.Equal(addr.AsSlice()) || installer.ACK.BootFileName != "" {
		t.Errorf("installer got %v and boot file %q, want %v and none", installer.ACK.YourIPAddr, installer.ACK.BootFileName, addr)
	}
}

func TestFullModeIsSilentToMachinesWithoutAnInstall(t *testing.T) {
	s := newSegment(t, dhcp.Full)
	c := s.client(t, idle)
	for _, mods := range [][]dhcpv4.Modifier{pxeClient(iana.INTEL_X86PC), nil} {
		if offer, err := discover(c, mods...); err == nil {
			t.Errorf("offered %s", offer.Summary())
		}
	}
	if !strings.Contains(s.logs.String(), "no install pending") {
		t.Errorf("silence not logged:\n%s", s.logs)
	}
}
