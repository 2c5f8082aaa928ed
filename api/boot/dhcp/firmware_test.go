package dhcp_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/metalflow/metalflow/api/boot/dhcp"
	"github.com/metalflow/metalflow/api/boot/tftp"
	"github.com/metalflow/metalflow/internal/netlab"
	"github.com/metalflow/metalflow/internal/testlog"
)

// firmware is one way a virtual machine netboots.
type firmware struct {
	name string
	// qemu are the arguments that pick the firmware and the NIC's option
	// ROM; the NIC is netdev n0.
	qemu func(dir, mac string) []string
	// gaveUp is what the console shows once the firmware has given up on
	// the network.
	gaveUp string
}

func seaBIOS() firmware {
	return firmware{
		name: "BIOS",
		qemu: func(dir, mac string) []string {
			// SeaBIOS's serial console, at COM1's port (0x3f8, little
			// endian): the iPXE ROM writes to the screen, and there is
			// none.
			port := filepath.Join(dir, "sercon-port")
			_ = os.WriteFile(port, []byte{0xf8, 0x03}, 0o600)
			return []string{
				"-fw_cfg", "name=etc/sercon-port,file=" + port,
				"-boot", "n",
				// The default ROM of virtio-net: Debian's ipxe-qemu.
				"-device", "virtio-net-pci,netdev=n0,mac=" + mac,
			}
		},
		gaveUp: "No more network devices",
	}
}

// ovmf is UEFI with the firmware's own PXE client: no option ROM, so
// OVMF's virtio-net driver and EDK2's PXE do what a server's UEFI does,
// fetching iPXE over TFTP.
func ovmf() firmware {
	return firmware{
		name: "UEFI",
		qemu: func(dir, mac string) []string {
			vars := filepath.Join(dir, "OVMF_VARS.fd")
			return []string{
				"-drive", "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE.fd",
				"-drive", "if=pflash,format=raw,file=" + vars,
				"-device", "virtio-net-pci,netdev=n0,romfile=,bootindex=1,mac=" + mac,
			}
		},
		gaveUp: "PXE-E16",
	}
}

// TestFirmwareNetboots boots virtual machines under TCG on a bridge
// where dnsmasq is the site's DHCP server, without PXE options, and
// metalflow's proxyDHCP, TFTP and an iPXE script server answer: a machine
// with an install pending reaches the script and shows its marker, one
// without gets nothing from us and gives up on the network.
func TestFirmwareNetboots(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping: boots virtual machines under TCG, minutes (-short)")
	}
	for _, prog := range []string{"qemu-system-x86_64", "dnsmasq"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("skipping: needs %s", prog)
		}
	}
	for _, f := range []string{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd", "/usr/lib/ipxe/snponly.efi"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("skipping: needs %s (Debian's ovmf and ipxe): %v", f, err)
		}
	}
	for _, fw := range []firmware{seaBIOS(), ovmf()} {
		t.Run(fw.name, func(t *testing.T) {
			mac := "52:54:00:6d:66:01"
			site := newSite(t, mac)
			vm := site.boot(t, fw, mac)
			took, err := vm.await(site.marker, 6*time.Minute)
			if err != nil {
				t.Fatalf("%v\nconsole:\n%s\nmetalflow:\n%s\ndnsmasq:\n%s", err, vm.console(), site.logs, site.dnsmasq)
			}
			t.Logf("%s: power-on to marker %s", fw.name, took.Round(100*time.Millisecond))
			if got := site.scripts(); len(got) == 0 || got[0] != mac {
				t.Errorf("script requests for %v, want %s", got, mac)
			}
			if fw.name == "UEFI" && !logged(site.logs.String(), "TFTP: sent", "file=snponly.efi") {
				t.Errorf("UEFI firmware did not fetch snponly.efi over TFTP:\n%s", site.logs)
			}
		})
		t.Run(fw.name+" without an install", func(t *testing.T) {
			site := newSite(t)
			mac := "52:54:00:6d:66:02"
			vm := site.boot(t, fw, mac)
			took, err := vm.await(fw.gaveUp, 6*time.Minute)
			if err != nil {
				t.Fatalf("%v\nconsole:\n%s\nmetalflow:\n%s", err, vm.console(), site.logs)
			}
			t.Logf("%s without an install: power-on to giving up on the network %s", fw.name, took.Round(100*time.Millisecond))
			logs := site.logs.String()
			if !logged(logs, "DHCP: not answered", "mac="+mac, "no install pending") {
				t.Errorf("the silence to %s is not logged:\n%s", mac, logs)
			}
			if strings.Contains(logs, "DHCP: answered") || strings.Contains(logs, "TFTP: sending") || len(site.scripts()) > 0 {
				t.Errorf("a machine without an install got a boot file:\n%s", logs)
			}
			if !strings.Contains(vm.console(), "Configuring (net0") && fw.name == "BIOS" {
				t.Errorf("the firmware never asked DHCP:\n%s", vm.console())
			}
		})
	}
}

// logged tells whether one line of logs holds every one of words.
func logged(logs string, words ...string) bool {
	for line := range strings.SplitSeq(logs, "\n") {
		all := true
		for _, w := range words {
			all = all && strings.Contains(line, w)
		}
		if all {
			return true
		}
	}
	return false
}

// site is a provisioning network (netlab's site: a bridge and the site's
// DHCP server) with metalflow's boot stack on a port of its own and the
// machines on taps.
type site struct {
	lab      *netlab.Lab
	lanNS    string
	bridge   string
	sub      netlab.Subnet
	pending  installs
	marker   string
	logs     *testlog.Buffer
	dnsmasq  dnsmasqLog
	mu       sync.Mutex
	requests []string
}

// dnsmasqLog is the site DHCP server's log file, read when printed.
type dnsmasqLog string

func (f dnsmasqLog) String() string {
	b, _ := os.ReadFile(string(f))
	return string(b)
}

// newSite builds the network with an install pending for the machines
// of pending.
func newSite(t *testing.T, pending ...string) *site {
	t.Helper()
	l := netlab.New(t)
	lan := l.Site("lan")
	marker := make([]byte, 8)
	_, _ = rand.Read(marker)
	s := &site{
		lab: l, lanNS: lan.NS, bridge: lan.Bridge, sub: lan.Subnet, pending: installs{},
		marker: "metalflow-marker-" + hex.EncodeToString(marker), logs: &testlog.Buffer{}, dnsmasq: dnsmasqLog(lan.DHCPLog),
	}
	for _, mac := range pending {
		s.pending[mac] = true
	}
	bootNS := l.Namespace("boot")
	bootIf, lanBoot := l.Veth(bootNS, "boot", s.lanNS, "lboot")
	l.IP(s.lanNS, "link", "set", lanBoot, "master", lan.Bridge)
	l.Address(bootNS, bootIf, s.sub.Host4(3).String())

	bootAddr := s.sub.Host4(3).Addr()
	logger := slog.New(slog.NewTextHandler(s.logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })

	// The iPXE script, as the boot service answers a pending install.
	var ln net.Listener
	var tftpConn net.PacketConn
	var srv *dhcp.Server
	var err, tftpErr, dhcpErr error
	l.MustCall(bootNS, func() {
		ln, err = net.Listen("tcp4", net.JoinHostPort(bootAddr.String(), "0"))
		tftpConn, tftpErr = net.ListenPacket("udp4", net.JoinHostPort(bootAddr.String(), "69"))
	})
	if err != nil || tftpErr != nil {
		t.Fatal(err, tftpErr)
	}
	httpSrv := &http.Server{Handler: http.HandlerFunc(s.script), ReadHeaderTimeout: 5 * time.Second}
	wg.Go(func() { _ = httpSrv.Serve(ln) })
	wg.Go(func() {
		<-ctx.Done()
		_ = httpSrv.Close()
	})
	// Serve opens a socket per transfer, so it runs inside the namespace.
	tftpSrv := tftp.New(tftp.Config{Logger: logger})
	wg.Go(func() {
		if err := l.Call(bootNS, func() { tftpErr = tftpSrv.Serve(ctx, tftpConn) }); err != nil || tftpErr != nil {
			t.Errorf("TFTP: %v %v", err, tftpErr)
		}
	})
	l.MustCall(bootNS, func() {
		srv, dhcpErr = dhcp.Listen(dhcp.Config{
			Interface: bootIf, Address: bootAddr, Mode: dhcp.Proxy,
			ScriptURL: "http://" + ln.Addr().String() + "/boot/ipxe",
			Installs:  s.pending, Logger: logger,
		})
	})
	if dhcpErr != nil {
		t.Fatal(dhcpErr)
	}
	wg.Go(func() {
		if err := srv.Serve(ctx); err != nil {
			t.Errorf("DHCP: %v", err)
		}
	})
	return s
}

func (s *site) script(w http.ResponseWriter, r *http.Request) {
	mac := r.URL.Query().Get("mac")
	s.mu.Lock()
	s.requests = append(s.requests, mac)
	s.mu.Unlock()
	if r.URL.Path != "/boot/ipxe" || !s.pending[mac] {
		_, _ = io.WriteString(w, "#!ipxe\nexit\n")
		return
	}
	fmt.Fprintf(w, "#!ipxe\necho %s\nshell\n", s.marker)
}

// scripts are the MACs the script was asked for.
func (s *site) scripts() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// vm is a virtual machine on the site's bridge.
type vm struct {
	serial  string
	started time.Time
}

// boot powers on a machine with mac on a tap of the bridge.
func (s *site) boot(t *testing.T, fw firmware, mac string) *vm {
	t.Helper()
	dir := t.TempDir()
	if fw.name == "UEFI" {
		vars, err := os.ReadFile("/usr/share/OVMF/OVMF_VARS.fd")
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, "OVMF_VARS.fd"), vars, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	tap := "tap" + strings.ReplaceAll(mac[len(mac)-2:], ":", "")
	s.lab.IP(s.lanNS, "tuntap", "add", "dev", tap, "mode", "tap")
	s.lab.IP(s.lanNS, "link", "set", tap, "master", s.bridge)
	s.lab.IP(s.lanNS, "link", "set", tap, "up")
	v := &vm{serial: filepath.Join(dir, "console.log")}
	args := append([]string{
		"-accel", "tcg", "-m", "256", "-nodefaults", "-display", "none", "-vga", "none",
		"-serial", "file:" + v.serial,
		"-netdev", "tap,id=n0,ifname=" + tap + ",script=no,downscript=no",
	}, fw.qemu(dir, mac)...)
	qemu := s.lab.Command(s.lanNS, "qemu-system-x86_64", args...)
	var out bytes.Buffer
	qemu.Stdout, qemu.Stderr = &out, &out
	v.started = time.Now()
	start(t, qemu)
	return v
}

// await waits for text on the console and says how long after power-on
// it came.
func (v *vm) await(text string, limit time.Duration) (time.Duration, error) {
	deadline := v.started.Add(limit)
	for time.Now().Before(deadline) {
		if strings.Contains(v.console(), text) {
			return time.Since(v.started), nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return 0, fmt.Errorf("%q not on the console within %s", text, limit)
}

func (v *vm) console() string {
	b, _ := os.ReadFile(v.serial)
	return string(b)
}

// start runs cmd until the test ends, whatever its outcome.
func start(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", cmd.Path, err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
}
