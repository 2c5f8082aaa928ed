package cloud

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Nova cannot run on the machines these tests run on, so the aggregate
// client is tested against a contract: recorded Nova responses in
// testdata/nova, written from the Compute API reference
// (https://docs.openstack.org/api-ref/compute/#host-aggregates-os-aggregates)
// for microversion 2.41, replayed by a server that also checks each request
// the client sends (method, path, JSON body, microversion and token
// headers) in order. If Nova's API changed, these files are what to update.

// exchange is one recorded request and Nova's answer to it.
type exchange struct {
	method, path string
	// body is the JSON the client must send, "" for none.
	body   string
	status int
	// reply names the recorded response in testdata/nova.
	reply string
}

const novaToken = "gAAAAAB-recorded-token"

// novaReplay serves the exchanges in order and fails the test on any
// request that does not match the next one, or on exchanges left unused.
func novaReplay(t *testing.T, script ...exchange) *Compute {
	t.Helper()
	var (
		mu   sync.Mutex
		next int
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		if next >= len(script) {
			t.Errorf("unexpected request %s %s after the recorded exchanges", r.Method, r.URL.Path)
			w.WriteHeader(http.StatusTeapot)
			return
		}
		want := script[next]
		next++
		assert.Equal(t, want.method+" /v2.1"+want.path, r.Method+" "+r.URL.Path, "request %d", next)
		assert.Equal(t, NovaMicroversion, r.Header.Get("X-OpenStack-Nova-API-Version"))
		assert.Equal(t, novaToken, r.Header.Get("X-Auth-Token"))
		got, _ := io.ReadAll(r.Body)
		if want.body == "" {
			assert.Empty(t, got, "request %d has no body", next)
		} else {
			assert.JSONEq(t, want.body, string(got), "request %d body", next)
		}
		reply, err := os.ReadFile(filepath.Join("testdata", "nova", want.reply))
		require.NoError(t, err)
		require.True(t, json.Valid(reply), want.reply)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-OpenStack-Nova-API-Version", NovaMicroversion)
		w.WriteHeader(want.status)
		_, _ = w.Write(reply)
	}))
	t.Cleanup(func() {
		srv.Close()
		mu.Lock()
		defer mu.Unlock()
		assert.Equal(t, len(script), next, "recorded exchanges used")
	})
	c, err := NewCompute(context.Background(), ComputeOptions{URL: srv.URL + "/v2.1", Token: novaToken})
	require.NoError(t, err)
	return c
}

// rack7 is the failure domain of the recorded responses.
func rack7() Aggregate { return Aggregate{Name: "dc1-A-R07", AvailabilityZone: "dc1"} }

const newHost = "cmp-dc1-r07-02"

func TestAddHostToAggregateContract(t *testing.T) {
	list := exchange{method: "GET", path: "/os-aggregates", status: 200, reply: "list-without-host.json"}
	addHost := exchange{method: "POST", path: "/os-aggregates/7/action", body: `{"add_host": {"host": "cmp-dc1-r07-02"}}`, status: 200, reply: "add-host.json"}

	t.Run("adds the host to the existing aggregate", func(t *testing.T) {
		c := novaReplay(t, list, addHost)
		require.NoError(t, c.AddHostToAggregate(context.Background(), rack7(), newHost))
	})
	t.Run("host already there: nothing sent", func(t *testing.T) {
		c := novaReplay(t, exchange{method: "GET", path: "/os-aggregates", status: 200, reply: "list-with-host.json"})
		require.NoError(t, c.AddHostToAggregate(context.Background(), rack7(), newHost))
	})
	t.Run("creates the aggregate of a new rack with its zone", func(t *testing.T) {
		c := novaReplay(t,
			exchange{method: "GET", path: "/os-aggregates", status: 200, reply: "list-empty.json"},
			exchange{method: "POST", path: "/os-aggregates", body: `{"aggregate": {"name": "dc1-A-R07", "availability_zone": "dc1"}}`, status: 200, reply: "create.json"},
			exchange{method: "POST", path: "/os-aggregates/12/action", body: `{"add_host": {"host": "cmp-dc1-r07-02"}}`, status: 200, reply: "add-host.json"},
		)
		require.NoError(t, c.AddHostToAggregate(context.Background(), rack7(), newHost))
	})
	t.Run("aggregate created concurrently", func(t *testing.T) {
		c := novaReplay(t,
			exchange{method: "GET", path: "/os-aggregates", status: 200, reply: "list-empty.json"},
			exchange{method: "POST", path: "/os-aggregates", body: `{"aggregate": {"name": "dc1-A-R07", "availability_zone": "dc1"}}`, status: 409, reply: "create-exists.json"},
			list, addHost,
		)
		require.NoError(t, c.AddHostToAggregate(context.Background(), rack7(), newHost))
	})
	t.Run("lost response: Nova says the host is already there", func(t *testing.T) {
		c := novaReplay(t, list,
			exchange{method: "POST", path: "/os-aggregates/7/action", body: `{"add_host": {"host": "cmp-dc1-r07-02"}}`, status: 409, reply: "add-host-exists.json"},
			exchange{method: "GET", path: "/os-aggregates/7", status: 200, reply: "add-host.json"},
		)
		require.NoError(t, c.AddHostToAggregate(context.Background(), rack7(), newHost))
	})
	t.Run("host unknown to Nova yet is retryable", func(t *testing.T) {
		c := novaReplay(t, list,
			exchange{method: "POST", path: "/os-aggregates/7/action", body: `{"add_host": {"host": "cmp-dc1-r07-02"}}`, status: 404, reply: "add-host-unknown.json"},
		)
		err := c.AddHostToAggregate(context.Background(), rack7(), newHost)
		require.Error(t, err)
		assert.True(t, IsRetryable(err), "%v", err)
		assert.Contains(t, err.Error(), "could not be found")
	})
	t.Run("Nova unavailable is retryable", func(t *testing.T) {
		c := novaReplay(t, exchange{method: "GET", path: "/os-aggregates", status: 503, reply: "service-unavailable.json"})
		err := c.AddHostToAggregate(context.Background(), rack7(), newHost)
		assert.True(t, IsRetryable(err), "%v", err)
	})
	t.Run("aggregate in another zone is a conflict and nothing is added", func(t *testing.T) {
		c := novaReplay(t, exchange{method: "GET", path: "/os-aggregates", status: 200, reply: "list-other-zone.json"})
		err := c.AddHostToAggregate(context.Background(), rack7(), newHost)
		assert.Equal(t, Conflict, KindOf(err), "%v", err)
	})
	t.Run("bad input sends nothing", func(t *testing.T) {
		c := novaReplay(t)
		for _, agg := range []Aggregate{{Name: ""}, {Name: "x", AvailabilityZone: "dc1:bad"}} {
			err := c.AddHostToAggregate(context.Background(), agg, newHost)
			assert.Equal(t, Invalid, KindOf(err), "%v", err)
		}
		assert.Equal(t, Invalid, KindOf(c.AddHostToAggregate(context.Background(), rack7(), "")))
	})
}

func TestRemoveHostFromAggregateContract(t *testing.T) {
	t.Run("removes a present host", func(t *testing.T) {
		c := novaReplay(t,
			exchange{method: "GET", path: "/os-aggregates", status: 200, reply: "list-with-host.json"},
			exchange{method: "POST", path: "/os-aggregates/7/action", body: `{"remove_host": {"host": "cmp-dc1-r07-02"}}`, status: 200, reply: "remove-host.json"},
		)
		require.NoError(t, c.RemoveHostFromAggregate(context.Background(), rack7().Name, newHost))
	})
	t.Run("host not there: nothing sent", func(t *testing.T) {
		c := novaReplay(t, exchange{method: "GET", path: "/os-aggregates", status: 200, reply: "list-without-host.json"})
		require.NoError(t, c.RemoveHostFromAggregate(context.Background(), rack7().Name, newHost))
	})
	t.Run("aggregate gone: nothing sent", func(t *testing.T) {
		c := novaReplay(t, exchange{method: "GET", path: "/os-aggregates", status: 200, reply: "list-empty.json"})
		require.NoError(t, c.RemoveHostFromAggregate(context.Background(), rack7().Name, newHost))
	})
}
