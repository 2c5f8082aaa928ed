package netlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Site is a provisioning network as a data center has one: a bridge in its
// own namespace, machines on taps of it, and the site's ordinary DHCP
// server (dnsmasq) on a port of its own, handing out addresses and not a
// word of PXE. Whatever netboots the machines (metalflow's proxyDHCP)
// joins the bridge beside it. Tests of the DHCP server and of a whole
// deployment share it, so both meet the same site.
type Site struct {
	// NS holds Bridge; taps and the boot stack's port go here.
	NS     string
	Bridge string
	// Subnet is the bridge's network: the DHCP server is address 2 of it
	// and leases 100 to 150; the rest is free for the test.
	Subnet Subnet
	// Leases is dnsmasq's lease file ("expiry mac ip hostname client-id"
	// per line) and DHCPLog its log, for diagnosis.
	Leases  string
	DHCPLog string
}

// Site builds a provisioning network named after role and starts its DHCP
// server, which runs until the test ends. It skips the test without
// dnsmasq.
func (l *Lab) Site(role string) *Site {
	l.t.Helper()
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		l.t.Skip("skipping: needs dnsmasq, the site's DHCP server")
	}
	s := &Site{NS: l.Namespace(role), Bridge: "br0", Subnet: l.FreeSubnet()}
	dhcpdNS := l.Namespace(role + "dhcpd")
	l.IP(s.NS, "link", "add", s.Bridge, "type", "bridge")
	l.IP(s.NS, "link", "set", s.Bridge, "up")
	dhcpdIf, port := l.Veth(dhcpdNS, role+"d", s.NS, role+"p")
	l.IP(s.NS, "link", "set", port, "master", s.Bridge)
	l.Address(dhcpdNS, dhcpdIf, s.Subnet.Host4(2).String())

	dir := l.t.TempDir()
	s.Leases, s.DHCPLog = filepath.Join(dir, "dnsmasq.leases"), filepath.Join(dir, "dnsmasq.log")
	logFile, err := os.Create(s.DHCPLog)
	if err != nil {
		l.t.Fatalf("netlab: %v", err)
	}
	cmd := l.Command(dhcpdNS, "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--port=0",
		"--interface="+dhcpdIf, "--bind-interfaces", "--log-dhcp", "--log-facility=-",
		"--dhcp-leasefile="+s.Leases, "--pid-file="+filepath.Join(dir, "dnsmasq.pid"),
		fmt.Sprintf("--dhcp-range=%s,%s,255.255.255.0,1h", s.Subnet.Host4(100).Addr(), s.Subnet.Host4(150).Addr()))
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("netlab: starting dnsmasq: %v", err)
	}
	l.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		_ = logFile.Close()
	})
	return s
}
