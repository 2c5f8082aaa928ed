package servers

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/access"
	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
)

// A bad key is refused before the handler runs: this API has no Temporal,
// so anything that got further would fail differently.
func TestBadIdempotencyKeyChangesNothing(t *testing.T) {
	h, inv := newServersAPI(t)
	req := httptest.NewRequest(http.MethodPost, "/api/v1/servers/SN-1/racked",
		strings.NewReader(`{"site":"dc1","rack":"R01","unit":3,"face":"front"}`))
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	req.Header.Set(httpx.IdempotencyKeyHeader, "two words")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "Idempotency-Key header may hold only")
	occupied, err := inv.Occupancy(t.Context(), "dc1", "R01")
	require.NoError(t, err)
	require.Empty(t, occupied, "a refused request claimed a unit")
}

// newServersAPI is the server routes on the dev racks, called as an admin,
// without Temporal: what is checked must be answered before a workflow is.
func newServersAPI(t *testing.T) (http.Handler, *inventory.Store) {
	t.Helper()
	inv := apitest.Inventory(t)
	require.NoError(t, inv.ApplyLayout(t.Context(), inventory.DevLayout()))
	e := apitest.Echo()
	guard := access.New(access.Config{Tokens: &auth.Tokens{Store: inv}, Store: inv, Logger: slog.New(slog.DiscardHandler)})
	Register(e.Group("/api/v1"), guard, Deps{Inventory: inv})
	return apitest.WithToken(e, apitest.Token(t, inv, auth.Admin, "")), inv
}
