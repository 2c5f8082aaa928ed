package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
)

// namesFor answers look-ups from a fixed table: the names a test's BMCs
// have, and no other.
type namesFor map[string][]netip.Addr

func (n namesFor) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if addrs, ok := n[host]; ok {
		return addrs, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// countingVault keeps nothing and counts what it was asked to keep: a
// refused BMC must store no credential.
type countingVault struct {
	mu  sync.Mutex
	put int
}

func (v *countingVault) Put(context.Context, string, credentials.Credential) (string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.put++
	return fmt.Sprintf("cred-%d", v.put), nil
}

func (v *countingVault) Get(context.Context, string) (credentials.Credential, error) {
	return credentials.Credential{}, nil
}

func (v *countingVault) puts() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.put
}

// bmcAPI is the API over a real inventory whose site dc1 declares its BMC
// networks and dc2 declares none, and a Temporal that refuses everything:
// what reached it shows what the API let through.
type bmcAPI struct {
	handler  http.Handler
	temporal *refusingTemporal
	vault    *countingVault
	inv      *inventory.Store
}

func newBMCAPI(t *testing.T, bmc BMCConfig) *bmcAPI {
	t.Helper()
	ctx := context.Background()
	inv := apitest.Inventory(t)
	require.NoError(t, inv.ApplyLayout(ctx, inventory.Layout{
		Sites: []inventory.Site{
			{Name: "dc1", BMCNetworks: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:b3c::/48")}},
			{Name: "dc2"},
		},
		Racks: []inventory.Rack{{Site: "dc1", Name: "R01", HeightU: 42}, {Site: "dc2", Name: "R01", HeightU: 42}},
	}))
	cat, err := profiles.NewCatalog()
	require.NoError(t, err)
	a := &bmcAPI{temporal: &refusingTemporal{}, vault: &countingVault{}, inv: inv}
	s := New(Config{
		Temporal: a.temporal, Inventory: inv, Credentials: a.vault, Profiles: cat, Tokens: &auth.Tokens{Store: inv},
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler), Namespace: "default", BMC: bmc,
	})
	a.handler = apitest.WithToken(s.Handler(), apitest.Token(t, inv, auth.Admin, ""))
	return a
}

// send makes one request and says whether it got through to Temporal
// (start or update), checking that a refusal stored no credential.
func (a *bmcAPI) send(t *testing.T, method, target, body string) (apitest.Exchange, bool) {
	t.Helper()
	a.temporal.take()
	before := a.vault.puts()
	x := apitest.Call(t, a.handler, method, target, apitest.JSON, body)
	reached := reachedStartOrUpdate(a.temporal.take())
	if x.Status != http.StatusServiceUnavailable {
		require.False(t, reached, "%s %s: %d after reaching Temporal", method, target, x.Status)
		require.Equal(t, before, a.vault.puts(), "%s %s: a refused BMC's credential was stored", method, target)
	}
	return x, reached
}

func errorOf(t *testing.T, x apitest.Exchange) string {
	t.Helper()
	var e struct{ Error string }
	require.NoError(t, json.Unmarshal(x.Body, &e), string(x.Body))
	return e.Error
}

func serverBody(address, site string) string {
	loc := ""
	if site != "" {
		loc = fmt.Sprintf(`,"location":{"site":%q,"rack":"R01","unit":1,"face":"front"}`, site)
	}
	return fmt.Sprintf(`{"serial":"SN-1","bmc":{"address":%q,"username":"root","password":"calvin"}%s}`, address, loc)
}

// The user's report: a worker would be sent, with the BMC's credentials,
// to the cloud's metadata service. Such addresses, and any outside the
// networks the site declares, are refused with nothing stored or started;
// addresses inside them go through to Temporal.
func TestRegisterRefusesBMCsOutsideTheSite(t *testing.T) {
	a := newBMCAPI(t, BMCConfig{Resolver: namesFor{
		"bmc-7.mgmt.example": {netip.MustParseAddr("10.1.0.7")},
		"metadata.example":   {netip.MustParseAddr("169.254.169.254")},
		"localhost":          {netip.MustParseAddr("127.0.0.1")},
		"split.example":      {netip.MustParseAddr("10.1.0.8"), netip.MustParseAddr("10.9.0.8")},
	}})
	refused := []struct{ address, site, says string }{
		{"https://169.254.169.254", "", "169.254.169.254 is link-local"},
		{"https://169.254.169.254", "dc2", "is link-local"},
		{"http://[::ffff:169.254.169.254]:80", "dc2", "is link-local"},
		{"https://[fe80::1]", "dc2", "is link-local"},
		{"https://127.0.0.1:9443", "dc2", "is loopback"},
		{"https://[::1]", "", "is loopback"},
		{"https://localhost:9443", "dc2", "host localhost resolves to 127.0.0.1, which is loopback"},
		{"https://0.0.0.0", "dc2", "is unspecified"},
		{"https://[::]", "dc2", "is unspecified"},
		{"https://224.0.0.1", "dc2", "is multicast"},
		{"https://10.2.0.5", "dc1", "bmc.address 10.2.0.5 is outside the BMC networks of site dc1 (10.1.0.0/16, fd00:b3c::/48)"},
		{"https://[fd00:b3d::5]", "dc1", "outside the BMC networks of site dc1"},
		{"https://metadata.example", "dc2", "host metadata.example resolves to 169.254.169.254, which is link-local"},
		{"https://split.example", "dc1", "host split.example resolves to 10.9.0.8, which is outside the BMC networks of site dc1"},
		{"https://nowhere.example", "dc2", "host nowhere.example does not resolve"},
	}
	for _, c := range refused {
		x, _ := a.send(t, http.MethodPost, "/api/v1/servers", serverBody(c.address, c.site))
		require.Equal(t, http.StatusUnprocessableEntity, x.Status, "%s at %q: %s", c.address, c.site, x.Body)
		require.Contains(t, errorOf(t, x), c.says, c.address)
	}
	for _, c := range []struct{ address, site string }{
		{"https://10.1.0.5", "dc1"},
		{"https://10.1.0.5:8443/", "dc1"},
		{"https://[fd00:b3c::5]", "dc1"},
		{"https://bmc-7.mgmt.example", "dc1"},
		// dc2 declares no networks: any address that is not one of the
		// refused kinds.
		{"https://192.0.2.10", "dc2"},
		// Not racked yet: dc2 would take it.
		{"https://192.0.2.10", ""},
	} {
		x, reached := a.send(t, http.MethodPost, "/api/v1/servers", serverBody(c.address, c.site))
		require.True(t, reached, "%s at %q: %d %s", c.address, c.site, x.Status, x.Body)
	}
}

// A server not racked yet goes to some site later: with every site
// declaring its networks, its BMC must be in one of them, and the refusal
// names them all.
func TestRegisterWithoutLocationNeedsSomeSitesNetwork(t *testing.T) {
	a := newBMCAPI(t, BMCConfig{})
	require.NoError(t, a.inv.EnsureSite(context.Background(), inventory.Site{Name: "dc2", BMCNetworks: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}}))
	x, _ := a.send(t, http.MethodPost, "/api/v1/servers", serverBody("https://10.3.0.5", ""))
	require.Equal(t, http.StatusUnprocessableEntity, x.Status, string(x.Body))
	require.Equal(t, "bmc.address 10.3.0.5 is in no site's BMC networks (dc1: 10.1.0.0/16, fd00:b3c::/48; dc2: 10.2.0.0/16)", errorOf(t, x))
	_, reached := a.send(t, http.MethodPost, "/api/v1/servers", serverBody("https://10.2.0.5", ""))
	require.True(t, reached)
}

// metalflow dev's simulated fleet is on loopback; the API takes it when
// told to, and still nothing link-local.
func TestAllowLoopbackTakesLoopbackOnly(t *testing.T) {
	a := newBMCAPI(t, BMCConfig{AllowLoopback: true, Resolver: namesFor{"localhost": {netip.MustParseAddr("::1")}}})
	for _, address := range []string{"https://127.0.0.1:9443", "https://[::1]:9443", "https://localhost:9443"} {
		_, reached := a.send(t, http.MethodPost, "/api/v1/servers", serverBody(address, "dc2"))
		require.True(t, reached, address)
	}
	x, _ := a.send(t, http.MethodPost, "/api/v1/servers", serverBody("https://169.254.169.254", "dc2"))
	require.Equal(t, http.StatusUnprocessableEntity, x.Status, string(x.Body))
	// A site's own networks still hold.
	x, _ = a.send(t, http.MethodPost, "/api/v1/servers", serverBody("https://127.0.0.1:9443", "dc1"))
	require.Equal(t, http.StatusUnprocessableEntity, x.Status, string(x.Body))
	require.Contains(t, errorOf(t, x), "outside the BMC networks of site dc1")
}

// A rack batch is checked whole: one BMC outside the rack's site refuses
// the batch, naming the server, before any credential is stored.
func TestRackBatchRefusesBMCsOutsideTheSite(t *testing.T) {
	a := newBMCAPI(t, BMCConfig{})
	batch := `{"servers":[
		{"serial":"SN-B1","unit":1,"bmc":{"address":"https://10.1.0.11","username":"root","password":"calvin"}},
		{"serial":"SN-B2","unit":2,"bmc":{"address":"https://169.254.169.254","username":"root","password":"calvin"}}]}`
	x, _ := a.send(t, http.MethodPost, "/api/v1/racks/dc1/R01/servers", batch)
	require.Equal(t, http.StatusUnprocessableEntity, x.Status, string(x.Body))
	require.Contains(t, errorOf(t, x), "servers[1] (SN-B2)")
	require.Contains(t, errorOf(t, x), "link-local")
	x, _ = a.send(t, http.MethodPost, "/api/v1/racks/dc1/R01/servers",
		`{"servers":[{"serial":"SN-B3","unit":3,"bmc":{"address":"https://10.2.0.11","username":"root","password":"calvin"}}]}`)
	require.Equal(t, http.StatusUnprocessableEntity, x.Status, string(x.Body))
	require.Contains(t, errorOf(t, x), "outside the BMC networks of site dc1")
	_, reached := a.send(t, http.MethodPost, "/api/v1/racks/dc1/R01/servers",
		`{"servers":[{"serial":"SN-B4","unit":4,"bmc":{"address":"https://10.1.0.14","username":"root","password":"calvin"}}]}`)
	require.True(t, reached)
}

// A retry that corrects the BMC address is held to the site the server is
// racked in, for the lifecycle and for the decommission alike.
func TestRetryWithANewBMCAddressIsChecked(t *testing.T) {
	a := newBMCAPI(t, BMCConfig{})
	ctx := context.Background()
	require.NoError(t, a.inv.PlaceAsset(ctx, "SN-R1", inventory.Placement{Site: "dc1", Rack: "R01", Unit: 9, Face: "front", HeightU: 1}, "test"))
	for _, path := range []string{"/api/v1/servers/SN-R1/retry", "/api/v1/servers/SN-R1/decommission/retry"} {
		x, _ := a.send(t, http.MethodPost, path, `{"bmc":{"address":"https://10.2.0.9"}}`)
		require.Equal(t, http.StatusUnprocessableEntity, x.Status, "%s: %s", path, x.Body)
		require.Contains(t, errorOf(t, x), "outside the BMC networks of site dc1", path)
		x, _ = a.send(t, http.MethodPost, path, `{"bmc":{"address":"https://169.254.169.254","username":"root","password":"calvin"}}`)
		require.Equal(t, http.StatusUnprocessableEntity, x.Status, "%s: %s", path, x.Body)
		_, reached := a.send(t, http.MethodPost, path, `{"bmc":{"address":"https://10.1.0.9","username":"root","password":"calvin"}}`)
		require.True(t, reached, path)
		// A new credential alone changes no address: nothing to check.
		_, reached = a.send(t, http.MethodPost, path, `{"bmc":{"username":"root","password":"calvin2"}}`)
		require.True(t, reached, path)
	}
}
