package access

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
)

func newAccessAPI(t *testing.T) (http.Handler, *inventory.Store) {
	t.Helper()
	inv := apitest.Inventory(t)
	e := apitest.Echo()
	New(Config{Tokens: &auth.Tokens{Store: inv}, Store: inv, Logger: slog.New(slog.DiscardHandler)}).Register(e.Group("/api/v1"))
	return e, inv
}

func TestTokensAreManagedByAdmins(t *testing.T) {
	h, inv := newAccessAPI(t)
	admin := apitest.WithToken(h, apitest.Token(t, inv, auth.Admin, ""))

	x := apitest.Call(t, admin, "POST", "/api/v1/tokens", apitest.JSON, `{"name":"bob","role":"technician"}`)
	require.Equal(t, http.StatusCreated, x.Status, string(x.Body))
	var created createTokenResponse
	require.NoError(t, json.Unmarshal(x.Body, &created))
	require.Equal(t, "technician", created.Details.Role)
	require.Equal(t, "bob", created.Details.User)

	// The new token works and says who it is.
	bob := apitest.WithToken(h, created.Token)
	x = apitest.Call(t, bob, "GET", "/api/v1/whoami", "", "")
	require.Equal(t, http.StatusOK, x.Status)
	require.JSONEq(t, `{"user":"bob","role":"technician","tokenId":"`+created.Details.ID+`"}`, string(x.Body))

	// Listing never shows a secret or a hash.
	x = apitest.Call(t, admin, "GET", "/api/v1/tokens", "", "")
	require.Equal(t, http.StatusOK, x.Status)
	require.NotContains(t, string(x.Body), created.Token)
	require.NotContains(t, string(x.Body), "hash")

	for _, body := range []string{`{"name":"x","role":"root"}`, `{"name":"","role":"viewer"}`, `{"name":"t","role":"operator","project":"acme"}`} {
		x = apitest.Call(t, admin, "POST", "/api/v1/tokens", apitest.JSON, body)
		require.Equal(t, http.StatusUnprocessableEntity, x.Status, body)
	}
	x = apitest.Call(t, admin, "POST", "/api/v1/tokens", apitest.JSON, `{"name":"x","role":"viewer","scope":"all"}`)
	require.Equal(t, http.StatusBadRequest, x.Status)
	list, err := inv.ListTokens(context.Background())
	require.NoError(t, err)
	require.Len(t, list, 2, "refused requests stored nothing")

	x = apitest.Call(t, admin, "DELETE", "/api/v1/tokens/"+created.Details.ID, "", "")
	require.Equal(t, http.StatusNoContent, x.Status)
	x = apitest.Call(t, bob, "GET", "/api/v1/whoami", "", "")
	require.Equal(t, http.StatusUnauthorized, x.Status, "a revoked token still works")
	x = apitest.Call(t, admin, "DELETE", "/api/v1/tokens/nosuch", "", "")
	require.Equal(t, http.StatusNotFound, x.Status)

	x = apitest.Call(t, admin, "GET", "/api/v1/audit", "", "")
	require.Equal(t, http.StatusOK, x.Status)
	var audit auditList
	require.NoError(t, json.Unmarshal(x.Body, &audit))
	require.GreaterOrEqual(t, len(audit.Entries), 5)
	require.Equal(t, "DELETE", audit.Entries[0].Method)
	require.Equal(t, "test-admin", audit.Entries[0].User)
}
