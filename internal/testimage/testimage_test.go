package testimage

import (
	"context"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// phoneHomeBound is how long power-on to phone-home may take under TCG on
// a shared 2-core machine (measured ~40-90 s; see scripts/build-image.sh).
const phoneHomeBound = 240 * time.Second

func TestSeedFiles(t *testing.T) {
	s := Seed{InstanceID: "i-1", Hostname: "node-1", MAC: "52:54:00:AB:CD:EF",
		PhoneHomeURL: "http://10.0.2.2:8080/ph/$INSTANCE_ID", SSHAuthorizedKeys: []string{"ssh-ed25519 AAAA test"}}
	f := s.Files()
	for name, want := range map[string][]string{
		"meta-data":      {`instance-id: "i-1"`, `local-hostname: "node-1"`},
		"user-data":      {"#cloud-config\n", `  - "ssh-ed25519 AAAA test"`, `url: "http://10.0.2.2:8080/ph/$INSTANCE_ID"`, "post: [instance_id, hostname]", "tries: 10"},
		"network-config": {"version: 2", `macaddress: "52:54:00:ab:cd:ef"`, "dhcp4: true"},
	} {
		for _, w := range want {
			if !strings.Contains(string(f[name]), w) {
				t.Errorf("%s lacks %q:\n%s", name, w, f[name])
			}
		}
	}
	if !strings.HasPrefix(string(f["user-data"]), "#cloud-config\n") {
		t.Errorf("user-data must start with #cloud-config:\n%s", f["user-data"])
	}
}

func TestWriteSeedImage(t *testing.T) {
	if _, err := exec.LookPath("mdir"); err != nil {
		t.Skip("mtools is not installed")
	}
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "seed.img")
	if err := WriteSeedImage(ctx, path, Seed{InstanceID: "i-1", Hostname: "h", MAC: "52:54:00:00:00:01"}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("mdir", "-i", path, "::").CombinedOutput()
	if err != nil {
		t.Fatalf("mdir: %v: %s", err, out)
	}
	for _, w := range []string{"CIDATA", "meta-data", "user-data", "network-config"} {
		if !strings.Contains(string(out), w) {
			t.Errorf("seed image lacks %s:\n%s", w, out)
		}
	}
}

// TestBoot boots the image for real, with BIOS and with UEFI, the seed on a
// second disk, and waits for the installed OS to phone home.
func TestBoot(t *testing.T) {
	ctx := bootTestContext(t)
	image := Build(ctx, t)
	for _, fw := range []Firmware{BIOS, UEFI} {
		t.Run(fw.String(), func(t *testing.T) {
			if reason := QEMUUnavailable(fw); reason != "" {
				t.Skip(reason)
			}
			dir := t.TempDir()
			seed := Seed{InstanceID: "i-boot-" + strings.ToLower(fw.String()), Hostname: "node-" + strings.ToLower(fw.String()), MAC: "52:54:00:12:34:56"}
			srv := StartPhoneHomeServer()
			defer srv.Close()
			seed.PhoneHomeURL = srv.GuestURL("/phone-home/$INSTANCE_ID")
			seedImg := filepath.Join(dir, "seed.img")
			if err := WriteSeedImage(ctx, seedImg, seed); err != nil {
				t.Fatal(err)
			}
			bootAndWait(ctx, t, VMConfig{Firmware: fw, Disk: image, Seed: seedImg, MAC: seed.MAC, Dir: dir}, seed, srv)
		})
	}
}

// TestBootSeedPartition puts the seed in a cidata partition appended to
// (a copy of) the image's own disk, as a deploy agent can, and boots it.
func TestBootSeedPartition(t *testing.T) {
	ctx := bootTestContext(t)
	image := Build(ctx, t)
	if reason := QEMUUnavailable(UEFI); reason != "" {
		t.Skip(reason)
	}
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("sfdisk is not installed (apt-get install fdisk)")
	}
	dir := t.TempDir()
	disk := filepath.Join(dir, "disk.raw")
	if out, err := exec.CommandContext(ctx, "cp", "--sparse=always", image, disk).CombinedOutput(); err != nil {
		t.Fatalf("copying the image: %v: %s", err, out)
	}
	srv := StartPhoneHomeServer()
	defer srv.Close()
	seed := Seed{InstanceID: "i-seed-partition", Hostname: "node-partition", MAC: "52:54:00:12:34:57",
		PhoneHomeURL: srv.GuestURL("/phone-home/$INSTANCE_ID")}
	if err := AppendSeedPartition(ctx, disk, seed); err != nil {
		t.Fatal(err)
	}
	bootAndWait(ctx, t, VMConfig{Firmware: UEFI, Disk: disk, MAC: seed.MAC, Dir: dir}, seed, srv)
}

// bootTestContext skips boot tests with -short and bounds them.
func bootTestContext(t *testing.T) context.Context {
	t.Helper()
	if testing.Short() {
		t.Skip("boots the test OS image under qemu TCG (minutes); skipped with -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// bootAndWait boots cfg and waits for seed's phone-home, logging how long
// it took from power-on; on failure it prints the serial console's tail.
func bootAndWait(ctx context.Context, t *testing.T, cfg VMConfig, seed Seed, srv *PhoneHomeServer) {
	t.Helper()
	vm, err := StartVM(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Stop()
	failed := func(format string, args ...any) {
		t.Helper()
		t.Errorf(format, args...)
		t.Logf("serial console (%s), last lines:\n%s", vm.SerialLog, vm.SerialTail(6000))
	}
	timeout := time.NewTimer(phoneHomeBound)
	defer timeout.Stop()
	select {
	case call := <-srv.Calls():
		secs := call.At.Sub(vm.Started).Seconds()
		if call.InstanceID != seed.InstanceID || call.Hostname != seed.Hostname {
			failed("phone-home after %.1f s from %s/%s, want %s/%s", secs, call.InstanceID, call.Hostname, seed.InstanceID, seed.Hostname)
			return
		}
		if want := "/phone-home/" + seed.InstanceID; call.Path != want {
			failed("phone-home to %s, want %s", call.Path, want)
			return
		}
		t.Logf("%s: power-on to phone-home %.1f s (instance %s, hostname %s)", cfg.Firmware, secs, call.InstanceID, call.Hostname)
	case <-vm.Done():
		failed("qemu exited before phone-home: %v", vm.Err())
	case <-timeout.C:
		failed("no phone-home within %s of power-on", phoneHomeBound)
	case <-ctx.Done():
		failed("no phone-home: %v", ctx.Err())
	}
}
