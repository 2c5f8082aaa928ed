package agent

import (
	"bytes"
	"context"
	"encoding/binary"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	diskfs "github.com/diskfs/go-diskfs"
	"github.com/diskfs/go-diskfs/partition"
	"github.com/diskfs/go-diskfs/partition/gpt"
	"github.com/diskfs/go-diskfs/partition/mbr"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

// partitionedImage is a raw disk image of size bytes with one partition
// filled with a pattern, under a GPT or an MBR.
func partitionedImage(t *testing.T, size int64, withGPT bool) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image.raw")
	d, err := diskfs.Create(path, size, diskfs.SectorSizeDefault)
	if err != nil {
		t.Fatal(err)
	}
	var table partition.Table
	if withGPT {
		table = &gpt.Table{ProtectiveMBR: true, Partitions: []*gpt.Partition{
			{Index: 1, Start: 2048, End: uint64(size/512) - 2048, Type: gpt.LinuxFilesystem, Name: "root"},
		}}
	} else {
		table = &mbr.Table{LogicalSectorSize: 512, PhysicalSectorSize: 512, Partitions: []*mbr.Partition{
			{Index: 1, Bootable: true, Type: mbr.Linux, Start: 2048, Size: uint32(size/512) - 4096},
		}}
	}
	if err := d.Partition(table); err != nil {
		t.Fatal(err)
	}
	d.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fill := pattern(int(size) - 2*mib)
	copy(b[mib:], fill)
	return b
}

func testPlan(url string, file []byte, format agentapi.ImageFormat) agentapi.Plan {
	return agentapi.Plan{
		Image: agentapi.Image{URL: url, SHA256: sha(file), Format: format},
		Seed: agentapi.Seed{
			InstanceID:        "i-7f3a",
			Hostname:          "r12-u07",
			SSHAuthorizedKeys: []string{"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOx ops@metalflow"},
			UserData:          "packages: [htop]\nruncmd:\n  - [touch, /run/installed]\n",
			PhoneHomeURL:      "http://10.0.0.1:8080/api/v1/boot/phone-home?token=T0K",
			MAC:               "52:54:00:ab:cd:ef",
		},
		DiskBenchmarkMiB: 8,
	}
}

func testAgent() *agent {
	cfg := Config{URL: "http://127.0.0.1:9", Retries: 2, RetryBackoff: 10 * time.Millisecond}.withDefaults()
	return &agent{cfg: cfg, prog: &progress{}}
}

func testDisk(path string, size int64) []blockDevice {
	return []blockDevice{{Disk: agentapi.Disk{Name: "vdz", Size: size, Serial: "SN123"}, Path: path}}
}

func readAt(t *testing.T, path string, off, n int64) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// mtype reads a file of the FAT filesystem at off bytes into the disk.
func mtype(t *testing.T, disk string, off int64, name string) string {
	t.Helper()
	if _, err := exec.LookPath("mtype"); err != nil {
		t.Skip("mtools is not installed")
	}
	out, err := exec.Command("mtype", "-i", disk+"@@"+strconv.FormatInt(off, 10), "::"+name).CombinedOutput()
	if err != nil {
		t.Fatalf("mtype %s: %v\n%s", name, err, out)
	}
	return string(out)
}

func checkSeedFiles(t *testing.T, disk string, off int64) {
	t.Helper()
	label, err := exec.Command("mlabel", "-s", "-i", disk+"@@"+strconv.FormatInt(off, 10), "::").CombinedOutput()
	if err != nil || !strings.Contains(strings.ToLower(string(label)), "cidata") {
		t.Errorf("filesystem label: %s %v; want cidata (cloud-init finds the seed by it)", label, err)
	}
	meta := mtype(t, disk, off, "meta-data")
	for _, want := range []string{"instance-id: i-7f3a", "local-hostname: r12-u07"} {
		if !strings.Contains(meta, want) {
			t.Errorf("meta-data lacks %q:\n%s", want, meta)
		}
	}
	user := mtype(t, disk, off, "user-data")
	for _, want := range []string{"#cloud-config\n", "hostname: r12-u07", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOx ops@metalflow",
		"url: http://10.0.0.1:8080/api/v1/boot/phone-home?token=T0K", "- instance_id", "- hostname", "tries: 10", "- htop", "/run/installed"} {
		if !strings.Contains(user, want) {
			t.Errorf("user-data lacks %q:\n%s", want, user)
		}
	}
	network := mtype(t, disk, off, "network-config")
	for _, want := range []string{"version: 2", "macaddress: 52:54:00:ab:cd:ef", "dhcp4: true"} {
		if !strings.Contains(network, want) {
			t.Errorf("network-config lacks %q:\n%s", want, network)
		}
	}
}

func TestInstallGPTImageMovesBackupAndAddsSeed(t *testing.T) {
	const imageSize, diskSize = 48 << 20, 160 << 20
	raw := partitionedImage(t, imageSize, true)
	file := gzipped(t, raw)
	url := serve(t, &imageServer{data: file})
	disk := diskFile(t, diskSize)

	plan := testPlan(url, file, agentapi.FormatRawGzip)
	plan.Image.Size = imageSize
	res := testAgent().install(context.Background(), plan, testDisk(disk, diskSize))
	if !res.Succeeded {
		t.Fatalf("install failed: %s: %s", res.Class, res.Reason)
	}
	if res.Stats.ImageBytes != imageSize || res.Stats.DownloadedBytes != int64(len(file)) || res.Stats.DiskMiBps <= 0 || res.Stats.ImageMiBps <= 0 {
		t.Errorf("stats %+v", res.Stats)
	}
	// Everything between the primary and the old backup GPT is the image's.
	got := readAt(t, disk, 34*512, imageSize-67*512)
	if !bytes.Equal(got, raw[34*512:imageSize-33*512]) {
		t.Fatalf("image bytes differ at %d", 34*512+firstDiff(got, raw[34*512:]))
	}
	// The backup GPT is at the disk's last block, pointing back at LBA 1;
	// the image's, at its own end, is gone.
	backup := readAt(t, disk, diskSize-512, 512)
	if string(backup[:8]) != "EFI PART" || binary.LittleEndian.Uint64(backup[24:]) != diskSize/512-1 || binary.LittleEndian.Uint64(backup[32:]) != 1 {
		t.Errorf("no backup GPT header at the disk's end: % x", backup[:40])
	}
	if old := readAt(t, disk, imageSize-512, 512); string(old[:8]) == "EFI PART" {
		t.Error("the image's stale backup GPT header is still there")
	}
	d, err := diskfs.Open(disk, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	table, ok := d.Table.(*gpt.Table)
	if !ok {
		t.Fatalf("partition table %T, want GPT", d.Table)
	}
	if err := table.Verify(d.Backend, diskSize); err != nil {
		t.Errorf("GPT does not span the disk: %v", err)
	}
	if len(table.Partitions) != 2 || table.Partitions[0].Name != "root" || table.Partitions[1].Name != "cidata" {
		t.Fatalf("partitions %+v, want root and cidata", table.Partitions)
	}
	seed := table.Partitions[1]
	if seed.Start*512 < imageSize || (seed.End+1)*512 > diskSize-33*512 || seed.Type != gpt.MicrosoftBasicData {
		t.Errorf("seed partition %d-%d type %s", seed.Start, seed.End, seed.Type)
	}
	checkSeedFiles(t, disk, int64(seed.Start)*512)
}

func TestInstallMBRImageGetsMBRSeedPartition(t *testing.T) {
	const imageSize, diskSize = 16 << 20, 128 << 20
	raw := partitionedImage(t, imageSize, false)
	file := zstded(t, raw)
	disk := diskFile(t, diskSize)
	res := testAgent().install(context.Background(), testPlan(serve(t, &imageServer{data: file}), file, agentapi.FormatRawZstd), testDisk(disk, diskSize))
	if !res.Succeeded {
		t.Fatalf("install failed: %s: %s", res.Class, res.Reason)
	}
	d, err := diskfs.Open(disk, diskfs.WithOpenMode(diskfs.ReadOnly))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	table, ok := d.Table.(*mbr.Table)
	if !ok {
		t.Fatalf("partition table %T, want MBR", d.Table)
	}
	if p := table.Partitions[0]; p.Type != mbr.Linux || !p.Bootable || p.Start != 2048 {
		t.Errorf("the image's partition changed: %+v", p)
	}
	seed := table.Partitions[1]
	if seed.Type != mbr.Fat32LBA || int64(seed.Start+seed.Size)*512 > diskSize || int64(seed.Start)*512 < imageSize {
		t.Fatalf("seed partition %+v", seed)
	}
	checkSeedFiles(t, disk, int64(seed.Start)*512)
	if got := readAt(t, disk, 512, imageSize-512); !bytes.Equal(got, raw[512:]) {
		t.Fatalf("image bytes differ at %d", 512+firstDiff(got, raw[512:]))
	}
}

// noBootSignature fails if firmware or the kernel could find a partition
// table on the disk.
func noBootSignature(t *testing.T, disk string) {
	t.Helper()
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if table, err := partition.Read(f, 512, 512); err == nil {
		t.Errorf("the disk still has a %s partition table", table.Type())
	}
	if mbrSig := readAt(t, disk, 510, 2); bytes.Equal(mbrSig, []byte{0x55, 0xaa}) {
		t.Error("the disk still has an MBR signature")
	}
}

func TestChecksumMismatchLeavesNoBootableDisk(t *testing.T) {
	const imageSize, diskSize = 32 << 20, 128 << 20
	raw := partitionedImage(t, imageSize, true)
	disk := diskFile(t, diskSize)
	plan := testPlan(serve(t, &imageServer{data: raw}), raw, agentapi.FormatRaw)
	plan.Image.SHA256 = sha([]byte("another image"))
	res := testAgent().install(context.Background(), plan, testDisk(disk, diskSize))
	if res.Succeeded || res.Class != agentapi.ClassChecksum || !res.DiskWiped {
		t.Fatalf("result %+v, want a checksum failure with the disk wiped", res)
	}
	noBootSignature(t, disk)
	for _, off := range []int64{0, imageSize - mib, diskSize - mib} {
		if !bytes.Equal(readAt(t, disk, off, mib), make([]byte, mib)) {
			t.Errorf("the MiB at %d is not wiped", off)
		}
	}
}

func TestInstallFailuresBeforeWritingLeaveTheDisk(t *testing.T) {
	raw := partitionedImage(t, 32<<20, true)
	url := serve(t, &imageServer{data: raw})
	for _, tc := range []struct {
		name     string
		diskSize int64
		edit     func(*agentapi.Plan)
		want     agentapi.FailureClass
	}{
		{"no disk matching", 128 << 20, func(p *agentapi.Plan) { p.RootDevice.Serial = "SN999" }, agentapi.ClassNoDisk},
		{"disk too small", 40 << 20, func(*agentapi.Plan) {}, agentapi.ClassDiskTooSmall},
		{"image unreachable", 128 << 20, func(p *agentapi.Plan) { p.Image.URL = serve(t, http.NotFoundHandler()) }, agentapi.ClassImageUnreachable},
		{"seed without hostname", 128 << 20, func(p *agentapi.Plan) { p.Seed.Hostname = "" }, agentapi.ClassPlanInvalid},
		{"user-data sets phone_home", 128 << 20, func(p *agentapi.Plan) { p.Seed.UserData = "phone_home: {url: x}" }, agentapi.ClassPlanInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk := diskFile(t, tc.diskSize)
			plan := testPlan(url, raw, agentapi.FormatRaw)
			tc.edit(&plan)
			res := testAgent().install(context.Background(), plan, testDisk(disk, tc.diskSize))
			if res.Succeeded || res.Class != tc.want || res.DiskWiped {
				t.Fatalf("result %+v, want class %s and the disk untouched", res, tc.want)
			}
			if got := readAt(t, disk, 0, tc.diskSize); !bytes.Equal(got, bytes.Repeat([]byte{0xAA}, len(got))) {
				t.Fatal("the disk was written")
			}
		})
	}
}

func TestDiskTooSmallFoundWhileWritingWipes(t *testing.T) {
	const diskSize = 56 << 20
	raw := partitionedImage(t, 48<<20, true)
	file := gzipped(t, raw) // no size in the plan: found out while writing
	disk := diskFile(t, diskSize)
	res := testAgent().install(context.Background(), testPlan(serve(t, &imageServer{data: file}), file, agentapi.FormatRawGzip), testDisk(disk, diskSize))
	if res.Class != agentapi.ClassDiskTooSmall || !res.DiskWiped {
		t.Fatalf("result %+v, want disk-too-small with the disk wiped", res)
	}
	noBootSignature(t, disk)
}

func TestInstallQCOW2Image(t *testing.T) {
	const imageSize, diskSize = 32 << 20, 96 << 20
	raw := partitionedImage(t, imageSize, true)
	clear(raw[imageSize/2 : imageSize-2*mib]) // an unallocated run before the tail
	file := qcow2Of(t, raw, "-c")
	disk := diskFile(t, diskSize)
	res := testAgent().install(context.Background(), testPlan(serve(t, &imageServer{data: file}), file, agentapi.FormatQCOW2), testDisk(disk, diskSize))
	if !res.Succeeded {
		t.Fatalf("install failed: %s: %s", res.Class, res.Reason)
	}
	if got := readAt(t, disk, 34*512, imageSize-67*512); !bytes.Equal(got, raw[34*512:imageSize-33*512]) {
		t.Fatalf("image bytes differ at %d (unallocated clusters must read as zeros, not the old disk)", 34*512+firstDiff(got, raw[34*512:]))
	}
}
