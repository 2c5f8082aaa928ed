//go:build !agent

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func simBMC(t *testing.T, vendor string) (*bmcsim.BMC, string) {
	t.Helper()
	f, err := bmcsim.Start(bmcsim.Config{Count: 1, Vendor: vendor, PostDelay: 100 * time.Millisecond,
		TaskDuration: 100 * time.Millisecond, ShutdownDelay: 50 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	ca := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(ca, f.CACertPEM(), 0o600))
	return f.BMCs()[0], ca
}

func bmcCmd(t *testing.T, b *bmcsim.BMC, ca string, args ...string) (string, error) {
	t.Helper()
	user, pass := b.Credentials()
	var out, errOut bytes.Buffer
	all := append([]string{"--address", b.Address(), "--user", user, "--password", pass, "--ca-cert", ca, "--timeout", "20s"}, args...)
	err := runBMC(context.Background(), all, &out, &errOut)
	return out.String(), err
}

func TestBMCToolAgainstSimulator(t *testing.T) {
	b, ca := simBMC(t, bmcsim.VendorDell)
	run := func(args ...string) string {
		t.Helper()
		out, err := bmcCmd(t, b, ca, args...)
		require.NoError(t, err, strings.Join(args, " "))
		return out
	}
	assert.Equal(t, "Off\n", run("power", "status"))
	assert.Contains(t, run("boot", "pxe", "--once"), "next boot only")
	assert.Equal(t, bmcsim.BootOverride{Target: "Pxe", Enabled: "Once", Mode: "UEFI"}, b.State().BootOverride)
	assert.Equal(t, "LogicalProc=Enabled\n", run("bios", "get", "LogicalProc"))
	assert.Contains(t, run("bios", "set", "LogicalProc=Disabled"), "next reset")
	assert.Equal(t, "Disabled", b.State().BIOSPending["LogicalProc"])
	run("power", "on")
	assert.Equal(t, "Disabled", b.State().BIOS["LogicalProc"])
	assert.Contains(t, run("bios", "reset"), "next reset")

	var inv map[string]any
	require.NoError(t, json.Unmarshal([]byte(run("inventory")), &inv))
	assert.Equal(t, b.Serial(), inv["serial"])

	list := run("raid", "list")
	assert.Contains(t, list, "Disk.Bay.0:Enclosure.Internal.0-1:RAID.Integrated.1-1")
	assert.Contains(t, run("raid", "create", "--level", "1", "--name", "os",
		"--drives", "Disk.Bay.0:Enclosure.Internal.0-1:RAID.Integrated.1-1,Disk.Bay.1:Enclosure.Internal.0-1:RAID.Integrated.1-1"), "RAID1 volume created")
	require.Len(t, b.State().Volumes, 1)
	id := b.State().Volumes[0].ID
	assert.Contains(t, run("raid", "list"), "volume "+id)
	assert.Contains(t, run("raid", "delete", id), "deleted")
	assert.Empty(t, b.State().Volumes)

	assert.Contains(t, run("media", "insert", "http://127.0.0.1/os.iso"), "inserted")
	assert.Equal(t, 1, b.Counters().MediaInserts)
	assert.Contains(t, run("media", "eject"), "ejected")
	run("power", "off")
	assert.Equal(t, bmcsim.PowerOff, b.PowerState())
}

func TestBMCToolFailuresAreOneLine(t *testing.T) {
	b, ca := simBMC(t, bmcsim.VendorGeneric)
	user, _ := b.Credentials()
	var out, errOut bytes.Buffer

	err := runBMC(context.Background(), []string{"--address", b.Address(), "--user", user, "--password", "wrong", "--ca-cert", ca, "power", "status"}, &out, &errOut)
	require.Error(t, err)
	assert.Equal(t, "authentication failed (401): check --user and --password", err.Error())

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	closed := "https://" + ln.Addr().String()
	ln.Close()
	err = runBMC(context.Background(), []string{"--address", closed, "--user", "u", "--password", "p", "--insecure", "power", "status"}, &out, &errOut)
	require.Error(t, err)
	assert.True(t, strings.HasPrefix(err.Error(), "BMC unreachable: "), err.Error())
	assert.NotContains(t, err.Error(), "\n")

	err = runBMC(context.Background(), []string{"--address", b.Address(), "--user", user, "--password", "x", "power", "status"}, &out, &errOut)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "certificate", "the simulator's CA is not trusted by default")

	_, err = bmcCmd(t, b, ca, "raid", "create", "--level", "1", "--drives", "0,nope")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "no storage controller holds")
	_, err = bmcCmd(t, b, ca, "raid", "create", "--level", "5", "--drives", "0,1")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "\n")

	for _, args := range [][]string{{}, {"reboot"}, {"power"}, {"power", "explode"}, {"boot", "floppy"}, {"bios", "set", "novalue"}, {"media", "insert"}, {"raid", "create"}} {
		_, err := bmcCmd(t, b, ca, args...)
		var ue usageError
		assert.True(t, errors.As(err, &ue), "%v: %v", args, err)
	}
}

func TestBMCSimCommand(t *testing.T) {
	dir := t.TempDir()
	manifest := filepath.Join(dir, "fleet.json")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var stderr bytes.Buffer
	go func() {
		done <- runBMCSim(ctx, []string{"--count", "4", "--vendor", "mixed", "--insecure-http", "--user", "admin",
			"--password", "pw", "--speed", "100", "--manifest", manifest}, &bytes.Buffer{}, &stderr)
	}()
	var entries []bmcsim.ManifestEntry
	deadline := time.Now().Add(10 * time.Second)
	for {
		data, err := os.ReadFile(manifest)
		if err == nil && json.Unmarshal(data, &entries) == nil && len(entries) == 4 {
			break
		}
		require.True(t, time.Now().Before(deadline), "manifest not written")
		time.Sleep(20 * time.Millisecond)
	}
	st, err := os.Stat(manifest)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), st.Mode().Perm(), "the manifest holds passwords")
	for _, e := range entries {
		assert.True(t, strings.HasPrefix(e.Address, "http://127.0.0.1:"))
		var out bytes.Buffer
		require.NoError(t, runBMC(ctx, []string{"--address", e.Address, "--user", e.Username, "--password", e.Password, "power", "status"}, &out, &bytes.Buffer{}))
		assert.Equal(t, "Off\n", out.String(), e.Vendor)
	}
	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("bmcsim did not stop with its context")
	}

	err = runBMCSim(context.Background(), []string{"--vendor", "lenovo"}, &bytes.Buffer{}, &bytes.Buffer{})
	require.Error(t, err)
	var ue usageError
	assert.True(t, errors.As(runBMCSim(context.Background(), []string{"--bogus"}, &bytes.Buffer{}, &bytes.Buffer{}), &ue))
}

// TestBMCToolUnsupported runs against recorded vendor trees: where the BMC
// lacks a feature the tool says so in one line.
func TestBMCToolUnsupported(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "redfish-mockups"))
	require.NoError(t, err)
	if _, err := os.Stat(root); err != nil {
		t.Skipf("shared vendor trees absent (%s)", root)
	}
	for _, tc := range []struct{ tree, command string }{
		{"supermicro-x12-composite", "media insert http://127.0.0.1/x.iso"},
		{"dmtf-public-rackmount1", "raid list"},
		{"dmtf-public-rackmount1", "raid create --level 1 --drives 1,2"},
	} {
		t.Run(tc.tree+" "+tc.command, func(t *testing.T) {
			f, err := bmcsim.Start(bmcsim.Config{Count: 1, Mockup: filepath.Join(root, tc.tree), InsecureHTTP: true})
			require.NoError(t, err)
			defer f.Close()
			b := f.BMCs()[0]
			_, err = bmcCmd(t, b, "", strings.Fields(tc.command)...)
			require.Error(t, err)
			assert.True(t, strings.HasPrefix(err.Error(), "unsupported by this BMC: "), err.Error())
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

// TestBMCToolBIOSOfUnknownSystemID reads BIOS from a recorded tree whose
// system ID bmclib does not know (it answers nothing there); package
// hardware reads it through gofish instead.
func TestBMCToolBIOSOfUnknownSystemID(t *testing.T) {
	root, err := filepath.Abs(filepath.Join("..", "..", "..", "shared", "redfish-mockups"))
	require.NoError(t, err)
	if _, err := os.Stat(root); err != nil {
		t.Skipf("shared vendor trees absent (%s)", root)
	}
	f, err := bmcsim.Start(bmcsim.Config{Count: 1, Mockup: filepath.Join(root, "dmtf-public-rackmount1"), InsecureHTTP: true})
	require.NoError(t, err)
	defer f.Close()
	out, err := bmcCmd(t, f.BMCs()[0], "", "bios", "get", "BootMode")
	require.NoError(t, err)
	assert.Equal(t, "BootMode=Uefi\n", out)
}

// TestBMCInventoryShowsWarnings: a drive link that answers 404 no longer
// fails `bmc inventory`; the JSON names it under warnings.
func TestBMCInventoryShowsWarnings(t *testing.T) {
	b, ca := simBMC(t, bmcsim.VendorSupermicro)
	b.SetFaults(bmcsim.Faults{Tree: []string{bmcsim.FaultDanglingDrive}})
	out, err := bmcCmd(t, b, ca, "inventory")
	require.NoError(t, err)
	var inv struct {
		Drives   []json.RawMessage `json:"drives"`
		Warnings []struct {
			Path  string `json:"path"`
			Error string `json:"error"`
		} `json:"warnings"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &inv))
	assert.Len(t, inv.Drives, 3)
	require.Len(t, inv.Warnings, 1, out)
	assert.Contains(t, inv.Warnings[0].Path, "/Drives/")
	assert.Equal(t, "answered 404", inv.Warnings[0].Error)
}

// TestBMCSimRefusesAnUnknownFault: a misspelt --fault is a usage error,
// before any BMC starts.
func TestBMCSimRefusesAnUnknownFault(t *testing.T) {
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := runBMCSim(ctx, []string{"--fault", "dangling-drive,dangling-disk"}, &out, &errOut)
	var usage usageError
	require.ErrorAs(t, err, &usage)
	assert.Contains(t, err.Error(), `unknown fault "dangling-disk"`)
	assert.NotContains(t, errOut.String(), "BMCs up")

	err = runBMCSim(ctx, []string{"--fault", "dangling-drive", "--fault", "no-serial,count-mismatch", "--post-delay", "10ms"}, &out, &errOut)
	require.NoError(t, err, "known faults, repeated and in lists, start the fleet")
	assert.Contains(t, errOut.String(), "BMCs up")
}
