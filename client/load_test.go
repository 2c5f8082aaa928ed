package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/client"
)

// countingTransport counts the requests it carries.
type countingTransport struct{ n atomic.Int64 }

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	c.n.Add(1)
	return http.DefaultTransport.RoundTrip(r)
}

// What a load generator needs of the client: its own transport, the
// liveness check, a page size, and decisions it retries itself.
func TestClientForLoad(t *testing.T) {
	ctx := context.Background()
	base, _, admin := realAPI(t)
	tr := &countingTransport{}
	c, err := client.New(client.Config{API: base, Token: admin, Transport: tr})
	require.NoError(t, err)
	require.NoError(t, c.Health(ctx))
	require.EqualValues(t, 1, tr.n.Load(), "the call went through the given transport")

	var query string
	lists := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		query = r.URL.RawQuery
		_, _ = w.Write([]byte(`{"servers":[{"serial":"SN-1","state":"waiting_rack"}],"nextPageToken":"p2"}`))
	}))
	t.Cleanup(lists.Close)
	c = newClient(t, lists.URL, "tok")
	page, err := c.ListServers(ctx, client.ServerFilter{State: "waiting_rack", PageSize: 500}, "p1")
	require.NoError(t, err)
	require.Equal(t, "pageSize=500&pageToken=p1&state=waiting_rack", query)
	require.Equal(t, "p2", page.Value.NextPageToken)
	_, err = c.ListServers(ctx, client.ServerFilter{}, "")
	require.NoError(t, err)
	require.Empty(t, query, "no page size: the API's default")

	rec := &keyRecorder{statuses: []int{http.StatusServiceUnavailable, http.StatusOK}}
	decisions := httptest.NewServer(rec)
	t.Cleanup(decisions.Close)
	once, err := client.New(client.Config{API: decisions.URL, Token: "tok", DecideAttempts: 1})
	require.NoError(t, err)
	_, err = once.Racked(ctx, "SN-1", client.Location{Site: "dc1", Rack: "R01", Unit: 1, Face: "front"})
	require.Equal(t, http.StatusServiceUnavailable, client.StatusOf(err))
	require.Len(t, rec.keys, 1, "one attempt: the 503 is the caller's to retry")

	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	t.Cleanup(down.Close)
	require.Equal(t, http.StatusServiceUnavailable, client.StatusOf(newClient(t, down.URL, "").Health(ctx)))
}
