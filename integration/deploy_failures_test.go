package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/internal/testagent"
	"github.com/metalflow/metalflow/internal/testimage"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// TestDeployFailures drives the deploy's failures on real VMs, as a site
// meets them: a profile whose root-device hints name a disk the machine
// does not have, an image mirror that serves a corrupted copy, the mirror
// dropping the connection in the middle of the image, and the worker
// killed -9 while the image is being written. The first two park their
// server in attention with the reason and leave no disk that boots as if
// installed; after staff fix the mirror and retry, the broken download
// resumes where it stopped and the dead worker loses nothing: the server
// ends installed, booted from its disk.
func TestDeployFailures(t *testing.T) {
	requireDeployHost(t)
	image := testimage.Build(context.Background(), t)
	agent := testagent.Build(t)

	dir := t.TempDir()
	data, profiles := filepath.Join(dir, "data"), filepath.Join(dir, "profiles")
	require.NoError(t, os.MkdirAll(profiles, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(profiles, "pinned-disk.yaml"), []byte(
		"name: pinned-disk\nrole: compute\nroot_device:\n  serial: NO-SUCH-DISK\n"), 0o644))
	d, fleet := newDeployLab(t, agent, deployLabConfig{vms: 2,
		devArgs: []string{"--data", data, "--workers=false", "--profiles", profiles},
		// Raw disks, so the test can read what the agent left on them.
		simArgs: []string{"--qemu-disk-format", "raw"}})
	workerCmd := []string{"worker", "--temporal", "127.0.0.1:7233", "--metrics", "",
		"--inventory-db", filepath.Join(data, "metalflow.db"), "--credentials-key", filepath.Join(data, "credentials.key"),
		"--bmc-insecure", "--profiles", profiles}
	worker := startCommand(t, "worker-1", d.lab.Command(d.site.NS, binaryPath, workerCmd...))

	mirror := d.serveMirror(t, image)
	const corruptAt = 300 << 20
	mirror.corruptAt.Store(corruptAt)
	body, _ := json.Marshal(map[string]string{"name": "debian-mirror", "url": mirror.url, "sha256": imageDigest(t, image),
		"format": "raw", "osFamily": "debian"})
	r := d.do(t, http.MethodPost, d.api+"/api/v1/images", string(body))
	require.Equal(t, http.StatusCreated, r.code, string(r.body))

	pinned, corrupt := fleet[0], fleet[1]
	d.registerRacked(t, pinned, "debian-mirror", "pinned-disk", 10)
	d.registerRacked(t, corrupt, "debian-mirror", "", 12)

	// No disk matches the profile's hints: nothing is written.
	st := d.waitState(t, pinned.Serial, 10*time.Minute, "attention")
	require.Equal(t, serverapi.StepInstallOS, st.Attention.Step)
	require.Contains(t, st.Attention.Error, "no disk matches root device hints")
	require.Contains(t, st.Attention.Error, "NO-SUCH-DISK")
	require.Equal(t, serverapi.DeployFailed, st.Deploy.Phase)
	head := d.diskHead(t, pinned.ID)
	require.Equal(t, make([]byte, len(head)), head, "a deploy that found no disk wrote nothing")
	d.requireNotBootedFromDisk(t, pinned.ID)

	// The mirror's copy is corrupt: the whole image was written, and its
	// boot signatures wiped when the digest came out wrong.
	st = d.waitState(t, corrupt.Serial, 10*time.Minute, "attention")
	require.Equal(t, serverapi.StepInstallOS, st.Attention.Step)
	require.Contains(t, st.Attention.Error, "image SHA-256 is")
	require.Contains(t, st.Attention.Error, "boot signatures were wiped")
	require.Equal(t, 1, st.Deploy.Attempt)
	head = d.diskHead(t, corrupt.ID)
	require.False(t, head[510] == 0x55 && head[511] == 0xaa, "no MBR boot signature is left")
	require.NotEqual(t, "EFI PART", string(head[512:520]), "no GPT header is left")
	d.requireNotBootedFromDisk(t, corrupt.ID)

	// Staff fix the mirror and retry. This time the mirror drops the
	// connection once, 100 MiB in, and the worker dies while the image is
	// being written.
	mirror.corruptAt.Store(-1)
	mirror.dropAt.Store(100 << 20)
	r = d.do(t, http.MethodPost, d.api+"/api/v1/servers/"+corrupt.Serial+"/retry", `{}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	eventually(t, 10*time.Minute, "the retry's image write under way past the broken download", func() error {
		st, err := d.status(corrupt.Serial)
		if err != nil {
			return err
		}
		if st.Deploy == nil || st.Deploy.Attempt != 2 || st.Deploy.Phase != serverapi.DeployProgress || mirror.resumedFrom.Load() == 0 {
			return fmt.Errorf("state %s step %s, deploy %+v, resumed from %d", st.State, st.Step, st.Deploy, mirror.resumedFrom.Load())
		}
		return nil
	})
	worker.kill()
	t.Log("worker killed while the image is written")
	// The agent goes on writing and reporting; its reports wait in the
	// lifecycle's history for a worker.
	time.Sleep(10 * time.Second)
	startCommand(t, "worker-2", d.lab.Command(d.site.NS, binaryPath, workerCmd...))

	st = d.waitState(t, corrupt.Serial, 15*time.Minute, "installed")
	require.Equal(t, 2, st.InstallAttempt)
	require.Equal(t, 2, st.Deploy.Attempt)
	require.NotNil(t, st.Deploy.PhoneHomeAt, "the installed OS phoned home")
	require.Equal(t, serverapi.DeployBooted, st.Deploy.Phase)
	require.EqualValues(t, 1, mirror.drops.Load())
	from := mirror.resumedFrom.Load()
	require.Greater(t, from, int64(0), "the download resumed with a Range, not from the start")
	require.LessOrEqual(t, from, int64(100<<20))
	vm, why := d.vm(corrupt.ID)
	require.NotNil(t, vm, why)
	require.Equal(t, "disk (UEFI)", vm.LastBoot)
	t.Logf("retry: resumed at byte %d, %.1f MiB/s", from, st.Deploy.ImageMiBPerSecond)

	// The server that found no disk still waits for staff, untouched.
	st = d.waitState(t, pinned.Serial, time.Minute, "attention")
	require.Equal(t, 1, st.Deploy.Attempt)
}

// requireDeployHost skips a test on a host that cannot run the deploy lab.
func requireDeployHost(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipping: deploys a real OS into virtual machines under TCG, many minutes (-short)")
	}
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (network namespaces, taps, DHCP and TFTP ports)")
	}
	for _, prog := range []string{"qemu-system-x86_64", "qemu-img", "dnsmasq", "ssh", "ssh-keygen"} {
		if _, err := exec.LookPath(prog); err != nil {
			t.Skipf("skipping: needs %s", prog)
		}
	}
	for _, f := range []string{"/usr/share/OVMF/OVMF_CODE.fd", "/usr/share/OVMF/OVMF_VARS.fd",
		"/usr/lib/ipxe/undionly.kpxe", "/usr/lib/ipxe/snponly.efi"} {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("skipping: needs %s (Debian's ovmf and ipxe): %v", f, err)
		}
	}
}

// registerRacked posts a server with an image (and a profile, unless "")
// and reports it racked in dc1.
func (d *deployLab) registerRacked(t *testing.T, e fleetEntry, image, profile string, unit int) {
	t.Helper()
	reg := map[string]any{
		"serial": e.Serial,
		"bmc":    map[string]string{"address": e.Address, "username": e.Username, "password": e.Password},
		"image":  image,
	}
	if profile != "" {
		reg["profile"] = profile
	}
	body, _ := json.Marshal(reg)
	r := d.do(t, http.MethodPost, d.api+"/api/v1/servers", string(body))
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	r = d.do(t, http.MethodPost, d.api+"/api/v1/servers/"+e.Serial+"/racked",
		fmt.Sprintf(`{"site":"dc1","room":"A","rack":"R01","unit":%d,"face":"front"}`, unit))
	require.Equal(t, http.StatusOK, r.code, string(r.body))
}

// status reads a server's status; an error while no worker answers the
// lifecycle's query.
func (d *deployLab) status(serial string) (serverapi.ServerStatus, error) {
	var st serverapi.ServerStatus
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.api+"/api/v1/servers/"+serial, nil)
	if err != nil {
		return st, err
	}
	bearerFromURL(req)
	res, err := d.client.Do(req)
	if err != nil {
		return st, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return st, err
	}
	if res.StatusCode != http.StatusOK {
		return st, fmt.Errorf("GET %s: %d %s", serial, res.StatusCode, b)
	}
	return st, json.Unmarshal(b, &st)
}

// waitState waits until the server is in state, failing at once if it
// lands in another final one.
func (d *deployLab) waitState(t *testing.T, serial string, timeout time.Duration, state string) serverapi.ServerStatus {
	t.Helper()
	var st serverapi.ServerStatus
	eventually(t, timeout, serial+" "+state, func() error {
		var err error
		if st, err = d.status(serial); err != nil {
			return err
		}
		if st.State == state {
			return nil
		}
		for _, final := range []string{"attention", "failed", "installed"} {
			if st.State == final {
				t.Fatalf("%s is %s, not %s: %+v", serial, st.State, state, st.Attention)
			}
		}
		return fmt.Errorf("state %s step %s", st.State, st.Step)
	})
	return st
}

// diskHead is the first MiB of a VM's raw disk.
func (d *deployLab) diskHead(t *testing.T, id string) []byte {
	t.Helper()
	vm, why := d.vm(id)
	require.NotNil(t, vm, why)
	f, err := os.Open(vm.Disk)
	require.NoError(t, err)
	defer f.Close()
	head := make([]byte, 1<<20)
	_, err = io.ReadFull(f, head)
	require.NoError(t, err)
	return head
}

func (d *deployLab) requireNotBootedFromDisk(t *testing.T, id string) {
	t.Helper()
	vm, why := d.vm(id)
	require.NotNil(t, vm, why)
	require.False(t, strings.HasPrefix(vm.LastBoot, "disk"), "VM %s booted %s", id, vm.LastBoot)
}

// mirror is an image server on the site's bridge, as an operator's
// mirror would be, that can serve a corrupted copy or drop a download.
type mirror struct {
	url string
	// corruptAt flips the byte at that offset in every answer; -1: none.
	corruptAt atomic.Int64
	// dropAt breaks off the next download that reaches that offset; 0:
	// none. drops counts the downloads broken off.
	dropAt atomic.Int64
	drops  atomic.Int64
	// resumedFrom is the first byte asked for by the first Range request
	// after a drop.
	resumedFrom atomic.Int64
}

func (d *deployLab) serveMirror(t *testing.T, image string) *mirror {
	t.Helper()
	var ln net.Listener
	var err error
	require.NoError(t, d.lab.Call(d.site.NS, func() { ln, err = net.Listen("tcp", net.JoinHostPort(d.bootIP, "8081")) }))
	require.NoError(t, err)
	m := &mirror{url: "http://" + net.JoinHostPort(d.bootIP, "8081") + "/debian.raw"}
	m.corruptAt.Store(-1)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(image)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		start := rangeStart(r.Header.Get("Range"))
		if m.drops.Load() > 0 && start > 0 {
			m.resumedFrom.CompareAndSwap(0, start)
		}
		if r.Method == http.MethodGet && m.dropAt.Load() > 0 {
			w = &droppingWriter{ResponseWriter: w, m: m, at: start}
		}
		http.ServeContent(w, r, "debian.raw", st.ModTime(), &corruptingReader{f: f, at: m.corruptAt.Load()})
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return m
}

// rangeStart is the first byte of "bytes=N-…", 0 for anything else.
func rangeStart(h string) int64 {
	from, _, ok := strings.Cut(strings.TrimPrefix(h, "bytes="), "-")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseInt(from, 10, 64)
	return n
}

// corruptingReader reads a file with one byte flipped.
type corruptingReader struct {
	f   *os.File
	at  int64
	off int64
}

func (c *corruptingReader) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	if c.at >= c.off && c.at < c.off+int64(n) {
		p[c.at-c.off] ^= 0xff
	}
	c.off += int64(n)
	return n, err
}

func (c *corruptingReader) Seek(offset int64, whence int) (int64, error) {
	off, err := c.f.Seek(offset, whence)
	c.off = off
	return off, err
}

// droppingWriter breaks the connection off once the answer reaches the
// mirror's dropAt, the first time any answer does.
type droppingWriter struct {
	http.ResponseWriter
	m  *mirror
	at int64 // the image offset of the next byte written
}

func (w *droppingWriter) Write(p []byte) (int, error) {
	if drop := w.m.dropAt.Load(); drop > 0 && w.at+int64(len(p)) > drop && w.m.dropAt.CompareAndSwap(drop, 0) {
		n, _ := w.ResponseWriter.Write(p[:max(drop-w.at, 0)])
		w.at += int64(n)
		w.m.drops.Add(1)
		// The server closes the connection mid-body, as a dying mirror's
		// would be.
		panic(http.ErrAbortHandler)
	}
	n, err := w.ResponseWriter.Write(p)
	w.at += int64(n)
	return n, err
}
