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

// TestFaultRatesAreCounted: hangs, 5xx answers and session losses hit the
// fractions asked for, change nothing on the BMC, and are counted so a
// test can report what its client went through.
func TestFaultRatesAreCounted(t *testing.T) {
	cfg := quickConfig(VendorGeneric)
	cfg.Faults = Faults{ErrorRate: 0.2, HangRate: 0.1, SessionDropRate: 0.1}
	b := startFleet(t, cfg).BMCs()[0]
	// A hung request is over when the client gives up.
	hc := &http.Client{Timeout: 500 * time.Millisecond, Transport: newRawClient(t, b).http.Transport}
	codes := map[int]int{}
	timeouts := 0
	send := func(req *http.Request) *http.Response {
		resp, err := hc.Do(req)
		if err != nil {
			timeouts++
			return nil
		}
		resp.Body.Close()
		codes[resp.StatusCode]++
		return resp
	}
	login := func() string {
		for {
			req, _ := http.NewRequest("POST", b.Address()+"/redfish/v1/SessionService/Sessions",
				strings.NewReader(`{"UserName":"`+b.username+`","Password":"`+b.password+`"}`))
			if resp := send(req); resp != nil && resp.StatusCode == http.StatusCreated {
				return resp.Header.Get("X-Auth-Token")
			}
		}
	}
	token := login()
	const n = 200
	for range n {
		req, _ := http.NewRequest("GET", b.Address()+"/redfish/v1/Systems/Self", nil)
		req.Header.Set("X-Auth-Token", token)
		if resp := send(req); resp != nil && resp.StatusCode == http.StatusUnauthorized {
			token = login()
		}
	}
	got := b.Counters()
	requests := float64(got.Requests)
	assert.LessOrEqual(t, got.FaultHangs, timeouts, "every hang left its client waiting")
	assert.InDelta(t, 0.1*requests, float64(got.FaultHangs), 0.06*requests)
	// A slow answer may time out too, on a loaded machine: the client's
	// count of 5xx is a lower bound.
	assert.GreaterOrEqual(t, got.Faults5xx, codes[500]+codes[503])
	assert.LessOrEqual(t, got.Faults5xx, codes[500]+codes[503]+timeouts-got.FaultHangs)
	assert.InDelta(t, 0.2*0.9*requests, float64(got.Faults5xx), 0.08*requests)
	assert.Positive(t, got.FaultSessionDrops)
	assert.GreaterOrEqual(t, codes[401], 1)
	assert.GreaterOrEqual(t, got.AuthFailures, got.FaultSessionDrops, "each drop refused the request that held the session")
	assert.Zero(t, got.PowerOns+got.Resets, "faults change nothing on the host")
}

// TestHangRateOneHangsEverything: every hung request is counted once.
func TestHangRateOneHangsEverything(t *testing.T) {
	cfg := quickConfig(VendorGeneric)
	cfg.Faults = Faults{HangRate: 1}
	b := startFleet(t, cfg).BMCs()[0]
	hc := &http.Client{Timeout: 200 * time.Millisecond, Transport: newRawClient(t, b).http.Transport}
	for range 3 {
		_, err := hc.Get(b.Address() + "/redfish/v1/")
		require.Error(t, err)
	}
	assert.Equal(t, 3, b.Counters().FaultHangs)
	assert.Equal(t, 3, b.Counters().Requests)
}

// TestFaultSeed: the same seed hits the same requests; another seed others.
func TestFaultSeed(t *testing.T) {
	statuses := func(seed uint64) []int {
		cfg := quickConfig(VendorGeneric)
		cfg.Seed = seed
		cfg.Faults = Faults{ErrorRate: 0.5}
		c := newRawClient(t, startFleet(t, cfg).BMCs()[0])
		var out []int
		for range 40 {
			out = append(out, c.do("GET", "/redfish/v1/Systems/Self", nil).status)
		}
		return out
	}
	assert.Equal(t, statuses(7), statuses(7))
	assert.NotEqual(t, statuses(7), statuses(8))
}

func TestAdminCountersAndRates(t *testing.T) {
	cfg := quickConfig(VendorGeneric)
	cfg.Count = 2
	cfg.AdminAddr = "127.0.0.1:0"
	f := startFleet(t, cfg)
	admin := "http://" + f.AdminAddress()
	call := func(method, path, body string) (int, []byte) {
		req, _ := http.NewRequest(method, admin+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, data
	}
	status, _ := call("PUT", "/faults", `{"hang_rate":0.05,"session_drop_rate":0.02,"error_rate":0.2}`)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, Faults{HangRate: 0.05, SessionDropRate: 0.02, ErrorRate: 0.2}, f.BMCs()[1].Faults())
	for _, bad := range []string{`{"hang_rate":1.5}`, `{"session_drop_rate":-0.1}`} {
		status, body := call("PUT", "/faults", bad)
		assert.Equal(t, http.StatusBadRequest, status, bad)
		assert.Contains(t, string(body), "not between 0 and 1")
	}
	assert.Equal(t, 0.05, f.BMCs()[0].Faults().HangRate, "a refused change changes nothing")
	call("DELETE", "/faults", "")

	c1, c2 := newRawClient(t, f.BMCs()[0]), newRawClient(t, f.BMCs()[1])
	c1.do("GET", "/redfish/v1/Systems/Self", nil)
	c2.do("GET", "/redfish/v1/Systems/Self", nil)
	c2.do("GET", "/redfish/v1/Systems/Self", nil)
	status, body := call("GET", "/counters", "")
	require.Equal(t, http.StatusOK, status)
	var fc FleetCounters
	require.NoError(t, json.Unmarshal(body, &fc))
	assert.Equal(t, 1, fc.BMCs["bmc-0001"].Requests)
	assert.Equal(t, 2, fc.BMCs["bmc-0002"].Requests)
	assert.Equal(t, 3, fc.Total.Requests)
}

// TestRetryAfterOnBusyAnswers: injected 503 and 429 carry Retry-After only
// when asked to, in seconds or as a date no earlier than the seconds; the
// BMC keeps a record of when each request arrived and how it was failed.
func TestRetryAfterOnBusyAnswers(t *testing.T) {
	cfg := quickConfig(VendorGeneric)
	cfg.InsecureHTTP = true
	b := startFleet(t, cfg).BMCs()[0]
	get := func() *http.Response {
		resp, err := http.Get(b.Address() + "/redfish/v1/")
		require.NoError(t, err)
		_ = resp.Body.Close()
		return resp
	}

	b.SetFaults(Faults{ErrorRate: 1, ErrorStatus: 503})
	resp := get()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Empty(t, resp.Header.Get("Retry-After"), "off by default")

	b.SetFaults(Faults{ErrorRate: 1, ErrorStatus: 429, RetryAfter: 3})
	resp = get()
	assert.Equal(t, http.StatusTooManyRequests, resp.StatusCode)
	assert.Equal(t, "3", resp.Header.Get("Retry-After"))

	b.SetFaults(Faults{ErrorRate: 1, ErrorStatus: 500, RetryAfter: 3})
	assert.Empty(t, get().Header.Get("Retry-After"), "a 500 asks for nothing")

	b.SetFaults(Faults{ErrorRate: 1, ErrorStatus: 503, RetryAfter: 3, RetryAfterDate: true})
	resp = get()
	at, err := http.ParseTime(resp.Header.Get("Retry-After"))
	require.NoError(t, err, "an HTTP-date")

	seen := b.Requests()
	require.Len(t, seen, 4)
	assert.Equal(t, []int{503, 429, 500, 503}, []int{seen[0].Fault, seen[1].Fault, seen[2].Fault, seen[3].Fault})
	assert.False(t, at.Before(seen[3].At.Add(3*time.Second)), "the date asks for at least 3 s after the request")

	b.SetFaults(Faults{})
	assert.Equal(t, http.StatusOK, get().StatusCode)
	seen = b.Requests()
	assert.Equal(t, Request{At: seen[4].At, Method: "GET", Path: "/redfish/v1/"}, seen[4])

	var f Faults
	require.NoError(t, json.Unmarshal([]byte(`{"error_rate":1,"error_status":429,"retry_after":5,"retry_after_date":true}`), &f))
	assert.Equal(t, Faults{ErrorRate: 1, ErrorStatus: 429, RetryAfter: 5, RetryAfterDate: true}, f)
	assert.Error(t, json.Unmarshal([]byte(`{"retry_after":-1}`), &f))
	assert.Error(t, json.Unmarshal([]byte(`{"error_status":404}`), &f))
}
