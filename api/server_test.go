package api

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
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

// A registration's SSH keys and user-data reach the lifecycle as given,
// once they passed the profile's rules.
func TestCreateServerPassesKeysAndUserData(t *testing.T) {
	inv := apitest.Inventory(t)
	cat, err := profiles.NewCatalog()
	require.NoError(t, err)
	tc := &refusingTemporal{}
	s := New(Config{Temporal: tc, Inventory: inv, Profiles: cat, Tokens: &auth.Tokens{Store: inv},
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler), Namespace: "default"})
	h := apitest.WithToken(s.Handler(), apitest.Token(t, inv, auth.Operator, ""))
	userData := "#cloud-config\npackages: [htop]\n"
	body, err := json.Marshal(map[string]any{"serial": "SN-7", "sshAuthorizedKeys": []string{sshKey}, "userData": userData})
	require.NoError(t, err)
	x := apitest.Call(t, h, http.MethodPost, "/api/v1/servers", apitest.JSON, string(body))
	require.Equal(t, http.StatusServiceUnavailable, x.Status, "the refusing Temporal: %s", x.Body)
	var started []serverapi.ServerLifecycleInput
	for _, c := range tc.take() {
		if c.method == "start" {
			started = append(started, c.args[0].(serverapi.ServerLifecycleInput))
		}
	}
	require.Len(t, started, 1)
	require.Equal(t, []string{sshKey}, started[0].SSHAuthorizedKeys)
	require.Equal(t, userData, started[0].UserData)
}
