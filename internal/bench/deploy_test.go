package bench

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

func TestDeployConfigRefusesBadInput(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "image.raw")
	require.NoError(t, os.WriteFile(file, []byte("x"), 0o644))
	good := DeployConfig{Image: file, AgentKernel: file, AgentInitrd: file, DiskBenchmarkMiB: 64, Accel: "tcg", CPUs: 1, MemoryMiB: 1024, Timeout: time.Minute}
	require.NoError(t, good.Check())

	bad := good
	bad.Image, bad.AgentKernel, bad.AgentInitrd = "", dir, filepath.Join(dir, "missing")
	bad.DiskBenchmarkMiB, bad.Accel, bad.Timeout = 0, "hvf", 0
	err := bad.Check()
	require.Error(t, err)
	for _, want := range []string{"--image is required", "--agent-kernel: " + dir + " is not a file", "--agent-initrd: stat",
		"--disk-benchmark-mib must be at least 1", `--qemu-accel "hvf"`, "--timeout must be positive"} {
		require.Contains(t, err.Error(), want)
	}
}

func TestDeployFiguresAreSecondsAfterPowerOn(t *testing.T) {
	on := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	at := func(s float64) *time.Time { t := on.Add(time.Duration(s * float64(time.Second))); return &t }
	d := &serverapi.DeployStatus{PowerOnAt: at(0), AgentUpAt: at(16.5), WrittenAt: at(44), RebootAt: at(44.5), PhoneHomeAt: at(96.25),
		ImageMiBPerSecond: 20, DiskLimitMiBPerSecond: 400}
	r, err := deployFigures(d)
	require.NoError(t, err)
	require.InDelta(t, 16.5, r.toAgent, 1e-9)
	require.InDelta(t, 96.25, r.toPhoneHome, 1e-9)
	require.Equal(t, []deployPhase{{"agent up", 16.5}, {"image written", 44}, {"reboot from disk", 44.5}, {"phone home", 96.25}}, r.phases)

	// A deploy without the agent's figures is no measurement.
	d.DiskLimitMiBPerSecond = 0
	_, err = deployFigures(d)
	require.ErrorContains(t, err, "disk 0.0 MiB/s")
	d.DiskLimitMiBPerSecond, d.PhoneHomeAt = 400, nil
	_, err = deployFigures(d)
	require.ErrorContains(t, err, `no "phone home" time`)
	_, err = deployFigures(nil)
	require.ErrorContains(t, err, "no deploy status")
}
