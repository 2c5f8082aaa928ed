package boot

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/metalflow/metalflow/api/boot/agentapi"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// fakeStore holds install attempts and images in memory.
type fakeStore struct {
	mu     sync.Mutex
	boots  []inventory.BootConfig
	images map[string]inventory.Image
}

func (f *fakeStore) find(match func(inventory.BootConfig) bool) (inventory.BootConfig, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, b := range f.boots {
		if match(b) && b.Active(time.Now()) {
			return b, nil
		}
	}
	return inventory.BootConfig{}, fmt.Errorf("%w: no such attempt", inventory.ErrNotFound)
}

func (f *fakeStore) ActiveBootForMAC(_ context.Context, mac string) (inventory.BootConfig, error) {
	return f.find(func(b inventory.BootConfig) bool { return b.MACs[0] == inventory.NormalizeMAC(mac) })
}

func (f *fakeStore) ActiveBoot(_ context.Context, serial string) (inventory.BootConfig, error) {
	return f.find(func(b inventory.BootConfig) bool { return b.Serial == serial })
}

func (f *fakeStore) ActiveBootByToken(_ context.Context, token string) (inventory.BootConfig, error) {
	return f.find(func(b inventory.BootConfig) bool { return b.Token == token })
}

func (f *fakeStore) ConsumePhoneHome(ctx context.Context, token string) (inventory.BootConfig, error) {
	b, err := f.ActiveBootByToken(ctx, token)
	if err == nil {
		f.update(token, func(b *inventory.BootConfig) { now := time.Now(); b.PhonedAt = &now })
	}
	return b, err
}

func (f *fakeStore) SetHostAddress(context.Context, string, netip.Addr) error { return nil }

func (f *fakeStore) GetImage(_ context.Context, name string) (inventory.Image, error) {
	img, ok := f.images[name]
	if !ok {
		return img, fmt.Errorf("%w: no image %s", inventory.ErrNotFound, name)
	}
	return img, nil
}

// update changes the attempt holding token, as the lifecycle's activities
// do through the inventory.
func (f *fakeStore) update(token string, change func(*inventory.BootConfig)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := range f.boots {
		if f.boots[i].Token == token {
			change(&f.boots[i])
		}
	}
}

// reports records the deploy reports signalled; fail, when set, is what
// Temporal answers instead.
type reports struct {
	mu   sync.Mutex
	fail error
	ids  []string
	got  []serverapi.DeployReport
}

func (r *reports) SignalWorkflow(_ context.Context, id, _, name string, arg any) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	if name != serverapi.SignalDeployReport {
		return serviceerror.NewInvalidArgument("unexpected signal " + name)
	}
	r.ids = append(r.ids, id)
	r.got = append(r.got, arg.(serverapi.DeployReport))
	return nil
}

func (r *reports) setFail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = err
}

// take returns the reports since the last take.
func (r *reports) take() []serverapi.DeployReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

const (
	deployToken    = "tok-deploy"
	installerToken = "tok-installer"
	deployMAC      = "52:54:00:00:00:0a"
	sha            = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
	sshKey         = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKv2oMjPcLITFgW6Mdmj3zGef2jF3wuncBd/8JOAXvHS ops@example"
)

// deployRig is the service alone over a fake store with two pending
// attempts: SN-D's attempt 3 deploys debian-12 (pending the lifecycle's
// decision), SN-I's attempt 1 runs the installer.
type deployRig struct {
	h       http.Handler
	store   *fakeStore
	reports *reports
}

func newDeployRig(t *testing.T, tune func(*Config)) *deployRig {
	t.Helper()
	plan, err := json.Marshal(serverapi.DeployPlan{
		Image: "debian-12", Hostname: "web-1", RootDevice: map[string]string{"size": ">= 60", "rotational": "false"},
		SSHAuthorizedKeys: []string{sshKey}, UserData: "#cloud-config\npackages: [htop]\n", MAC: "52:54:00:00:00:0b",
	})
	require.NoError(t, err)
	now := time.Now()
	r := &deployRig{
		store: &fakeStore{
			boots: []inventory.BootConfig{
				{Serial: "SN-D", Attempt: 3, MACs: []string{deployMAC}, Token: deployToken, IssuedAt: now, ExpiresAt: now.Add(time.Hour),
					DeployPlan: plan, Decision: inventory.DeployPending},
				{Serial: "SN-I", Attempt: 1, MACs: []string{"52:54:00:00:00:0c"}, Token: installerToken, IssuedAt: now, ExpiresAt: now.Add(time.Hour)},
			},
			images: map[string]inventory.Image{
				"debian-12": {Name: "debian-12", Source: "upload", SHA256: sha, Format: "raw.zst", OSFamily: "debian", Size: 1 << 28},
			},
		},
		reports: &reports{},
	}
	cfg := Config{
		PublicURL: "http://10.0.0.1:8081/", AgentKernel: "https://cdn.example/agent/vmlinuz", AgentInitrd: "https://cdn.example/agent/initrd.img",
		Store: r.store, Lifecycles: r.reports, Logger: slog.New(slog.DiscardHandler),
	}
	if tune != nil {
		tune(&cfg)
	}
	r.h = New(cfg).Handler()
	return r
}

// call sends one request as the agent would, with token as its bearer
// ("" for none).
func (r *deployRig) call(t *testing.T, method, path, token, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		agentapi.SetBearerToken(req, token)
	}
	rec := httptest.NewRecorder()
	r.h.ServeHTTP(rec, req)
	return rec
}

func agentMessage(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var e agentapi.Error
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &e), rec.Body.String())
	require.NotEmpty(t, e.Message)
	return e.Message
}

// A deploy attempt netboots the agent with the service's URL and the
// attempt's token; an installer attempt the installer; a written one its
// disk. Agent files named as paths are served here.
func TestScriptChainsTheAgentForADeploy(t *testing.T) {
	dir := t.TempDir()
	kernel := filepath.Join(dir, "vmlinuz")
	require.NoError(t, os.WriteFile(kernel, []byte("agent kernel bytes"), 0o644))
	r := newDeployRig(t, func(c *Config) { c.AgentKernel = kernel })

	rec := r.call(t, http.MethodGet, "/boot/ipxe?mac="+deployMAC, "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "#!ipxe\n# metalflow deploy of SN-D, attempt 3\n"+
		"kernel http://10.0.0.1:8081/boot/agent/vmlinuz initrd=initrd.img console=ttyS0 metalflow.url=http://10.0.0.1:8081 metalflow.token="+deployToken+"\n"+
		"initrd --name initrd.img https://cdn.example/agent/initrd.img\nboot\n", rec.Body.String(),
		"a UEFI kernel's EFI stub loads the initrd named by initrd=, as iPXE names it")

	rec = r.call(t, http.MethodGet, AgentKernelPath, "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "agent kernel bytes", rec.Body.String())
	rec = r.call(t, http.MethodGet, AgentInitrdPath, "", "")
	require.Equal(t, http.StatusNotFound, rec.Code, "a URL is fetched from where it points")

	rec = r.call(t, http.MethodGet, "/boot/ipxe?mac=52:54:00:00:00:0c", "", "")
	require.Contains(t, rec.Body.String(), "kernel http://10.0.0.1:8081/boot/files/vmlinuz initrd=installer.img ip=dhcp", "no plan: the installer")

	r.store.update(deployToken, func(b *inventory.BootConfig) { now := time.Now(); b.DiskBootedAt = &now })
	rec = r.call(t, http.MethodGet, "/boot/ipxe?mac="+deployMAC, "", "")
	require.Contains(t, rec.Body.String(), "is written; booting from local disk\nexit\n", "a written disk is never written again")
	require.Empty(t, r.reports.take())
}

// Without an agent the deploy cannot start: the machine boots on, and the
// lifecycle learns why at once instead of at the install's timeout.
func TestScriptWithoutAnAgentFailsTheDeploy(t *testing.T) {
	r := newDeployRig(t, func(c *Config) { c.AgentKernel, c.AgentInitrd = "", "" })
	rec := r.call(t, http.MethodGet, "/boot/ipxe?mac="+deployMAC, "", "")
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), "no deploy agent configured")
	require.True(t, strings.HasSuffix(rec.Body.String(), "\nexit\n"))
	got := r.reports.take()
	require.Len(t, got, 1)
	require.Equal(t, serverapi.DeployFailed, got[0].Phase)
	require.Equal(t, 3, got[0].Attempt)
	require.Contains(t, got[0].Failure, "no deploy agent configured")
	require.Equal(t, http.StatusNotFound, r.call(t, http.MethodGet, AgentKernelPath, "", "").Code)
}

// Every agent route answers only the holder of a pending deploy attempt's
// token, as agentapi says, with agentapi's Error bodies.
func TestAgentRoutesNeedAPendingDeploysToken(t *testing.T) {
	r := newDeployRig(t, nil)
	routes := []struct{ method, path, body string }{
		{http.MethodPost, agentapi.PathInventory, `{}`},
		{http.MethodGet, agentapi.PathPlan, ""},
		{http.MethodPost, agentapi.PathProgress, `{"phase":"write"}`},
		{http.MethodPost, agentapi.PathResult, `{"succeeded":true}`},
	}
	for _, rt := range routes {
		for token, want := range map[string]int{"": http.StatusUnauthorized, "nope": http.StatusForbidden, installerToken: http.StatusNotFound} {
			rec := r.call(t, rt.method, rt.path, token, rt.body)
			require.Equal(t, want, rec.Code, "%s %s with %q: %s", rt.method, rt.path, token, rec.Body)
			agentMessage(t, rec)
		}
	}
	require.Contains(t, agentMessage(t, r.call(t, http.MethodGet, agentapi.PathPlan, installerToken, "")), "runs the installer")

	// Once the installed OS phoned home the attempt is spent.
	r.store.update(deployToken, func(b *inventory.BootConfig) { now := time.Now(); b.PhonedAt = &now })
	for _, rt := range routes {
		rec := r.call(t, rt.method, rt.path, deployToken, rt.body)
		require.Equal(t, http.StatusForbidden, rec.Code, "%s %s of a spent attempt", rt.method, rt.path)
	}
	require.Empty(t, r.reports.take(), "nothing reached the lifecycle")
}

// The plan waits for the lifecycle: 202 with Retry-After while it compares,
// then the plan once released, or 409 with the reason once refused.
func TestAgentPlanFollowsTheDecision(t *testing.T) {
	r := newDeployRig(t, nil)
	rec := r.call(t, http.MethodGet, agentapi.PathPlan, deployToken, "")
	require.Equal(t, http.StatusAccepted, rec.Code)
	require.Equal(t, "5", rec.Header().Get("Retry-After"))

	r.store.update(deployToken, func(b *inventory.BootConfig) { b.Decision = inventory.DeployReleased })
	rec = r.call(t, http.MethodGet, agentapi.PathPlan, deployToken, "")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	var plan agentapi.Plan
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &plan))
	no := false
	require.Equal(t, agentapi.Plan{
		Image:      agentapi.Image{URL: "http://10.0.0.1:8081/boot/images/debian-12?token=" + deployToken, SHA256: sha, Format: agentapi.FormatRawZstd},
		RootDevice: agentapi.RootDeviceHints{Size: ">= 60", Rotational: &no},
		Seed: agentapi.Seed{InstanceID: "SN-D-3", Hostname: "web-1", SSHAuthorizedKeys: []string{sshKey}, UserData: "packages: [htop]\n",
			PhoneHomeURL: "http://10.0.0.1:8081/api/v1/boot/phone-home?token=" + deployToken, MAC: "52:54:00:00:00:0b"},
	}, plan, "a compressed image's stored size is not its size on disk, so none is given")

	r.store.images["debian-12"] = inventory.Image{Name: "debian-12", SHA256: sha, Format: "raw", Size: 1 << 30}
	rec = r.call(t, http.MethodGet, agentapi.PathPlan, deployToken, "")
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &plan))
	require.Equal(t, agentapi.FormatRaw, plan.Image.Format)
	require.Equal(t, int64(1<<30), plan.Image.Size, "a raw image is as large on disk as stored")

	r.store.update(deployToken, func(b *inventory.BootConfig) {
		b.Decision, b.DecisionReason = inventory.DeployRefused, "DMI serial X123 is not SN-D"
	})
	rec = r.call(t, http.MethodGet, agentapi.PathPlan, deployToken, "")
	require.Equal(t, http.StatusConflict, rec.Code)
	require.Equal(t, "DMI serial X123 is not SN-D", agentMessage(t, rec))
	require.Empty(t, r.reports.take(), "asking for the plan is no report")
}

// A released plan the agent could not carry out fails the deploy at once.
func TestAgentPlanThatCannotBeCarriedOut(t *testing.T) {
	r := newDeployRig(t, nil)
	delete(r.store.images, "debian-12")
	r.store.update(deployToken, func(b *inventory.BootConfig) { b.Decision = inventory.DeployReleased })
	rec := r.call(t, http.MethodGet, agentapi.PathPlan, deployToken, "")
	require.Equal(t, http.StatusConflict, rec.Code)
	require.Contains(t, agentMessage(t, rec), `image "debian-12" is not in the catalog`)
	got := r.reports.take()
	require.Len(t, got, 1)
	require.Equal(t, serverapi.DeployFailed, got[0].Phase)
	require.Equal(t, string(agentapi.ClassPlanInvalid), got[0].FailureClass)
}

// Inventory, progress and the result reach the lifecycle as deploy reports
// of the token's attempt; the agent hears 2xx only once Temporal took them.
func TestAgentReportsReachTheLifecycle(t *testing.T) {
	r := newDeployRig(t, nil)
	inv := agentapi.Inventory{
		CPU: agentapi.CPU{Count: 8, Model: "QEMU"}, System: agentapi.System{Serial: "SN-D"}, MemoryBytes: 8 << 30, BootSeconds: 4.5,
		NICs: []agentapi.NIC{{Name: "eth0", MAC: "52:54:00:00:00:0A", Link: true}, {Name: "eth1"}},
	}
	// Hundreds of disks: more than the 64 KiB a phone-home may send.
	for i := range 600 {
		inv.Disks = append(inv.Disks, agentapi.Disk{Name: fmt.Sprintf("sd%d", i), Size: 1 << 40, Model: "QEMU HARDDISK", Serial: fmt.Sprintf("QM%05d", i),
			ByPath: fmt.Sprintf("/dev/disk/by-path/pci-0000:00:04.%d-scsi-0:0:%d:0", i%8, i)})
	}
	body, err := json.Marshal(inv)
	require.NoError(t, err)
	require.Greater(t, len(body), 64<<10)
	rec := r.call(t, http.MethodPost, agentapi.PathInventory, deployToken, string(body))
	require.Equal(t, http.StatusAccepted, rec.Code, rec.Body.String())
	got := r.reports.take()
	require.Len(t, got, 1)
	require.Equal(t, []string{serverapi.LifecycleWorkflowID("SN-D")}, r.reports.ids)
	require.Equal(t, serverapi.DeployInventory, got[0].Phase)
	require.Equal(t, 3, got[0].Attempt)
	require.WithinDuration(t, time.Now(), got[0].At, time.Minute)
	summary := got[0].Inventory
	require.NotNil(t, summary)
	require.Equal(t, "SN-D", summary.SystemSerial)
	require.Equal(t, []string{"52:54:00:00:00:0a"}, summary.MACs)
	require.Equal(t, 8, summary.CPUs)
	require.Equal(t, int64(8<<30), summary.MemoryBytes)
	require.Len(t, summary.Disks, 600)
	require.Equal(t, serverapi.AgentDisk{Name: "sd0", Size: 1 << 40, Model: "QEMU HARDDISK", Serial: "QM00000"}, summary.Disks[0])

	rec = r.call(t, http.MethodPost, agentapi.PathProgress, deployToken, `{"phase":"write","disk":"sda","bytes_written":1048576,"bytes_downloaded":4096,"bytes_total":2097152}`)
	require.Equal(t, http.StatusAccepted, rec.Code)
	got = r.reports.take()
	require.Len(t, got, 1)
	require.Equal(t, serverapi.DeployReport{Attempt: 3, Phase: serverapi.DeployProgress, At: got[0].At, Disk: "sda", BytesWritten: 1 << 20, BytesTotal: 2 << 20}, got[0])

	rec = r.call(t, http.MethodPost, agentapi.PathResult, deployToken,
		`{"succeeded":true,"disk":{"name":"sda","size":68719476736},"stats":{"image_bytes":2097152,"image_mib_s":180.5,"disk_mib_s":210,"write_seconds":0.01}}`)
	require.Equal(t, http.StatusAccepted, rec.Code)
	got = r.reports.take()
	require.Len(t, got, 1)
	require.Equal(t, serverapi.DeployReport{Attempt: 3, Phase: serverapi.DeployWritten, At: got[0].At, Disk: "sda", BytesWritten: 2 << 20,
		ImageMiBPerSecond: 180.5, DiskLimitMiBPerSecond: 210}, got[0])

	rec = r.call(t, http.MethodPost, agentapi.PathResult, deployToken,
		`{"succeeded":false,"class":"checksum","reason":"sha256 abc, want 9f8","disk":{"name":"sda","size":1},"disk_wiped":true}`)
	require.Equal(t, http.StatusAccepted, rec.Code)
	got = r.reports.take()
	require.Len(t, got, 1)
	require.Equal(t, serverapi.DeployFailed, got[0].Phase)
	require.Equal(t, serverapi.FailureChecksum, got[0].FailureClass)
	require.Equal(t, "sha256 abc, want 9f8 (the disk's boot signatures were wiped)", got[0].Failure)
	require.Equal(t, "sda", got[0].Disk)

	rec = r.call(t, http.MethodPost, agentapi.PathResult, deployToken, `{"succeeded":`)
	require.Equal(t, http.StatusBadRequest, rec.Code)
	agentMessage(t, rec)
	require.Empty(t, r.reports.take())
}

// A report Temporal did not take is not acknowledged: a 503 the agent
// retries, or a 409 when the lifecycle is gone, which ends its run.
func TestAgentReportsTheLifecycleDidNotTake(t *testing.T) {
	r := newDeployRig(t, nil)
	r.reports.setFail(serviceerror.NewUnavailable("temporal is restarting"))
	rec := r.call(t, http.MethodPost, agentapi.PathResult, deployToken, `{"succeeded":true}`)
	require.Equal(t, http.StatusServiceUnavailable, rec.Code)
	require.Contains(t, agentMessage(t, rec), "did not take the report")

	r.reports.setFail(serviceerror.NewNotFound("workflow not found"))
	rec = r.call(t, http.MethodPost, agentapi.PathInventory, deployToken, `{}`)
	require.Equal(t, http.StatusConflict, rec.Code)
	require.Equal(t, "the lifecycle of SN-D is not running", agentMessage(t, rec))

	r.reports.setFail(nil)
	rec = r.call(t, http.MethodPost, agentapi.PathResult, deployToken, `{"succeeded":true}`)
	require.Equal(t, http.StatusAccepted, rec.Code, "the retry goes through")
	require.Len(t, r.reports.take(), 1)
}

// agentapi bounds a report at 1 MiB; more is refused, not truncated.
func TestAgentReportTooLarge(t *testing.T) {
	r := newDeployRig(t, nil)
	body := `{"message":"` + strings.Repeat("x", agentapi.MaxBodyBytes) + `"}`
	rec := r.call(t, http.MethodPost, agentapi.PathProgress, deployToken, body)
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code)
	require.Empty(t, r.reports.take())
	agentMessage(t, rec)
}

// The lifecycle reads the agent's failure classes by the contract's names.
func TestFailureClassesAreTheLifecycles(t *testing.T) {
	for agent, lifecycle := range map[agentapi.FailureClass]string{
		agentapi.ClassChecksum: serverapi.FailureChecksum, agentapi.ClassNoDisk: serverapi.FailureNoDisk,
		agentapi.ClassDiskTooSmall: serverapi.FailureDiskTooSmall, agentapi.ClassImageUnreachable: serverapi.FailureImageUnreachable,
		agentapi.ClassImageInvalid: serverapi.FailureImageInvalid, agentapi.ClassWriteFailed: serverapi.FailureWriteFailed,
		agentapi.ClassPlanInvalid: serverapi.FailurePlanInvalid, agentapi.ClassInternal: serverapi.FailureInternal,
	} {
		if string(agent) != lifecycle {
			t.Errorf("agent class %q is %q to the lifecycle", agent, lifecycle)
		}
	}
}
