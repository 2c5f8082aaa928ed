package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition/gpt"

	"github.com/metalflow/metalflow/api/boot/agentapi"
	"github.com/metalflow/metalflow/internal/testagent"
)

// bootService is the boot service's side of agentapi, as the contract
// describes it, for one attempt.
type bootService struct {
	t       *testing.T
	token   string
	plan    agentapi.Plan
	started time.Time

	mu          sync.Mutex
	firstReport time.Duration
	inventory   *agentapi.Inventory
	planAsks    int
	progress    []agentapi.Progress
	result      *agentapi.Result
	done        chan struct{}
}

func (b *bootService) routes(mux *http.ServeMux) {
	auth := func(h func(http.ResponseWriter, *http.Request)) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if tok, ok := agentapi.BearerToken(r); !ok || tok != b.token {
				w.WriteHeader(http.StatusUnauthorized)
				json.NewEncoder(w).Encode(agentapi.Error{Message: "not an active attempt"})
				return
			}
			h(w, r)
		}
	}
	decode := func(r *http.Request, v any) bool {
		err := json.NewDecoder(http.MaxBytesReader(nil, r.Body, agentapi.MaxBodyBytes)).Decode(v)
		if err != nil {
			b.t.Errorf("%s: %v", r.URL.Path, err)
		}
		return err == nil
	}
	mux.HandleFunc("POST "+agentapi.PathInventory, auth(func(w http.ResponseWriter, r *http.Request) {
		var inv agentapi.Inventory
		if decode(r, &inv) {
			b.mu.Lock()
			if b.inventory == nil {
				b.firstReport = time.Since(b.started)
			}
			b.inventory = &inv
			b.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("GET "+agentapi.PathPlan, auth(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.planAsks++
		first := b.planAsks == 1
		b.mu.Unlock()
		if first {
			// Still comparing the inventory with Redfish's.
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusAccepted)
			return
		}
		json.NewEncoder(w).Encode(b.plan)
	}))
	mux.HandleFunc("POST "+agentapi.PathProgress, auth(func(w http.ResponseWriter, r *http.Request) {
		var p agentapi.Progress
		if decode(r, &p) {
			b.mu.Lock()
			b.progress = append(b.progress, p)
			b.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	mux.HandleFunc("POST "+agentapi.PathResult, auth(func(w http.ResponseWriter, r *http.Request) {
		var res agentapi.Result
		if decode(r, &res) {
			b.mu.Lock()
			if b.result == nil {
				close(b.done)
			}
			b.result = &res
			b.mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
}

// TestAgentInstallsInQEMU boots the real agent initramfs in a VM with a
// virtio disk and NIC, once per image format; the agent reports, fetches
// the plan, streams a 256 MiB image (through a dropped connection and a
// 503) and writes the seed. The disk is then checked from the host. Each
// format logs its write rate against the disk's own (RESULT lines), the
// figures the agent's write path is tuned by.
func TestAgentInstallsInQEMU(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a VM under TCG: minutes")
	}
	files := testagent.Build(t)
	for _, tool := range []string{"qemu-system-x86_64", "qemu-img", "mtype"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	const imageSize = 256 << 20
	raw := partitionedImage(t, imageSize, true)
	for _, tc := range []struct {
		format agentapi.ImageFormat
		file   func() []byte
	}{
		{agentapi.FormatRaw, func() []byte { return raw }},
		{agentapi.FormatRawZstd, func() []byte { return zstded(t, raw) }},
		{agentapi.FormatRawGzip, func() []byte {
			var gz bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
			zw.Write(raw)
			zw.Close()
			return gz.Bytes()
		}},
		{agentapi.FormatQCOW2, func() []byte { return qcow2Of(t, raw) }},
	} {
		t.Run(string(tc.format), func(t *testing.T) { installInQEMU(t, files, raw, tc.file(), tc.format) })
	}
}

// installInQEMU installs file, raw in the given format, on a fresh VM.
func installInQEMU(t *testing.T, files testagent.Files, raw, file []byte, format agentapi.ImageFormat) {
	const (
		diskSize = 2 << 30
		mac      = "52:54:00:12:34:56"
		serial   = "SN123"
		token    = "attempt-7-token"
	)
	imageSize := int64(len(raw))
	dir := t.TempDir()
	images := &imageServer{data: file, dropCut: len(file) / 3}
	images.fail503.Store(1)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	// The guest reaches the host's loopback at slirp's 10.0.2.2.
	base := "http://10.0.2.2:" + port
	svc := &bootService{t: t, token: token, done: make(chan struct{}), plan: agentapi.Plan{
		Image:      agentapi.Image{URL: base + "/images/test", SHA256: sha(file), Format: format},
		RootDevice: agentapi.RootDeviceHints{Serial: serial, Size: ">= 2"},
		Seed: agentapi.Seed{
			InstanceID: "i-qemu", Hostname: "qemu-host",
			SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOx ops@metalflow"},
			PhoneHomeURL:      base + "/api/v1/boot/phone-home?token=" + token,
		},
		DiskBenchmarkMiB: 256,
	}}
	if format != agentapi.FormatQCOW2 {
		svc.plan.Image.Size = imageSize
	}
	mux := http.NewServeMux()
	svc.routes(mux)
	mux.Handle("GET /images/test", images)
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })

	disk := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-f", "qcow2", disk, strconv.Itoa(diskSize)).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
	serialLog := filepath.Join(dir, "serial.log")
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	qemu := exec.CommandContext(ctx, "qemu-system-x86_64",
		"-accel", "tcg", "-cpu", "max", "-smp", "2", "-m", "1024",
		"-no-reboot", "-display", "none", "-monitor", "none",
		"-kernel", files.Kernel, "-initrd", files.Initrd,
		"-append", "console=ttyS0 "+agentapi.ParamURL+"="+base+" "+agentapi.ParamToken+"="+token,
		"-drive", "file="+disk+",if=none,id=d0,format=qcow2",
		"-device", "virtio-blk-pci,drive=d0,serial="+serial,
		"-nic", "user,model=virtio-net-pci,mac="+mac,
		"-serial", "file:"+serialLog,
	)
	svc.started = time.Now()
	out, err := qemu.CombinedOutput()
	elapsed := time.Since(svc.started)
	if err != nil {
		console, _ := os.ReadFile(serialLog)
		t.Fatalf("qemu after %s: %v\n%s\nconsole:\n%s", elapsed, err, out, console)
	}
	console, _ := os.ReadFile(serialLog)
	select {
	case <-svc.done:
	default:
		t.Fatalf("the VM powered off after %s without a result; console:\n%s", elapsed, console)
	}

	svc.mu.Lock()
	res, inv := *svc.result, *svc.inventory
	svc.mu.Unlock()
	if !res.Succeeded {
		t.Fatalf("install failed: %s: %s\nconsole:\n%s", res.Class, res.Reason, console)
	}
	if len(inv.Disks) != 1 || inv.Disks[0].Name != "vda" || inv.Disks[0].Size != diskSize || inv.Disks[0].Serial != serial ||
		!strings.HasPrefix(inv.Disks[0].ByPath, "/dev/disk/by-path/pci-0000:00:") {
		t.Errorf("inventory disks %+v, want vda of %d bytes, serial %s, a PCI by-path", inv.Disks, diskSize, serial)
	}
	if len(inv.NICs) != 1 || inv.NICs[0].MAC != mac || !inv.NICs[0].Link || inv.NICs[0].Driver != "virtio_net" {
		t.Errorf("inventory NICs %+v, want one virtio_net with MAC %s and link", inv.NICs, mac)
	}
	if inv.CPU.Count != 2 || inv.MemoryBytes < 900<<20 || inv.MemoryBytes > 1100<<20 {
		t.Errorf("inventory CPU %+v memory %d, want 2 CPUs and about 1 GiB", inv.CPU, inv.MemoryBytes)
	}
	// qcow2 writes its allocated clusters and zeroes the rest.
	if res.Stats.Resumes != 1 || res.Stats.DownloadedBytes != int64(len(file)) ||
		res.Stats.ImageBytes > imageSize || format != agentapi.FormatQCOW2 && res.Stats.ImageBytes != imageSize {
		t.Errorf("stats %+v, want one resume and every byte once", res.Stats)
	}
	if len(svc.progress) == 0 {
		t.Error("no progress reports")
	}

	// The disk, from the host.
	rawDisk := filepath.Join(dir, "disk.raw")
	if out, err := exec.Command("qemu-img", "convert", "-O", "raw", disk, rawDisk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img convert: %v\n%s", err, out)
	}
	got := readAt(t, rawDisk, 34*512, imageSize-67*512)
	if !bytes.Equal(got, raw[34*512:imageSize-33*512]) {
		t.Fatalf("image bytes on the disk differ at %d", 34*512+firstDiff(got, raw[34*512:]))
	}
	backup := readAt(t, rawDisk, diskSize-512, 512)
	if string(backup[:8]) != "EFI PART" || binary.LittleEndian.Uint64(backup[24:]) != diskSize/512-1 {
		t.Errorf("no backup GPT at the disk's end")
	}
	d, err := diskfs.Open(rawDisk, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	table := d.Table.(*gpt.Table)
	if len(table.Partitions) != 2 || table.Partitions[1].Name != "cidata" {
		t.Fatalf("partitions %+v, want the image's and cidata", table.Partitions)
	}
	seedOff := strconv.FormatInt(int64(table.Partitions[1].Start)*512, 10)
	network := mtype(t, rawDisk, int64(table.Partitions[1].Start)*512, "network-config")
	if !strings.Contains(network, `macaddress: "`+mac+`"`) {
		t.Errorf("network-config does not match the NIC the agent booted through (%s):\n%s", mac, network)
	}
	user := mtype(t, rawDisk, int64(table.Partitions[1].Start)*512, "user-data")
	if !strings.Contains(user, "url: "+base+"/api/v1/boot/phone-home?token="+token) || !strings.Contains(user, "hostname: qemu-host") {
		t.Errorf("user-data (seed at byte %s):\n%s", seedOff, user)
	}

	t.Logf("power-on → first report %.1fs (kernel uptime at report %.1fs); whole run %.0fs", svc.firstReport.Seconds(), inv.BootSeconds, elapsed.Seconds())
	t.Logf("%s: %d MiB written in %.1fs from a %d MiB file, %d resume; RESULT image_mib_s=%.1f disk_limit_mib_s=%.1f write_ratio=%.2f",
		format, res.Stats.ImageBytes>>20, res.Stats.WriteSeconds, len(file)>>20, res.Stats.Resumes,
		res.Stats.ImageMiBps, res.Stats.DiskMiBps, res.Stats.ImageMiBps/res.Stats.DiskMiBps)
}
