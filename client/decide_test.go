package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/client"
)

// keyRecorder answers with the statuses it is given in turn and records
// each request's Idempotency-Key.
type keyRecorder struct {
	mu       sync.Mutex
	statuses []int
	keys     []string
}

func (k *keyRecorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.keys = append(k.keys, r.Header.Get("Idempotency-Key"))
	status := k.statuses[0]
	if len(k.statuses) > 1 {
		k.statuses = k.statuses[1:]
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	if status == http.StatusOK {
		_, _ = w.Write([]byte(`{"state":"provisioning"}`))
		return
	}
	_, _ = w.Write([]byte(`{"error":"temporal did not confirm racked; it may still take effect"}`))
}

// A decision answered 503 is sent again under the same key, so the API can
// answer the first one's outcome; other refusals are final, and each
// decision has its own key.
func TestDecisionsRepeatA503UnderOneKey(t *testing.T) {
	ctx := context.Background()
	rec := &keyRecorder{statuses: []int{http.StatusServiceUnavailable, http.StatusOK}}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, "tok")

	_, err := c.Racked(ctx, "SN-1", client.Location{Site: "dc1", Rack: "R01", Unit: 3, Face: "front"})
	require.NoError(t, err)
	require.Len(t, rec.keys, 2)
	require.NotEmpty(t, rec.keys[0])
	require.Equal(t, rec.keys[0], rec.keys[1], "the repeat carries the first attempt's key")

	rec.statuses, rec.keys = []int{http.StatusConflict}, nil
	_, err = c.Retry(ctx, "SN-1")
	require.Equal(t, http.StatusConflict, client.StatusOf(err))
	require.Len(t, rec.keys, 1, "a refusal is not repeated")

	rec.statuses, rec.keys = []int{http.StatusOK}, nil
	_, err = c.Skip(ctx, "SN-1")
	require.NoError(t, err)
	_, err = c.Skip(ctx, "SN-1")
	require.NoError(t, err)
	require.NotEqual(t, rec.keys[0], rec.keys[1], "two decisions, two keys")

	rec.statuses, rec.keys = []int{http.StatusServiceUnavailable}, nil
	_, err = c.ApproveVIP(ctx, "web")
	require.Equal(t, http.StatusServiceUnavailable, client.StatusOf(err))
	require.Len(t, rec.keys, 3, "gives up after three attempts")

	rec.statuses, rec.keys = []int{http.StatusOK}, nil
	_, err = c.Server(ctx, "SN-1")
	require.NoError(t, err)
	require.Equal(t, []string{""}, rec.keys, "reads carry no key")
}
