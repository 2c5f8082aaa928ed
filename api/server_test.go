package api

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/auth"
)

func TestAPIRateLimitPerClient(t *testing.T) {
	s, inv := newAuthAPI(t)
	s2 := New(Config{Inventory: inv, Tokens: s.cfg.Tokens, Registry: prometheus.NewRegistry(), Logger: s.cfg.Logger, RateLimit: 5})
	h := apitest.WithToken(s2.Handler(), apitest.Token(t, inv, auth.Viewer, ""))
	codes := map[int]int{}
	for range 30 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/whoami", nil))
		codes[rec.Code]++
	}
	require.Positive(t, codes[http.StatusOK])
	require.Positive(t, codes[http.StatusTooManyRequests], "%v", codes)
	// Health and the boot service stay answerable whatever a client does.
	rec := httptest.NewRecorder()
	s2.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	for range 30 {
		rec = httptest.NewRecorder()
		s2.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/boot/files/vmlinuz", nil))
		require.NotEqual(t, http.StatusTooManyRequests, rec.Code, "an installer was rate limited")
	}
}
