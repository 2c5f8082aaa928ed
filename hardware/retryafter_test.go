package hardware

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/bmcsim"
)

// busyBMC is a simulated BMC answering every request with faults, and a
// client through metalflow's transport.
func busyBMC(t *testing.T, faults bmcsim.Faults) (*bmcsim.BMC, *http.Client, *transport) {
	t.Helper()
	f, err := bmcsim.Start(bmcsim.Config{Count: 1, InsecureHTTP: true})
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	b := f.BMCs()[0]
	b.SetFaults(faults)
	client, tr, err := httpClientFor(Endpoint{Address: b.Address(), Timeout: 5 * time.Second})
	require.NoError(t, err)
	return b, client, tr
}

// rootRequests are the BMC's records of the requests for the service root.
func rootRequests(b *bmcsim.BMC) []bmcsim.Request {
	var out []bmcsim.Request
	for _, r := range b.Requests() {
		if r.Method == http.MethodGet && r.Path == "/redfish/v1/" {
			out = append(out, r)
		}
	}
	return out
}

// TestTransportWaitsTheRetryAfterABusyBMCAsks: a 503 or 429 with
// Retry-After, in seconds or as an HTTP-date, is resent no earlier than
// the BMC asked, by the BMC's own clock of the requests it received.
func TestTransportWaitsTheRetryAfterABusyBMCAsks(t *testing.T) {
	cases := []struct {
		name   string
		faults bmcsim.Faults
	}{
		{"503 seconds", bmcsim.Faults{ErrorRate: 1, ErrorStatus: 503, RetryAfter: 1}},
		{"429 seconds", bmcsim.Faults{ErrorRate: 1, ErrorStatus: 429, RetryAfter: 1}},
		{"503 HTTP-date", bmcsim.Faults{ErrorRate: 1, ErrorStatus: 503, RetryAfter: 1, RetryAfterDate: true}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, c, tr := busyBMC(t, tc.faults)
			// The BMC is free again once it has answered busy once.
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for len(rootRequests(b)) == 0 {
					time.Sleep(5 * time.Millisecond)
				}
				b.SetFaults(bmcsim.Faults{})
			}()
			resp, err := c.Get(b.Address() + "/redfish/v1/")
			wg.Wait()
			require.NoError(t, err)
			_ = resp.Body.Close()
			require.Equal(t, http.StatusOK, resp.StatusCode)
			seen := rootRequests(b)
			require.Len(t, seen, 2, "one busy answer, one resend")
			assert.Equal(t, tc.faults.ErrorStatus, seen[0].Fault)
			assert.Zero(t, seen[1].Fault)
			asked := time.Duration(tc.faults.RetryAfter) * time.Second
			assert.False(t, seen[1].At.Before(seen[0].At.Add(asked)),
				"resent %v after the busy answer, asked %v", seen[1].At.Sub(seen[0].At), asked)
			assert.Equal(t, failures{}, tr.failures(), "a request that succeeded in the end is no failure")
		})
	}
}

// TestTransportHandsBackAWaitItMayNotTake: a Retry-After beyond
// maxRetryAfter, or beyond the caller's deadline, is not waited out: the
// busy answer goes back at once for the activity's retry policy.
func TestTransportHandsBackAWaitItMayNotTake(t *testing.T) {
	cases := []struct {
		name     string
		faults   bmcsim.Faults
		deadline time.Duration
	}{
		{"beyond the bound", bmcsim.Faults{ErrorRate: 1, ErrorStatus: 503, RetryAfter: int(maxRetryAfter/time.Second) + 1}, 0},
		{"beyond the deadline", bmcsim.Faults{ErrorRate: 1, ErrorStatus: 429, RetryAfter: 20}, 10 * time.Second},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			b, c, tr := busyBMC(t, tc.faults)
			ctx := t.Context()
			if tc.deadline > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tc.deadline)
				defer cancel()
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, b.Address()+"/redfish/v1/", nil)
			require.NoError(t, err)
			resp, err := c.Do(req)
			require.NoError(t, err, "the BMC's answer, not the caller's timeout")
			_ = resp.Body.Close()
			assert.Equal(t, tc.faults.ErrorStatus, resp.StatusCode)
			assert.NotEmpty(t, resp.Header.Get("Retry-After"), "the ask reaches the caller")
			assert.Len(t, rootRequests(b), 1, "sent once: the wait was not taken")
			assert.Equal(t, failures{failed: 1}, tr.failures())
		})
	}
}

// TestTransportIgnoresAnUnreadableRetryAfter: a Retry-After that is
// neither seconds nor a date is as if absent: the usual resend.
func TestTransportIgnoresAnUnreadableRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Method)
		n := len(seen)
		mu.Unlock()
		if n == 1 {
			w.Header().Set("Retry-After", "when I feel like it")
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(srv.Close)
	c, _, err := httpClientFor(Endpoint{Address: srv.URL, Timeout: 5 * time.Second})
	require.NoError(t, err)
	status, err := send(t, c, http.MethodGet, srv.URL+"/redfish/v1/")
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, status)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"GET", "GET"}, seen)
}

func TestRetryAfterParsing(t *testing.T) {
	now := time.Date(2026, 12, 7, 6, 0, 0, 0, time.UTC)
	cases := []struct {
		value string
		want  time.Duration
		ok    bool
	}{
		{"3", 3 * time.Second, true},
		{" 0 ", 0, true},
		{now.Add(7 * time.Second).Format(http.TimeFormat), 7 * time.Second, true},
		{"Monday, 07-Dec-26 06:00:04 GMT", 4 * time.Second, true}, // RFC 850, still valid
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},
		{"99999999999999999999", 0, false},
		{"18446744073709551615", 1 << 32 * time.Second, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
	}
	for _, tc := range cases {
		got, ok := retryAfter(tc.value, now)
		assert.Equal(t, tc.ok, ok, "%q", tc.value)
		assert.Equal(t, tc.want, got, "%q", tc.value)
	}
}
