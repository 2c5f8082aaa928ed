package hardware

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/bmcsim"
)

// scriptedBMC answers each request with the next status of its script
// (0: hang until the client gives up), then 200.
type scriptedBMC struct {
	url    string
	mu     sync.Mutex
	script []int
	seen   []string
}

func (s *scriptedBMC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.seen = append(s.seen, r.Method)
	status := http.StatusOK
	if len(s.script) > 0 {
		status, s.script = s.script[0], s.script[1:]
	}
	s.mu.Unlock()
	if status == 0 {
		<-r.Context().Done()
		return
	}
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `{"ok":true}`)
}

func (s *scriptedBMC) requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seen...)
}

func scripted(t *testing.T, script ...int) (*scriptedBMC, *http.Client, *transport) {
	t.Helper()
	bmc := &scriptedBMC{script: script}
	srv := httptest.NewServer(bmc)
	t.Cleanup(srv.Close)
	bmc.url = srv.URL
	client, tr, err := httpClientFor(Endpoint{Address: srv.URL, Timeout: 200 * time.Millisecond})
	require.NoError(t, err)
	return bmc, client, tr
}

func send(t *testing.T, c *http.Client, method, url string) (int, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(""))
	require.NoError(t, err)
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err, "the body stays readable after RoundTrip returned")
	if resp.StatusCode == http.StatusOK {
		assert.JSONEq(t, `{"ok":true}`, string(body))
	}
	return resp.StatusCode, nil
}

func TestTransportRetriesReads(t *testing.T) {
	bmc, c, tr := scripted(t, 503, 500, 0)
	status, err := send(t, c, http.MethodGet, bmc.url)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, status, "two 5xx and a hang, then the answer")
	assert.Len(t, bmc.requests(), 4)
	assert.Equal(t, failures{}, tr.failures(), "a read that came through in the end is no failure")
}

func TestTransportGivesUpOnReadsAfterItsAttempts(t *testing.T) {
	bmc, c, tr := scripted(t, 503, 503, 503, 503, 503)
	status, err := send(t, c, http.MethodGet, bmc.url)
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Len(t, bmc.requests(), readAttempts)
	assert.Equal(t, failures{failed: 1}, tr.failures())

	bmc, c, tr = scripted(t, 0, 0, 0, 0)
	_, err = send(t, c, http.MethodGet, bmc.url)
	require.Error(t, err, "a BMC that keeps hanging is a timeout")
	assert.Len(t, bmc.requests(), readAttempts)
	assert.Equal(t, failures{failed: 1}, tr.failures())
}

func TestTransportNeverRepeatsActions(t *testing.T) {
	for _, method := range []string{http.MethodPost, http.MethodDelete} {
		bmc, c, tr := scripted(t, 503)
		status, err := send(t, c, method, bmc.url+"/redfish/v1/Systems/1/Actions/ComputerSystem.Reset")
		require.NoError(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, status, method)
		assert.Equal(t, []string{method}, bmc.requests(), "%s is sent once: the BMC may have acted", method)
		assert.Equal(t, failures{failed: 1}, tr.failures())

		bmc, c, tr = scripted(t, 0)
		_, err = send(t, c, method, bmc.url)
		require.Error(t, err, "%s that hangs ends at the timeout", method)
		assert.Len(t, bmc.requests(), 1)
		assert.Equal(t, failures{failed: 1}, tr.failures())
	}
}

// TestTransportResendsActionsABusyBMCRefused: a 429 says the BMC did not
// act, so an action answered 429 goes again; a 5xx or a hang after one
// 429 still ends it.
func TestTransportResendsActionsABusyBMCRefused(t *testing.T) {
	for _, method := range []string{http.MethodPost, http.MethodDelete} {
		bmc, c, tr := scripted(t, 429, 429)
		status, err := send(t, c, method, bmc.url+"/redfish/v1/Systems/1/Actions/ComputerSystem.Reset")
		require.NoError(t, err)
		assert.Equal(t, http.StatusOK, status, method)
		assert.Equal(t, []string{method, method, method}, bmc.requests())
		assert.Equal(t, failures{}, tr.failures())

		bmc, c, tr = scripted(t, 429, 503)
		status, err = send(t, c, method, bmc.url+"/redfish/v1/Systems/1/Actions/ComputerSystem.Reset")
		require.NoError(t, err)
		assert.Equal(t, http.StatusServiceUnavailable, status, "%s: after a 503 the BMC may have acted", method)
		assert.Equal(t, []string{method, method}, bmc.requests())
		assert.Equal(t, failures{failed: 1}, tr.failures())

		bmc, c, _ = scripted(t, 429, 0, 0)
		_, err = send(t, c, method, bmc.url)
		require.Error(t, err, "%s that hangs after a 429 is not sent again", method)
		assert.Len(t, bmc.requests(), 2)
	}
}

// TestTransportRepeatsPatchesAndLogins: setting properties twice is
// setting them once, and a login may be sent again; the body goes again.
func TestTransportRepeatsPatchesAndLogins(t *testing.T) {
	for _, tc := range []struct{ method, path string }{
		{http.MethodPatch, "/redfish/v1/Systems/1"},
		{http.MethodPost, "/redfish/v1/SessionService/Sessions/"},
	} {
		var bodies []string
		var mu sync.Mutex
		script := []int{500, 0}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies = append(bodies, string(b))
			status := http.StatusOK
			if len(script) > 0 {
				status, script = script[0], script[1:]
			}
			mu.Unlock()
			if status == 0 {
				<-r.Context().Done()
				return
			}
			w.WriteHeader(status)
		}))
		t.Cleanup(srv.Close)
		c, tr, err := httpClientFor(Endpoint{Address: srv.URL, Timeout: 200 * time.Millisecond})
		require.NoError(t, err)
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(`{"a":1}`))
		require.NoError(t, err)
		resp, err := c.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, tc.method)
		mu.Lock()
		assert.Equal(t, []string{`{"a":1}`, `{"a":1}`, `{"a":1}`}, bodies, "%s sent whole each time", tc.method)
		mu.Unlock()
		assert.Equal(t, failures{}, tr.failures())
	}
}

func TestTransportCountsUnauthorizedAndIgnoresNotImplemented(t *testing.T) {
	bmc, c, tr := scripted(t, 401, 501, 404)
	for _, want := range []int{401, 501, 404} {
		status, err := send(t, c, http.MethodGet, bmc.url)
		require.NoError(t, err)
		assert.Equal(t, want, status)
	}
	assert.Len(t, bmc.requests(), 3, "no retry for 401, 501 or 404")
	assert.Equal(t, failures{unauthorized: 1}, tr.failures())
}

func TestTransportStopsWithTheCaller(t *testing.T) {
	bmc, c, tr := scripted(t, 0, 0, 0, 0)
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, bmc.url, nil)
	require.NoError(t, err)
	go func() {
		for len(bmc.requests()) == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		cancel()
	}()
	_, err = c.Do(req)
	require.ErrorIs(t, err, context.Canceled)
	assert.Len(t, bmc.requests(), 1, "a cancelled caller gets no retries")
	assert.Equal(t, failures{failed: 1}, tr.failures())
}

// TestRunDistrustsSwallowedFailures: an operation whose library call
// reports success although one of its requests failed is reported as a
// transient failure, and one whose session was lost under it logs in
// again and repeats, up to maxRelogins times.
func TestRunDistrustsSwallowedFailures(t *testing.T) {
	f, err := bmcsim.Start(bmcsim.Config{Count: 1, PostDelay: 100 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	b := f.BMCs()[0]
	user, pass := b.Credentials()
	ctx := t.Context()
	m, err := Dial(ctx, Endpoint{Address: b.Address(), Username: user, Password: pass, CACertPEM: f.CACertPEM(), Timeout: time.Second})
	require.NoError(t, err)
	s := m.(*session)
	t.Cleanup(func() { _ = s.Close(context.Background()) })

	// A sub-request answered 500 that the "library" swallows.
	swallow5xx := func() error {
		b.SetFaults(bmcsim.Faults{ErrorRate: 1, ErrorStatus: 500})
		defer b.SetFaults(bmcsim.Faults{})
		resp, err := s.client.Post(b.Address()+"/redfish/v1/Systems/1/Actions/ComputerSystem.Reset", "application/json", strings.NewReader(`{}`))
		if err == nil {
			resp.Body.Close()
		}
		return nil
	}
	err = s.run(ctx, "swallowing", swallow5xx)
	var he *Error
	require.True(t, errors.As(err, &he), "%v", err)
	assert.Equal(t, Transient, he.Kind)
	assert.Contains(t, err.Error(), "reported success")

	// A 401 swallowed once: log in again, repeat, then the answer holds.
	calls := 0
	logins := b.Counters().SessionsCreated
	err = s.run(ctx, "losing the session", func() error {
		calls++
		if calls == 1 {
			b.DropSessions()
		}
		_, err := s.bmclib().PowerStateGet(ctx)
		return err
	})
	require.NoError(t, err)
	assert.Equal(t, 2, calls)
	assert.Equal(t, logins+1, b.Counters().SessionsCreated, "one new login")

	// A BMC that loses every session at once gives up after maxRelogins.
	calls = 0
	err = s.run(ctx, "always losing", func() error {
		calls++
		b.DropSessions()
		_, err := s.bmclib().PowerStateGet(ctx)
		return err
	})
	require.True(t, errors.As(err, &he), "%v", err)
	assert.Equal(t, Transient, he.Kind, "a lost session is not a wrong credential")
	assert.Equal(t, maxRelogins+1, calls)
}
