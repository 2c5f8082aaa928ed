package testagent

import (
	"bytes"
	"os"
	"os/exec"
	"testing"
)

func TestBuildGivesABootableKernelAndAnInitramfsWithTheAgent(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the agent initramfs")
	}
	files := Build(t)
	kernel, err := os.ReadFile(files.Kernel)
	if err != nil {
		t.Fatal(err)
	}
	// A bzImage carries "HdrS" at 0x202.
	if len(kernel) < 0x206 || string(kernel[0x202:0x206]) != "HdrS" {
		t.Fatalf("%s is not a Linux kernel image", files.Kernel)
	}
	if _, err := exec.LookPath("zstd"); err != nil {
		t.Skip("zstd is not installed to list the initramfs")
	}
	list, err := exec.Command("sh", "-c", "zstd -dc "+files.Initrd+" | busybox cpio -t").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"init", "bin/metalflow", "bin/busybox", "etc/udhcpc.script", "modules.dep", "virtio_blk.ko", "virtio_net.ko", "ahci.ko", "sd_mod.ko", "e1000e.ko"} {
		if !bytes.Contains(list, []byte(want+"\n")) && !bytes.Contains(list, []byte("/"+want+"\n")) {
			t.Errorf("the initramfs lacks %s", want)
		}
	}
	again := Build(t)
	if again != files {
		t.Errorf("a second build gave %+v, want the cached %+v", again, files)
	}
}
