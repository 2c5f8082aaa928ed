package bmcsim

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFaultsAsClientErrors: each fault must surface in bmclib as the error
// a misbehaving real BMC causes.
func TestFaultsAsClientErrors(t *testing.T) {
	cases := []struct {
		name   string
		inject func(b *BMC)
		want   string // substring of the client's error
	}{
		{"503 Service Unavailable", func(b *BMC) { b.SetFaults(Faults{ErrorRate: 1, ErrorStatus: 503}) }, "503"},
		{"500 Internal Server Error", func(b *BMC) { b.SetFaults(Faults{ErrorRate: 1, ErrorStatus: 500}) }, "500"},
		{"latency beyond the timeout", func(b *BMC) { b.SetFaults(Faults{Latency: 5 * time.Second}) }, "Timeout exceeded"},
		{"hang", func(b *BMC) { b.SetFaults(Faults{Hang: true}) }, "Timeout exceeded"},
		{"session loss", func(b *BMC) { b.DropSessions() }, "401"},
		{"BMC reboot", func(b *BMC) { b.Reboot() }, "connection refused"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := quickConfig(VendorGeneric)
			cfg.RebootDuration = 10 * time.Second
			b := startFleet(t, cfg).BMCs()[0]
			cl, err := openWithin(b, b.username, b.password, time.Second)
			require.NoError(t, err)
			defer cl.Close(context.Background())
			_, err = cl.GetPowerState(ctxT(t))
			require.NoError(t, err)

			tc.inject(b)
			start := time.Now()
			_, err = cl.GetPowerState(ctxT(t))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.Less(t, time.Since(start), 3*time.Second, "the client gives up at its own timeout")
		})
	}
}

func TestWrongCredentialsAre401(t *testing.T) {
	b := startFleet(t, quickConfig(VendorHPE)).BMCs()[0]
	_, err := open(b, b.username, "not-the-password")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401")
	assert.Equal(t, 1, b.Counters().AuthFailures)

	c := newRawClient(t, b)
	c.b = &BMC{m: b.m, address: b.address, scheme: b.scheme, username: b.username, password: "nope"}
	r := c.do("GET", "/redfish/v1/Systems", nil)
	assert.Equal(t, http.StatusUnauthorized, r.status, "Basic auth with a wrong password")
	assert.NotEmpty(t, r.header.Get("WWW-Authenticate"))
}

func TestRebootComesBackWithoutSessions(t *testing.T) {
	b := startFleet(t, quickConfig(VendorDell)).BMCs()[0]
	cl := connect(t, b)
	ctx := ctxT(t)
	_, err := cl.SetPowerState(ctx, "on")
	require.NoError(t, err)
	ok, err := cl.ResetBMC(ctx, "GracefulRestart")
	require.NoError(t, err, "Manager.Reset answers before the BMC goes away")
	assert.True(t, ok)
	waitFor(t, "BMC to go down", b.Rebooting)
	waitFor(t, "BMC to come back", func() bool { return !b.Rebooting() })
	_, err = cl.GetPowerState(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401", "sessions do not survive a BMC reboot")
	fresh := connect(t, b)
	state, err := fresh.GetPowerState(ctx)
	require.NoError(t, err)
	assert.NotEqual(t, "Off", state, "the host keeps its power through a BMC reboot")
	assert.Equal(t, 1, b.Counters().BMCReboots)
}

func TestErrorRateIsAFraction(t *testing.T) {
	cfg := quickConfig(VendorGeneric)
	cfg.Faults = Faults{ErrorRate: 0.5}
	b := startFleet(t, cfg).BMCs()[0]
	c := newRawClient(t, b)
	codes := map[int]int{}
	for i := 0; i < 200; i++ {
		codes[c.do("GET", "/redfish/v1/Systems/Self", nil).status]++
	}
	assert.InDelta(t, 100, codes[200], 30)
	assert.Positive(t, codes[500])
	assert.Positive(t, codes[503])
	assert.Equal(t, 200, codes[200]+codes[500]+codes[503])
}

func TestLatencyDistribution(t *testing.T) {
	b := startFleet(t, quickConfig(VendorGeneric)).BMCs()[0]
	b.SetFaults(Faults{Latency: 50 * time.Millisecond, LatencyJitter: 50 * time.Millisecond})
	c := newRawClient(t, b)
	for i := 0; i < 5; i++ {
		start := time.Now()
		require.Equal(t, http.StatusOK, c.do("GET", "/redfish/v1/", nil).status)
		assert.GreaterOrEqual(t, time.Since(start), 50*time.Millisecond)
	}
}

func TestAdminEndpoint(t *testing.T) {
	cfg := quickConfig(VendorGeneric)
	cfg.Count = 2
	cfg.AdminAddr = "127.0.0.1:0"
	f := startFleet(t, cfg)
	admin := "http://" + f.AdminAddress()
	call := func(method, path, body string) (int, string) {
		req, _ := http.NewRequest(method, admin+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(data)
	}
	one, two := f.BMCs()[0], f.BMCs()[1]
	cl1, cl2 := connect(t, one), connect(t, two)
	ctx := ctxT(t)

	status, _ := call("PUT", "/bmcs/bmc-0001/faults", `{"error_rate":1,"error_status":503,"latency":"10ms"}`)
	require.Equal(t, http.StatusOK, status)
	_, err := cl1.GetPowerState(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "503")
	_, err = cl2.GetPowerState(ctx)
	assert.NoError(t, err, "faults set on one BMC stay there")

	status, body := call("GET", "/bmcs/bmc-0001", "")
	require.Equal(t, http.StatusOK, status)
	var st State
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	assert.Equal(t, Faults{ErrorRate: 1, ErrorStatus: 503, Latency: 10 * time.Millisecond}, st.Faults)

	status, _ = call("DELETE", "/faults", "")
	require.Equal(t, http.StatusNoContent, status)
	_, err = cl1.GetPowerState(ctx)
	require.NoError(t, err)

	status, _ = call("PUT", "/faults", `{"error_rate":1,"error_status":500}`)
	require.Equal(t, http.StatusOK, status)
	_, err = cl2.GetPowerState(ctx)
	require.Error(t, err, "fleet-wide faults reach every BMC")
	call("DELETE", "/faults", "")

	status, _ = call("POST", "/bmcs/bmc-0002/drop-sessions", "")
	require.Equal(t, http.StatusNoContent, status)
	_, err = cl2.GetPowerState(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "401")

	status, _ = call("POST", "/bmcs/bmc-0001/reboot", "")
	require.Equal(t, http.StatusAccepted, status)
	assert.True(t, one.Rebooting())
	waitFor(t, "BMC back", func() bool { return !one.Rebooting() })
	assert.Equal(t, 1, one.Counters().BMCReboots)

	for _, bad := range []string{`{"error_rate":2}`, `{"error_status":418}`, `{"latency":"soon"}`, `not json`} {
		status, _ = call("PUT", "/faults", bad)
		assert.Equal(t, http.StatusBadRequest, status, bad)
	}
	status, _ = call("PUT", "/bmcs/bmc-9999/faults", `{}`)
	assert.Equal(t, http.StatusNotFound, status)
	status, body = call("GET", "/bmcs", "")
	require.Equal(t, http.StatusOK, status)
	var manifest []ManifestEntry
	require.NoError(t, json.Unmarshal([]byte(body), &manifest))
	assert.Len(t, manifest, 2)
}
