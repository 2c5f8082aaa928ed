// Package dhcp answers the DHCP of netbooting servers so that their
// firmware finds iPXE and, through iPXE, the boot service's script.
//
// A site keeps its own DHCP server, so by default this is a proxyDHCP
// server (PXE specification 2.1, section 2.2.3): it adds the PXE boot
// options to the site's offers and hands out no address. A lab without a
// DHCP server can run it in full mode, where it also leases addresses.
//
// Only a machine with an install pending is answered. Every other one gets
// nothing from here, so its firmware gives up on the network and boots
// from its disk: an installed server never reinstalls by accident, even if
// its boot order puts the network first.
package dhcp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/insomniacslk/dhcp/iana"
)

// Mode says whether the server leases addresses.
type Mode string

const (
	// Proxy adds boot options to the site DHCP server's offers.
	Proxy Mode = "proxy"
	// Full is the only DHCP server on the network: addresses and boot
	// options.
	Full Mode = "full"
)

// Ports the PXE specification fixes: DHCP's, and the boot server's a
// client unicasts its ProxyDHCPREQUEST to once it has an address.
const (
	dhcpPort = dhcpv4.ServerPort
	pxePort  = 4011
)

// Installs says whether a machine has an install pending. The boot
// service is one.
type Installs interface {
	Pending(ctx context.Context, mac string) (bool, error)
}

// Config is one DHCP server on the provisioning network.
type Config struct {
	// Interface is the provisioning network's interface. The server binds
	// to it: a broadcast says nothing of the network it came from, and
	// firmware on another network must not get our boot files.
	Interface string
	// Address is this server's address on that network, the server
	// identifier (option 54) clients address their requests to; unset
	// means the interface's first IPv4 address.
	Address netip.Addr
	// Mode is Proxy or Full; empty means Proxy.
	Mode Mode
	// TFTPServer is where firmware fetches iPXE (next-server);
	// unset means Address.
	TFTPServer netip.Addr
	// ScriptURL is the boot service's iPXE script, e.g.
	// http://10.0.0.1:8080/boot/ipxe. iPXE gets it with the machine's MAC
	// in the mac query parameter.
	ScriptURL string
	// BIOSBootFile and UEFIBootFile are the iPXE builds firmware fetches
	// over TFTP; empty means undionly.kpxe and snponly.efi, which drive
	// the NIC through the firmware's own network stack and so work on any
	// NIC the firmware knows.
	BIOSBootFile string
	UEFIBootFile string
	// Leases are the addresses full mode hands out.
	Leases LeaseConfig
	// Installs is asked about every PXE client before it is answered.
	Installs Installs
	Logger   *slog.Logger
}

// LeaseConfig is the address pool of full mode.
type LeaseConfig struct {
	// First and Last bound the addresses handed out, both included.
	First, Last netip.Addr
	// Subnet is the network they belong to, whose mask clients get;
	// unset means the network of the interface's address.
	Subnet netip.Prefix
	// Router and DNS are optional.
	Router   netip.Addr
	DNS      []netip.Addr
	Duration time.Duration
}

// Server is a DHCP server listening on the provisioning network.
type Server struct {
	cfg       Config
	scriptURL *url.URL
	leases    *leases // full mode only
	dhcp, pxe *net.UDPConn
}

// Listen checks cfg and binds the DHCP and PXE ports, which needs root
// (or CAP_NET_BIND_SERVICE and CAP_NET_RAW).
func Listen(cfg Config) (*Server, error) {
	if cfg.Mode == "" {
		cfg.Mode = Proxy
	}
	if cfg.Mode != Proxy && cfg.Mode != Full {
		return nil, fmt.Errorf("dhcp: mode %q: want %s or %s", cfg.Mode, Proxy, Full)
	}
	if !cfg.Address.IsValid() || (cfg.Mode == Full && !cfg.Leases.Subnet.IsValid()) {
		onLink, err := interfaceAddress(cfg.Interface)
		if err != nil {
			return nil, fmt.Errorf("dhcp: %w", err)
		}
		if !cfg.Address.IsValid() {
			cfg.Address = onLink.Addr()
		}
		if !cfg.Leases.Subnet.IsValid() {
			cfg.Leases.Subnet = onLink.Masked()
		}
	}
	if !cfg.Address.Is4() {
		return nil, fmt.Errorf("dhcp: server address %v: want an IPv4 address", cfg.Address)
	}
	if !cfg.TFTPServer.IsValid() {
		cfg.TFTPServer = cfg.Address
	}
	if cfg.BIOSBootFile == "" {
		cfg.BIOSBootFile = "undionly.kpxe"
	}
	if cfg.UEFIBootFile == "" {
		cfg.UEFIBootFile = "snponly.efi"
	}
	script, err := url.Parse(cfg.ScriptURL)
	if err != nil || (script.Scheme != "http" && script.Scheme != "https") || script.Host == "" {
		return nil, fmt.Errorf("dhcp: iPXE script URL %q: want http(s)://host/path", cfg.ScriptURL)
	}
	if cfg.Installs == nil || cfg.Logger == nil {
		return nil, errors.New("dhcp: Installs and Logger are required")
	}
	s := &Server{cfg: cfg, scriptURL: script}
	if cfg.Mode == Full {
		if s.leases, err = newLeases(cfg.Leases, cfg.Address); err != nil {
			return nil, fmt.Errorf("dhcp: %w", err)
		}
	}
	if s.dhcp, err = server4.NewIPv4UDPConn(cfg.Interface, &net.UDPAddr{Port: dhcpPort}); err != nil {
		return nil, fmt.Errorf("dhcp: listen on %s port %d: %w", cfg.Interface, dhcpPort, err)
	}
	if s.pxe, err = server4.NewIPv4UDPConn(cfg.Interface, &net.UDPAddr{Port: pxePort}); err != nil {
		_ = s.dhcp.Close()
		return nil, fmt.Errorf("dhcp: listen on %s port %d: %w", cfg.Interface, pxePort, err)
	}
	return s, nil
}

// interfaceAddress is the first IPv4 address of the interface name, with
// its prefix length.
func interfaceAddress(name string) (netip.Prefix, error) {
	if name == "" {
		return netip.Prefix{}, errors.New("no interface to take the server's address from")
	}
	iface, err := net.InterfaceByName(name)
	if err != nil {
		return netip.Prefix{}, err
	}
	addrs, err := iface.Addrs()
	if err != nil {
		return netip.Prefix{}, err
	}
	for _, a := range addrs {
		if ipnet, ok := a.(*net.IPNet); ok && ipnet.IP.To4() != nil {
			ones, _ := ipnet.Mask.Size()
			addr, _ := netip.AddrFromSlice(ipnet.IP.To4())
			return netip.PrefixFrom(addr, ones), nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("interface %s has no IPv4 address", name)
}

// Serve answers until ctx ends, then closes the ports.
func (s *Server) Serve(ctx context.Context) error {
	s.cfg.Logger.Info("DHCP server listening", "interface", s.cfg.Interface, "address", s.cfg.Address,
		"mode", s.cfg.Mode, "tftp", s.cfg.TFTPServer, "script", s.cfg.ScriptURL)
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	for _, conn := range []*net.UDPConn{s.dhcp, s.pxe} {
		wg.Go(func() { errc <- s.read(ctx, conn, &wg) })
	}
	<-ctx.Done()
	_ = s.dhcp.Close()
	_ = s.pxe.Close()
	wg.Wait()
	close(errc)
	for err := range errc {
		if err != nil {
			return err
		}
	}
	return nil
}

// read handles the packets of one port until it is closed. Each packet
// is handled apart, so a slow inventory holds up only its own machine.
func (s *Server) read(ctx context.Context, conn *net.UDPConn, wg *sync.WaitGroup) error {
	port := conn.LocalAddr().(*net.UDPAddr).Port
	buf := make([]byte, 1500)
	for {
		n, peer, err := conn.ReadFromUDP(buf)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("dhcp: reading port %d: %w", port, err)
		}
		req, err := dhcpv4.FromBytes(buf[:n])
		if err != nil {
			s.cfg.Logger.Debug("DHCP: not a DHCP packet", "from", peer, "port", port, "error", err)
			continue
		}
		wg.Go(func() { s.handle(ctx, conn, port, peer, req) })
	}
}

// handle answers one request or logs why not.
func (s *Server) handle(ctx context.Context, conn *net.UDPConn, port int, peer *net.UDPAddr, req *dhcpv4.DHCPv4) {
	log := s.cfg.Logger.With("mac", req.ClientHWAddr.String(), "xid", req.TransactionID.String(),
		"message", req.MessageType().String(), "port", port)
	reply, why := s.answer(ctx, port, req)
	if reply == nil {
		if why == notPXE {
			// A proxy sees every DHCP packet of the site: logging each
			// lease renewal would bury the netboots.
			log.Debug("DHCP: not answered", "reason", why)
			return
		}
		log.Info("DHCP: not answered", "reason", why)
		return
	}
	dst := s.destination(port, peer, req)
	if _, err := conn.WriteToUDP(reply.ToBytes(), dst); err != nil {
		log.Warn("DHCP: sending the answer failed", "to", dst, "error", err)
		return
	}
	log.Info("DHCP: answered", "reply", reply.MessageType().String(), "to", dst,
		"address", reply.YourIPAddr, "nextServer", reply.ServerIPAddr, "bootFile", reply.BootFileName)
}

// destination follows RFC 2131 4.1: a relay gets the answer for its
// network, a client with an address gets it there, and one still without
// gets a broadcast, as nothing can resolve its MAC yet.
func (s *Server) destination(port int, peer *net.UDPAddr, req *dhcpv4.DHCPv4) *net.UDPAddr {
	switch {
	case port == pxePort:
		return peer
	case !req.GatewayIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.GatewayIPAddr, Port: dhcpv4.ServerPort}
	case !req.ClientIPAddr.IsUnspecified():
		return &net.UDPAddr{IP: req.ClientIPAddr, Port: dhcpv4.ClientPort}
	}
	return &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort}
}

// Reasons for not answering, as logged.
const (
	notPXE       = "not a PXE client"
	notPending   = "no install pending for this MAC: its firmware goes on to its disk"
	notOurs      = "the client asked another DHCP server"
	siteAnswers  = "a request for an address: the site's DHCP server answers it"
	unknownArch  = "no iPXE build for the client's architecture"
	unsupported  = "a message this server does not answer"
	noAddress    = "no address left in the pool"
	inventoryErr = "the inventory could not say whether an install is pending"
)

// answer is the reply to req, or nil and why there is none.
func (s *Server) answer(ctx context.Context, port int, req *dhcpv4.DHCPv4) (*dhcpv4.DHCPv4, string) {
	if req.OpCode != dhcpv4.OpcodeBootRequest {
		return nil, unsupported
	}
	mt := req.MessageType()
	pxe := strings.HasPrefix(req.ClassIdentifier(), "PXEClient")
	if port == pxePort || s.cfg.Mode == Proxy {
		if !pxe {
			return nil, notPXE
		}
		switch {
		case port == pxePort && mt == dhcpv4.MessageTypeRequest:
			return s.netboot(ctx, req, dhcpv4.MessageTypeAck, nil)
		case port == dhcpPort && mt == dhcpv4.MessageTypeDiscover:
			return s.netboot(ctx, req, dhcpv4.MessageTypeOffer, nil)
		case port == dhcpPort && mt == dhcpv4.MessageTypeRequest:
			return nil, siteAnswers
		}
		return nil, unsupported
	}
	return s.answerFull(ctx, req, pxe)
}

// answerFull leases addresses. A PXE client is answered only with an
// install pending, as in proxy mode; any other client (an installer, an
// installed OS) only if it has an install pending or holds a lease from
// us, so the server never takes over a network it shares by mistake.
func (s *Server) answerFull(ctx context.Context, req *dhcpv4.DHCPv4, pxe bool) (*dhcpv4.DHCPv4, string) {
	mac := req.ClientHWAddr.String()
	if req.MessageType() == dhcpv4.MessageTypeRelease {
		s.leases.release(mac, req.ClientIPAddr)
		return nil, "released"
	}
	mt := dhcpv4.MessageTypeOffer
	var addr netip.Addr
	switch req.MessageType() {
	case dhcpv4.MessageTypeDiscover:
	case dhcpv4.MessageTypeRequest:
		if id := req.ServerIdentifier(); id != nil && !id.Equal(s.cfg.Address.AsSlice()) {
			s.leases.forgetOffer(mac)
			return nil, notOurs
		}
		mt = dhcpv4.MessageTypeAck
		addr = requested(req)
	default:
		return nil, unsupported
	}
	if !pxe && !s.leases.holds(mac) {
		pending, err := s.cfg.Installs.Pending(ctx, mac)
		if err != nil {
			s.cfg.Logger.Warn("DHCP: asking for a pending install failed", "mac", mac, "error", err)
			return nil, inventoryErr
		}
		if !pending {
			return nil, notPending
		}
	}
	// Pick the address before the boot options: a PXE client with no
	// pending install gets nothing, and must not take an address either.
	lease := func(reply *dhcpv4.DHCPv4) (string, bool) {
		if mt == dhcpv4.MessageTypeOffer {
			a, ok := s.leases.offer(mac)
			if !ok {
				return noAddress, false
			}
			addr = a
		} else if !s.leases.commit(mac, addr) {
			return fmt.Sprintf("address %v is not this client's lease", addr), false
		}
		s.leases.fill(reply, addr)
		return "", true
	}
	if pxe {
		return s.netboot(ctx, req, mt, lease)
	}
	reply, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(mt),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.Address.AsSlice())))
	if err != nil {
		return nil, err.Error()
	}
	if why, ok := lease(reply); !ok {
		return s.nak(req, mt, why)
	}
	return reply, ""
}

// nak refuses a request for an address that is not the client's, so it
// starts over at once rather than retrying for a minute; an offer
// without an address is just left unanswered.
func (s *Server) nak(req *dhcpv4.DHCPv4, mt dhcpv4.MessageType, why string) (*dhcpv4.DHCPv4, string) {
	if mt != dhcpv4.MessageTypeAck {
		return nil, why
	}
	nak, err := dhcpv4.NewReplyFromRequest(req, dhcpv4.WithMessageType(dhcpv4.MessageTypeNak),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.Address.AsSlice())),
		dhcpv4.WithOption(dhcpv4.OptMessage(why)))
	if err != nil {
		return nil, err.Error()
	}
	return nak, ""
}

// requested is the address a DHCPREQUEST asks for: option 50 while
// selecting or rebooting, ciaddr while renewing.
func requested(req *dhcpv4.DHCPv4) netip.Addr {
	ip := req.RequestedIPAddress()
	if ip == nil || ip.IsUnspecified() {
		ip = req.ClientIPAddr
	}
	a, _ := netip.AddrFromSlice(ip.To4())
	return a
}

// netboot is the reply that points a PXE client with an install pending
// at iPXE, or an iPXE client at the boot service's script. withLease, in
// full mode, adds the address.
func (s *Server) netboot(ctx context.Context, req *dhcpv4.DHCPv4, mt dhcpv4.MessageType,
	withLease func(*dhcpv4.DHCPv4) (string, bool)) (*dhcpv4.DHCPv4, string) {
	mac := req.ClientHWAddr.String()
	bootFile := ""
	if isIPXE(req) {
		// Debian's iPXE builds carry no embedded script: handing iPXE a
		// binary again would loop, so it gets the script.
		u := *s.scriptURL
		q := u.Query()
		q.Set("mac", mac)
		u.RawQuery = q.Encode()
		bootFile = u.String()
	} else {
		if bootFile = s.bootFile(req.ClientArch()); bootFile == "" {
			return nil, fmt.Sprintf("%s (%v)", unknownArch, req.ClientArch())
		}
	}
	pending, err := s.cfg.Installs.Pending(ctx, mac)
	if err != nil {
		s.cfg.Logger.Warn("DHCP: asking for a pending install failed", "mac", mac, "error", err)
		return nil, inventoryErr
	}
	if !pending {
		return nil, notPending
	}
	reply, err := dhcpv4.NewReplyFromRequest(req,
		dhcpv4.WithMessageType(mt),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(s.cfg.Address.AsSlice())),
		// The PXE specification has the server name itself a PXEClient;
		// firmware ignores offers that do not.
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient")),
		// Option 43, PXE_DISCOVERY_CONTROL bit 3: take the boot file from
		// this answer rather than discovering boot servers. Closed by an
		// end tag, as the specification writes it.
		dhcpv4.WithOption(dhcpv4.OptGeneric(dhcpv4.OptionVendorSpecificInformation,
			append(dhcpv4.Options{6: []byte{8}}.ToBytes(), 255))),
		// The specification has the client's machine ID echoed; some
		// firmware drops answers without it.
		dhcpv4.WithOptionCopied(req, dhcpv4.OptionClientMachineIdentifier),
	)
	if err != nil {
		return nil, err.Error()
	}
	reply.ServerIPAddr = s.cfg.TFTPServer.AsSlice()
	reply.BootFileName = bootFile
	if withLease != nil {
		if why, ok := withLease(reply); !ok {
			return s.nak(req, mt, why)
		}
	}
	return reply, ""
}

// bootFile is the iPXE build for a client architecture (option 93), or
// "" for none.
func (s *Server) bootFile(archs []iana.Arch) string {
	if len(archs) == 0 {
		// Option 93 came with PXE 2.1; older ROMs are all BIOS.
		return s.cfg.BIOSBootFile
	}
	switch archs[0] {
	case iana.INTEL_X86PC:
		return s.cfg.BIOSBootFile
	case iana.EFI_IA32, iana.EFI_BC, iana.EFI_X86_64:
		return s.cfg.UEFIBootFile
	}
	return ""
}

// isIPXE tells iPXE by its user class (option 77), which it sends raw
// rather than in RFC 3004's length-prefixed form.
func isIPXE(req *dhcpv4.DHCPv4) bool {
	uc := req.Options.Get(dhcpv4.OptionUserClassInformation)
	return bytes.Equal(uc, []byte("iPXE")) || bytes.Equal(uc, []byte("\x04iPXE"))
}
