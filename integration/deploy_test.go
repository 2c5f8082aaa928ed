package integration

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/internal/netlab"
	"github.com/metalflow/metalflow/internal/testagent"
	"github.com/metalflow/metalflow/internal/testimage"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// TestRealDeploy is the acceptance test of metalflow's own deployment: a
// qemu VM behind a simulated BMC is registered with an image and an SSH
// key, racked, netboots through metalflow's proxyDHCP beside the site's
// own DHCP server, runs the deploy agent, has the image written to its
// disk, boots it and phones home; then the key given at POST logs in and
// the VM is named after its serial. Once per firmware.
func TestRealDeploy(t *testing.T) {
	requireDeployHost(t)
	image := testimage.Build(context.Background(), t)
	agent := testagent.Build(t)
	for _, fw := range []string{"UEFI", "BIOS"} {
		t.Run(fw, func(t *testing.T) { realDeploy(t, fw, image, agent) })
	}
}

// deployLab is one provisioning site with metalflow and a qemu BMC in it.
type deployLab struct {
	lab    *netlab.Lab
	site   *netlab.Site
	client *http.Client
	api    string // with the admin token, see apiURL
	admin  string // bmcsim's admin endpoint
	dev    *process
	bootIP string // the boot stack's address on the site's bridge
	dir    string
}

// deployLabConfig shapes a deploy lab.
type deployLabConfig struct {
	vms int
	// devArgs and simArgs are added to dev's and bmcsim's command lines.
	devArgs, simArgs []string
}

// newDeployLab starts one provisioning site: dev as the boot stack beside
// the site's own DHCP server, and bmcsim with cfg.vms qemu VMs on the
// site's bridge.
func newDeployLab(t *testing.T, agent testagent.Files, cfg deployLabConfig) (*deployLab, []fleetEntry) {
	l := netlab.New(t)
	site := l.Site("site")
	boot := site.Subnet.Host4(1)
	l.Address(site.NS, site.Bridge, boot.String())
	bootIP := boot.Addr().String()
	d := &deployLab{lab: l, site: site, client: nsClient(l, site.NS), bootIP: bootIP, dir: t.TempDir()}

	// Temporal and its UI stay on the namespace's loopback; the API and
	// boot service are on the bridge, where the machines reach them.
	d.dev = startCommand(t, "dev", l.Command(site.NS, binaryPath, append([]string{"dev",
		"--temporal-listen", "127.0.0.1:7233", "--temporal-ui", "",
		"--http", bootIP + ":8080", "--public-url", "http://" + bootIP + ":8080",
		"--dhcp-interface", site.Bridge, "--dhcp-mode", "proxy", "--tftp-listen", bootIP + ":69",
		"--agent-kernel", agent.Kernel, "--agent-initrd", agent.Initrd,
		"--images-dir", filepath.Join(d.dir, "images"),
		// The qemu BMCs below listen on the namespace's loopback.
		"--bmc-allow-loopback"}, cfg.devArgs...)...))
	d.waitReady(t, "http://"+bootIP+":8080/readyz")
	d.api = apiURL(bootIP+":8080", d.dev.adminToken(t))

	manifest := filepath.Join(d.dir, "fleet.json")
	d.admin = "http://127.0.0.1:8099"
	startCommand(t, "bmcsim", l.Command(site.NS, binaryPath, append([]string{"bmcsim", "--count", fmt.Sprint(cfg.vms), "--vendor", "generic",
		"--listen-ip", "127.0.0.1", "--admin", "127.0.0.1:8099", "--manifest", manifest,
		"--qemu", "--qemu-accel", "tcg", "--qemu-network", "tap", "--qemu-bridge", site.Bridge,
		"--qemu-dir", filepath.Join(d.dir, "vms"), "--post-delay", "1s", "--speed", "1"}, cfg.simArgs...)...))
	fleet := readFleet(t, manifest, cfg.vms)
	t.Cleanup(func() {
		if t.Failed() {
			for _, e := range fleet {
				d.logVM(t, e.ID)
			}
			b, _ := os.ReadFile(site.DHCPLog)
			t.Logf("--- dnsmasq log (last 4 KiB) ---\n%s", tail(b, 4096))
		}
	})
	return d, fleet
}

func realDeploy(t *testing.T, fw, image string, agent testagent.Files) {
	d, fleet := newDeployLab(t, agent, deployLabConfig{vms: 1, devArgs: []string{"--ephemeral"}})
	l, site, dir := d.lab, d.site, d.dir
	e := fleet[0]

	if fw == "BIOS" {
		// The server is set up to boot in legacy BIOS mode, as its owner
		// left it: the lifecycle's overrides must keep that mode.
		out, err := l.Run(site.NS, binaryPath, "bmc", "--address", e.Address, "--user", e.Username,
			"--password", e.Password, "--insecure", "boot", "disk", "--legacy")
		require.NoError(t, err, out)
	}

	sum := imageDigest(t, image)
	d.uploadImage(t, "debian-test", image, sum)

	key := filepath.Join(dir, "id_ed25519")
	out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput()
	require.NoError(t, err, string(out))
	pub, err := os.ReadFile(key + ".pub")
	require.NoError(t, err)

	body, _ := json.Marshal(map[string]any{
		"serial":            e.Serial,
		"bmc":               map[string]string{"address": e.Address, "username": e.Username, "password": e.Password},
		"image":             "debian-test",
		"sshAuthorizedKeys": []string{strings.TrimSpace(string(pub))},
	})
	r := d.do(t, http.MethodPost, d.api+"/api/v1/servers", string(body))
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	r = d.do(t, http.MethodPost, d.api+"/api/v1/servers/"+e.Serial+"/racked",
		`{"site":"dc1","room":"A","rack":"R01","unit":10,"face":"front"}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))

	var st serverapi.ServerStatus
	deadline := time.Now().Add(15 * time.Minute)
	for {
		r = d.do(t, http.MethodGet, d.api+"/api/v1/servers/"+e.Serial, "")
		require.Equal(t, http.StatusOK, r.code, string(r.body))
		st = serverapi.ServerStatus{}
		r.json(t, &st)
		if st.State == "installed" {
			break
		}
		// A VM whose kernel panicked waits for nothing: say so now rather
		// than at the deadline.
		if strings.Contains(d.console(e.ID), "Kernel panic - not syncing") {
			t.Fatalf("%s: the VM's kernel panicked; server %s step %s", fw, st.State, st.Step)
		}
		if st.State == "attention" || st.State == "failed" || time.Now().After(deadline) {
			t.Fatalf("%s: server %s, not installed:\n%s", fw, st.State, r.body)
		}
		time.Sleep(5 * time.Second)
	}
	t.Logf("%s: status at installed:\n%s", fw, r.body)

	addr := d.leaseOf(t, e.MACs)
	// The key is the default user's (Debian's cloud images call it
	// debian); cloud-init refuses root logins with a hint.
	var hostname string
	eventually(t, 3*time.Minute, "ssh into the installed VM", func() error {
		out, err := l.Run(site.NS, "ssh", "-i", key, "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
			"-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "debian@"+addr, "hostname")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		hostname = strings.TrimSpace(lastLineOf(out))
		return nil
	})
	require.Equal(t, strings.ToLower(e.Serial), hostname)
	vm, why := d.vm(e.ID)
	require.NotNil(t, vm, why)
	mode := map[string]string{"BIOS": "Legacy", "UEFI": "UEFI"}[fw]
	require.Equal(t, "disk ("+mode+")", vm.LastBoot, "the installed OS booted from its disk in the server's firmware mode")
	d.logResult(t, fw, st.Deploy)
}

// nsClient is an HTTP client whose connections are opened inside ns.
func nsClient(l *netlab.Lab, ns string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			var c net.Conn
			var err error
			if callErr := l.Call(ns, func() { c, err = (&net.Dialer{}).DialContext(ctx, network, addr) }); callErr != nil {
				return nil, callErr
			}
			return c, err
		},
	}}
}

func (d *deployLab) do(t *testing.T, method, url, body string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	require.NoError(t, err)
	bearerFromURL(req)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := d.client.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return response{code: res.StatusCode, body: b}
}

func (d *deployLab) waitReady(t *testing.T, url string) {
	t.Helper()
	eventually(t, 90*time.Second, "GET "+url, func() error {
		res, err := d.client.Get(url)
		if err != nil {
			return err
		}
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", res.StatusCode)
		}
		return nil
	})
}

// imageDigest reads the digest build-image.sh keeps beside the image.
func imageDigest(t *testing.T, image string) string {
	t.Helper()
	b, err := os.ReadFile(image + ".sha256")
	require.NoError(t, err)
	sum, _, _ := strings.Cut(string(b), " ")
	require.Len(t, sum, 64)
	return sum
}

func (d *deployLab) uploadImage(t *testing.T, name, path, sum string) {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	req, err := http.NewRequest(http.MethodPost,
		d.api+"/api/v1/images?name="+name+"&sha256="+sum+"&format=raw&osFamily=debian", f)
	require.NoError(t, err)
	bearerFromURL(req)
	req.Header.Set("Content-Type", "application/octet-stream")
	res, err := d.client.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	require.Equal(t, http.StatusCreated, res.StatusCode, string(b))
}

// leaseOf is the address the site's DHCP server leased last to one of
// macs: the firmware and the agent lease addresses too, and the installed
// OS asks with a client ID of its own, so it gets another.
func (d *deployLab) leaseOf(t *testing.T, macs []string) string {
	t.Helper()
	var addr string
	eventually(t, time.Minute, "a lease for "+strings.Join(macs, ","), func() error {
		f, err := os.Open(d.site.Leases)
		if err != nil {
			return err
		}
		defer f.Close()
		latest := ""
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// expiry mac address hostname client-id; expiries of one
			// lease time order the leases by when they were granted.
			fields := strings.Fields(sc.Text())
			if len(fields) < 3 || !slices.ContainsFunc(macs, func(m string) bool { return strings.EqualFold(fields[1], m) }) {
				continue
			}
			if len(fields[0]) > len(latest) || len(fields[0]) == len(latest) && fields[0] > latest {
				latest, addr = fields[0], fields[2]
			}
		}
		if addr == "" {
			return fmt.Errorf("no lease yet")
		}
		return nil
	})
	return addr
}

// vmInfo is what the simulator's admin endpoint says about the VM.
type vmInfo struct {
	SerialLog string `json:"serial_log"`
	Disk      string `json:"disk"`
	LastBoot  string `json:"last_boot"`
	Boots     int    `json:"boots"`
}

// vm asks the simulator about the VM; nil if it cannot say.
func (d *deployLab) vm(id string) (*vmInfo, string) {
	r, err := d.client.Get(d.admin + "/bmcs/" + id)
	if err != nil {
		return nil, err.Error()
	}
	defer r.Body.Close()
	var b struct {
		Host struct {
			VM *vmInfo `json:"vm"`
		} `json:"host"`
	}
	raw, _ := io.ReadAll(r.Body)
	if json.Unmarshal(raw, &b) != nil || b.Host.VM == nil {
		return nil, string(raw)
	}
	return b.Host.VM, ""
}

// console is the VM's serial console so far.
func (d *deployLab) console(id string) string {
	vm, _ := d.vm(id)
	if vm == nil {
		return ""
	}
	b, _ := os.ReadFile(vm.SerialLog)
	return string(b)
}

// logVM shows the end of the VM's serial console, where a broken boot
// says why.
func (d *deployLab) logVM(t *testing.T, id string) {
	vm, why := d.vm(id)
	if vm == nil {
		t.Logf("bmcsim admin: %s", why)
		return
	}
	log, _ := os.ReadFile(vm.SerialLog)
	t.Logf("--- VM %s (%d boots, last %s) serial log (last 6 KiB) ---\n%s", id, vm.Boots, vm.LastBoot, tail(log, 6144))
}

// logResult prints the deploy's phases as seconds after power-on.
func (d *deployLab) logResult(t *testing.T, fw string, ds *serverapi.DeployStatus) {
	t.Helper()
	require.NotNil(t, ds, "an installed image deploy has a deploy status")
	require.NotNil(t, ds.PowerOnAt)
	since := func(at *time.Time) string {
		if at == nil {
			return "-"
		}
		return fmt.Sprintf("%.1fs", at.Sub(*ds.PowerOnAt).Seconds())
	}
	t.Logf("RESULT deploy %s: power-on 0s, agent up %s, written %s (%.1f MiB/s), reboot %s, phone home %s",
		fw, since(ds.AgentUpAt), since(ds.WrittenAt), ds.ImageMiBPerSecond, since(ds.RebootAt), since(ds.PhoneHomeAt))
}

func lastLineOf(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// TestBenchDeploy runs `metalflow bench deploy` as a user would, on the
// test image: one real deploy on qemu's own NAT, ending in the RESULT
// line whose figures all come from that run.
func TestBenchDeploy(t *testing.T) {
	requireDeployHost(t)
	image := testimage.Build(context.Background(), t)
	agent := testagent.Build(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, binaryPath, "bench", "deploy", "--image", image,
		"--agent-kernel", agent.Kernel, "--agent-initrd", agent.Initrd, "--qemu-accel", "tcg", "--disk-benchmark-mib", "256").CombinedOutput()
	require.NoError(t, err, "%s", tail(out, 8192))
	last := lastLineOf(string(out))
	t.Log(last)
	fields := map[string]float64{}
	for _, kv := range strings.Fields(strings.TrimPrefix(last, "RESULT ")) {
		k, v, ok := strings.Cut(kv, "=")
		require.True(t, ok, last)
		f, err := strconv.ParseFloat(v, 64)
		require.NoError(t, err, last)
		fields[k] = f
	}
	require.True(t, strings.HasPrefix(last, "RESULT "), last)
	for _, k := range []string{"power_on_to_agent_s", "image_mib_s", "disk_limit_mib_s", "write_ratio", "power_on_to_phone_home_s"} {
		require.Greater(t, fields[k], 0.0, "%s in %s", k, last)
	}
	require.Greater(t, fields["power_on_to_phone_home_s"], fields["power_on_to_agent_s"])
	require.InDelta(t, fields["image_mib_s"]/fields["disk_limit_mib_s"], fields["write_ratio"], 0.001)
}
