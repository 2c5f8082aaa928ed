//go:build !agent

package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestLBNodeFlagsAreChecked(t *testing.T) {
	for name, args := range map[string][]string{
		"no iface":     {"--config", "x.yaml"},
		"no mode":      {"--iface", "eth0"},
		"two modes":    {"--iface", "eth0", "--stats", "--detach"},
		"bad xdp mode": {"--iface", "eth0", "--stats", "--xdp-mode", "fast"},
		"stray arg":    {"--iface", "eth0", "--stats", "extra"},
		"unknown flag": {"--iface", "eth0", "--bogus"},
	} {
		var out, errOut bytes.Buffer
		assert.Error(t, runLBNode(context.Background(), args, &out, &errOut), name)
		assert.Empty(t, out.String(), name)
	}
}

func TestDecapFlagsAreChecked(t *testing.T) {
	for name, args := range map[string][]string{
		"no iface":     {},
		"both actions": {"--iface", "eth0", "--stats", "--detach"},
		"bad xdp mode": {"--iface", "eth0", "--xdp-mode", "fast"},
	} {
		var out, errOut bytes.Buffer
		assert.Error(t, runDecap(context.Background(), args, &out, &errOut), name)
	}
}

func TestCloudFlags(t *testing.T) {
	ctx := context.Background()
	var off cloudFlags
	ironic, compute, err := off.open(ctx)
	assert.NoError(t, err)
	assert.Nil(t, ironic, "no --ironic-url: cloud steps off")
	assert.Nil(t, compute)

	for name, f := range map[string]cloudFlags{
		"nova without ironic": {novaURL: "http://nova:8774/v2.1"},
		"ironic not a URL":    {ironicURL: "127.0.0.1:6385"},
		"nova not a URL":      {ironicURL: "http://127.0.0.1:6385", novaURL: "nova"},
	} {
		_, _, err := f.open(ctx)
		var usage usageError
		assert.ErrorAs(t, err, &usage, name)
	}

	on := cloudFlags{ironicURL: "http://127.0.0.1:6385", ironicInsecureBMC: true}
	ironic, compute, err = on.open(ctx)
	assert.NoError(t, err)
	assert.NotNil(t, ironic)
	assert.Nil(t, compute, "no --nova-url: JoinAggregate skipped")
}

// TestBMCRequestTimeoutIsChecked: a timeout that gives up on every request
// is refused before anything starts (no inventory file, no server).
func TestBMCRequestTimeoutIsChecked(t *testing.T) {
	for _, bad := range []string{"0s", "-5s"} {
		dir := t.TempDir()
		var out, errOut bytes.Buffer
		err := runWorker(context.Background(), []string{"--bmc-request-timeout", bad, "--inventory-db", dir + "/inv.db"}, &out, &errOut)
		assert.ErrorContains(t, err, "--bmc-request-timeout "+bad)
		assert.NoFileExists(t, dir+"/inv.db", "nothing was opened")
		err = runDev(context.Background(), []string{"--ephemeral", "--bmc-request-timeout", bad}, &out, &errOut)
		assert.ErrorContains(t, err, "must be positive")
	}
	var out, errOut bytes.Buffer
	err := runWorker(context.Background(), []string{"--bmc-request-timeout", "soon"}, &out, &errOut)
	assert.Error(t, err)
	assert.Contains(t, errOut.String(), "bmc-request-timeout")
}

func TestBMCSimQEMUFlagsAreChecked(t *testing.T) {
	for name, args := range map[string][]string{
		"tap without a bridge": {"--qemu", "--qemu-network", "tap"},
		"unknown accelerator":  {"--qemu", "--qemu-accel", "fast"},
		"unknown disk format":  {"--qemu", "--qemu-disk-format", "vmdk"},
		"unknown CPU model":    {"--qemu", "--qemu-cpu", "pentium-9000"},
	} {
		var out, errOut bytes.Buffer
		assert.Error(t, runBMCSim(context.Background(), args, &out, &errOut), name)
		assert.Empty(t, out.String(), name)
	}
}

// VMs on qemu's NAT reach the host at 10.0.2.2: that becomes the boot
// service's public URL unless one is given; a fleet with simulated hosts,
// which cannot reach it, must say which URL both reach.
func TestDevSimQEMUPublicURL(t *testing.T) {
	f := devFlags{simQEMU: 1, httpAddr: "127.0.0.1:8080"}
	assert.NoError(t, f.qemuPublicURL())
	assert.Equal(t, "http://10.0.2.2:8080", f.boot.publicURL)

	f = devFlags{simQEMU: 1, httpAddr: "127.0.0.1:8080"}
	f.boot.publicURL = "http://10.9.0.1:8080"
	assert.NoError(t, f.qemuPublicURL())
	assert.Equal(t, "http://10.9.0.1:8080", f.boot.publicURL, "a given URL is kept")

	f = devFlags{simQEMU: 1, simServers: 2, httpAddr: "127.0.0.1:8080"}
	var usage usageError
	assert.ErrorAs(t, f.qemuPublicURL(), &usage)
}
