package integration

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestBMCAddressesAreHeldToTheSite is the user's report against the real
// binary: POST /api/v1/servers took https://169.254.169.254 as a BMC, and a
// worker would have logged in to the metadata service with the BMC's
// credentials. With a layout declaring a site's BMC networks, such an
// address, loopback (dev runs no simulated fleet here), and one outside
// the site's networks are each refused with 422 and start nothing; one
// inside them is taken.
func TestBMCAddressesAreHeldToTheSite(t *testing.T) {
	layout := filepath.Join(t.TempDir(), "layout.yaml")
	require.NoError(t, os.WriteFile(layout, []byte("sites:\n  - {name: dc7, bmcNetworks: [10.7.0.0/16]}\n"+
		"racks:\n  - {site: dc7, room: A, name: R01, heightU: 42}\n"), 0o644))
	s := startDev(t, "--ephemeral", "--layout", layout)
	post := func(serial, address, location string) response {
		t.Helper()
		body := fmt.Sprintf(`{"serial":%q,"bmc":{"address":%q,"username":"root","password":"calvin"}%s}`, serial, address, location)
		return do(t, http.MethodPost, s.api+"/api/v1/servers", body)
	}
	atDC7 := `,"location":{"site":"dc7","rack":"R01","unit":4,"face":"front"}`
	for _, c := range []struct{ address, location, says string }{
		{"https://169.254.169.254", "", "bmc.address 169.254.169.254 is link-local"},
		{"https://169.254.169.254", atDC7, "is link-local"},
		{"https://127.0.0.1:8443", "", "is loopback"},
		{"https://10.8.0.1", atDC7, "bmc.address 10.8.0.1 is outside the BMC networks of site dc7 (10.7.0.0/16)"},
	} {
		r := post("SN-TRAP", c.address, c.location)
		require.Equal(t, http.StatusUnprocessableEntity, r.code, "%s: %s", c.address, r.body)
		require.Contains(t, r.errorMessage(t), c.says)
	}
	r := do(t, http.MethodPost, s.api+"/api/v1/racks/dc7/R01/servers",
		`{"servers":[{"serial":"SN-TRAP","unit":5,"bmc":{"address":"https://10.8.0.2","username":"root","password":"calvin"}}]}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.code, string(r.body))
	require.Contains(t, r.errorMessage(t), "servers[0] (SN-TRAP)")

	// Nothing was started for any of them.
	require.Zero(t, countLifecycles(t, temporalClient(t, s.temporal)))
	r = do(t, http.MethodGet, s.api+"/api/v1/servers/SN-TRAP", "")
	require.Equal(t, http.StatusNotFound, r.code, string(r.body))

	r = post("SN-IN", "https://10.7.0.5", atDC7)
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	r = do(t, http.MethodPost, s.api+"/api/v1/servers/SN-IN/retry", `{"bmc":{"address":"https://169.254.169.254"}}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.code, "a retry's corrected address is held to the same rules: %s", r.body)
}
