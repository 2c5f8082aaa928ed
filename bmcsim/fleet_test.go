package bmcsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestManifestMixedFleet(t *testing.T) {
	cfg := quickConfig(VendorMixed)
	cfg.Count = 8
	cfg.Username, cfg.Password = "", ""
	f := startFleet(t, cfg)
	var buf bytes.Buffer
	require.NoError(t, f.WriteManifest(&buf))
	var raw []map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &raw))
	require.Len(t, raw, 8)
	for _, e := range raw {
		for _, k := range []string{"id", "vendor", "address", "username", "password", "serial", "macs"} {
			assert.Contains(t, e, k)
		}
	}
	m := f.Manifest()
	seen := map[string]bool{}
	for i, e := range m {
		assert.Equal(t, []string{VendorDell, VendorHPE, VendorSupermicro, VendorGeneric}[i%4], e.Vendor)
		assert.True(t, strings.HasPrefix(e.Address, "https://127.0.0.1:"), e.Address)
		assert.Equal(t, defaultUser(e.Vendor), e.Username)
		assert.Len(t, e.Password, 16, "generated per BMC")
		assert.Len(t, e.MACs, 2)
		for _, v := range append([]string{e.ID, e.Address, e.Password, e.Serial}, e.MACs...) {
			assert.False(t, seen[v], "%s is unique in the fleet", v)
			seen[v] = true
		}
		b := f.BMC(e.ID)
		require.NotNil(t, b)
		// Each BMC answers with its own credentials and no one else's.
		cl := connect(t, b)
		dev, err := cl.Inventory(ctxT(t))
		require.NoError(t, err)
		assert.Equal(t, e.Serial, dev.Serial)
	}
	_, err := open(f.BMCs()[0], m[1].Username, m[1].Password)
	assert.Error(t, err, "credentials are per BMC")
}

func TestIPRangeOneAddressPerBMC(t *testing.T) {
	// A free port on the loopback /8 for every address of the range.
	ln, err := net.Listen("tcp", "127.77.0.1:0")
	if err != nil {
		t.Skipf("loopback range not usable here: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cfg := quickConfig(VendorGeneric)
	cfg.Count = 0
	cfg.IPRange = "127.77.0.1-127.77.0.3"
	cfg.Port = port
	cfg.InsecureHTTP = true
	cfg.Username, cfg.Password = "admin", "secret"
	f := startFleet(t, cfg)
	require.Len(t, f.BMCs(), 3)
	for i, b := range f.BMCs() {
		u, err := url.Parse(b.Address())
		require.NoError(t, err)
		assert.Equal(t, "http", u.Scheme)
		assert.Equal(t, []string{"127.77.0.1", "127.77.0.2", "127.77.0.3"}[i], u.Hostname())
		c := newRawClient(t, b)
		assert.Equal(t, http.StatusOK, c.do("GET", "/redfish/v1/Systems/Self", nil).status)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []Config{
		{},
		{Count: 1, Vendor: "lenovo"},
		{Count: 1, ListenIP: "not-an-ip"},
		{IPRange: "127.0.0.5-127.0.0.1"},
		{IPRange: "127.0.0.1"},
		{Count: 5, IPRange: "127.0.0.1-127.0.0.2"},
		{Count: 2, BasePort: 65535},
		{Count: 1, Faults: Faults{ErrorRate: 1.5}},
		{Count: 1, Vendor: VendorMixed, Mockup: "x"},
	} {
		f, err := Start(cfg)
		if !assert.Error(t, err, "%+v", cfg) {
			f.Close()
		}
	}
}

// TestBasePortIsFixed: operators give BMC i the port BasePort+i.
func TestBasePortIsFixed(t *testing.T) {
	// Below the kernel's ephemeral range (32768 and up), so no connection
	// of a test running beside this one can take port+1 in between.
	port := 0
	for p := 21000 + rand.IntN(10000); port == 0; p = 21000 + rand.IntN(10000) {
		a, errA := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		b, errB := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		if errA == nil && errB == nil {
			port = p
		}
		for _, l := range []net.Listener{a, b} {
			if l != nil {
				l.Close()
			}
		}
	}
	cfg := quickConfig(VendorDell)
	cfg.Count = 2
	cfg.BasePort = port
	f := startFleet(t, cfg)
	for i, b := range f.BMCs() {
		_, p, _ := net.SplitHostPort(b.HostPort())
		assert.Equal(t, port+i, atoi(t, p))
	}
	_, err := Start(cfg)
	assert.Error(t, err, "ports in use are an error, not a silent move")
}

func atoi(t *testing.T, s string) int {
	var n int
	for _, c := range s {
		require.True(t, c >= '0' && c <= '9')
		n = n*10 + int(c-'0')
	}
	return n
}

// TestThousandBMCs: the fleet size of a large rehearsal, each BMC on its
// own socket and answering.
func TestThousandBMCs(t *testing.T) {
	if testing.Short() {
		t.Skip("starts 1,000 listeners")
	}
	cfg := quickConfig(VendorMixed)
	cfg.Count = 1000
	cfg.InsecureHTTP = true
	cfg.Username, cfg.Password = "admin", "secret"
	f := startFleet(t, cfg)
	require.Len(t, f.BMCs(), 1000)
	var wg sync.WaitGroup
	failures := make(chan string, 1000)
	sem := make(chan struct{}, 32)
	for _, b := range f.BMCs() {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			req, _ := http.NewRequest("GET", b.Address()+b.m.system, nil)
			req.SetBasicAuth("admin", "secret")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				failures <- err.Error()
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failures <- b.ID() + ": " + resp.Status
			}
		}()
	}
	wg.Wait()
	close(failures)
	for f := range failures {
		t.Error(f)
	}
}
