package httpx

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/stretchr/testify/require"
)

func TestValidateIdempotencyKey(t *testing.T) {
	for _, k := range []string{"a", "0f8fad5b-d9cb-469f-a165-70867728950e", "rack:dc1.R05_7", strings.Repeat("k", maxIdempotencyKey)} {
		require.NoError(t, validateIdempotencyKey(k), k)
	}
	for _, k := range []string{"has space", "slash/inside", "ünïcode", "quote\"", strings.Repeat("k", maxIdempotencyKey+1)} {
		require.Error(t, validateIdempotencyKey(k), k)
	}
}

func TestUpdateIDFollowsKeyAndArguments(t *testing.T) {
	withKey := func(k string) echo.Context {
		c := echo.New().NewContext(httptest.NewRequest(http.MethodPost, "/", nil), httptest.NewRecorder())
		if k != "" {
			c.Set(idempotencyKeyContext, k)
		}
		return c
	}
	in := serverapi.RackedInput{Location: serverapi.Location{Site: "dc1", Rack: "R01", Unit: 3, Face: "front"}}
	other := in
	other.Location.Unit = 4
	id := func(c echo.Context, update string, arg any) string {
		s, err := updateID(c, update, arg)
		require.NoError(t, err)
		return s
	}
	a := id(withKey("k1"), serverapi.UpdateRacked, in)
	require.Equal(t, a, id(withKey("k1"), serverapi.UpdateRacked, in), "a repeat joins the first update")
	require.NotEqual(t, a, id(withKey("k1"), serverapi.UpdateRacked, other), "another body is another request")
	require.NotEqual(t, a, id(withKey("k2"), serverapi.UpdateRacked, in))
	require.NotEqual(t, a, id(withKey("k1"), stepapi.UpdateSkip, in))
	require.NotEqual(t, id(withKey(""), serverapi.UpdateRacked, in), id(withKey(""), serverapi.UpdateRacked, in), "without a key every request is its own")
}
