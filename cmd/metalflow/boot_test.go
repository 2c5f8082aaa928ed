//go:build !agent

package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/boot/dhcp"
)

// TestBootFlagsAreChecked: bad flags are refused before anything is
// opened or bound.
func TestBootFlagsAreChecked(t *testing.T) {
	for name, args := range map[string][]string{
		"no public URL":    {"--dhcp-interface", "eth1"},
		"bad mode":         {"--public-url", "http://10.0.0.1:8081", "--dhcp-interface", "eth1", "--dhcp-mode", "relay"},
		"full, no range":   {"--public-url", "http://10.0.0.1:8081", "--dhcp-interface", "eth1", "--dhcp-mode", "full"},
		"full, bad range":  {"--public-url", "http://10.0.0.1:8081", "--dhcp-interface", "eth1", "--dhcp-mode", "full", "--dhcp-range", "10.0.0.100"},
		"full, bad router": {"--public-url", "http://10.0.0.1:8081", "--dhcp-interface", "eth1", "--dhcp-mode", "full", "--dhcp-range", "10.0.0.100-10.0.0.199", "--dhcp-router", "gw"},
		"bad UEFI file":    {"--public-url", "http://10.0.0.1:8081", "--uefi-boot-file", "../../etc/shadow"},
	} {
		dir := t.TempDir()
		var out, errOut bytes.Buffer
		err := runBoot(context.Background(), append(args, "--inventory-db", dir+"/inv.db"), &out, &errOut)
		var usage usageError
		assert.ErrorAs(t, err, &usage, name)
		assert.NoFileExists(t, dir+"/inv.db", "%s: nothing was opened", name)
	}
}

func TestNetbootFlags(t *testing.T) {
	parse := func(args ...string) netbootFlags {
		var n netbootFlags
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		n.register(fs, "")
		require.NoError(t, fs.Parse(args))
		return n
	}
	off := parse()
	cfg, err := off.config()
	require.NoError(t, err)
	assert.Nil(t, cfg.DHCP, "no --dhcp-interface: DHCP off")
	assert.Empty(t, cfg.TFTPAddress, "no --tftp-listen: TFTP off")

	full := parse("--dhcp-interface", "eth1", "--dhcp-mode", "full", "--dhcp-range", "10.0.0.100-10.0.0.199",
		"--dhcp-router", "10.0.0.1", "--dhcp-dns", "10.0.0.53, 10.0.0.54", "--dhcp-lease-time", "10m",
		"--tftp-listen", "10.0.0.2:69", "--uefi-boot-file", "ipxe.efi")
	cfg, err = full.config()
	require.NoError(t, err)
	require.NotNil(t, cfg.DHCP)
	assert.Equal(t, dhcp.Full, cfg.DHCP.Mode)
	assert.Equal(t, "eth1", cfg.DHCP.Interface)
	assert.Equal(t, "ipxe.efi", cfg.DHCP.UEFIBootFile)
	assert.Equal(t, netip.MustParseAddr("10.0.0.2"), cfg.DHCP.TFTPServer, "firmware goes to the TFTP address named")
	assert.Equal(t, dhcp.LeaseConfig{
		First: netip.MustParseAddr("10.0.0.100"), Last: netip.MustParseAddr("10.0.0.199"),
		Router: netip.MustParseAddr("10.0.0.1"), Duration: 10 * time.Minute,
		DNS: []netip.Addr{netip.MustParseAddr("10.0.0.53"), netip.MustParseAddr("10.0.0.54")},
	}, cfg.DHCP.Leases)
	assert.Equal(t, "10.0.0.2:69", cfg.TFTPAddress)

	wildcard := parse("--dhcp-interface", "eth1", "--tftp-listen", ":69")
	cfg, err = wildcard.config()
	require.NoError(t, err)
	assert.False(t, cfg.DHCP.TFTPServer.IsValid(), "TFTP on every address: firmware goes to the DHCP server's")
	assert.Equal(t, dhcp.Proxy, cfg.DHCP.Mode)
}

// The boot service next to the machines serves the deploy agent its image
// itself: the route is there (a request without a pending install's token
// is refused, not unknown). It also keeps serving when it runs neither DHCP
// nor TFTP (the site's DHCP points at it): it used to exit at once then.
func TestBootServesImages(t *testing.T) {
	dir := t.TempDir()
	addr := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	var errOut bytes.Buffer
	go func() {
		done <- runBoot(ctx, []string{"--public-url", "http://" + addr, "--http-listen", addr, "--tftp-listen", "",
			"--inventory-db", filepath.Join(dir, "inv.db"), "--images-dir", filepath.Join(dir, "images"), "--temporal", "127.0.0.1:1"},
			io.Discard, &errOut)
	}()
	t.Cleanup(func() { cancel(); <-done })
	var res *http.Response
	require.Eventually(t, func() bool {
		r, err := http.Get("http://" + addr + "/boot/images/debian-12")
		if err != nil {
			return false
		}
		res = r
		r.Body.Close()
		return true
	}, 30*time.Second, 100*time.Millisecond, errOut.String())
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode, "the image route is mounted and wants the install's token")
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().String()
}
