package api

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/workflows"
)

func TestValidateIdempotencyKey(t *testing.T) {
	for _, k := range []string{"a", "0f8fad5b-d9cb-469f-a165-70867728950e", "rack:dc1.R05_7", strings.Repeat("k", maxIdempotencyKey)} {
		require.NoError(t, validateIdempotencyKey(k), k)
	}
	for _, k := range []string{"has space", "slash/inside", "ünïcode", "quote\"", strings.Repeat("k", maxIdempotencyKey+1)} {
		require.Error(t, validateIdempotencyKey(k), k)
	}
}

// A bad key is refused before the handler runs: this API has no Temporal,
// so anything that got further would fail differently.
func TestBadIdempotencyKeyChangesNothing(t *testing.T) {
	h, inv := newContractServer(t)
	req := httptest.NewRequest(http.MethodPost, "/api/v1/servers/SN-1/racked",
		strings.NewReader(`{"site":"dc1","rack":"R01","unit":3,"face":"front"}`))
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	req.Header.Set(idempotencyKeyHeader, "two words")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "Idempotency-Key header may hold only")
	occupied, err := inv.Occupancy(t.Context(), "dc1", "R01")
	require.NoError(t, err)
	require.Empty(t, occupied, "a refused request claimed a unit")
}

func TestUpdateIDFollowsKeyAndArguments(t *testing.T) {
	withKey := func(k string) echo.Context {
		c := echo.New().NewContext(httptest.NewRequest(http.MethodPost, "/", nil), httptest.NewRecorder())
		if k != "" {
			c.Set(idempotencyKeyContext, k)
		}
		return c
	}
	in := workflows.RackedInput{Location: workflows.Location{Site: "dc1", Rack: "R01", Unit: 3, Face: "front"}}
	other := in
	other.Location.Unit = 4
	id := func(c echo.Context, update string, arg any) string {
		s, err := updateID(c, update, arg)
		require.NoError(t, err)
		return s
	}
	a := id(withKey("k1"), workflows.UpdateRacked, in)
	require.Equal(t, a, id(withKey("k1"), workflows.UpdateRacked, in), "a repeat joins the first update")
	require.NotEqual(t, a, id(withKey("k1"), workflows.UpdateRacked, other), "another body is another request")
	require.NotEqual(t, a, id(withKey("k2"), workflows.UpdateRacked, in))
	require.NotEqual(t, a, id(withKey("k1"), workflows.UpdateSkip, in))
	require.NotEqual(t, id(withKey(""), workflows.UpdateRacked, in), id(withKey(""), workflows.UpdateRacked, in), "without a key every request is its own")
}
