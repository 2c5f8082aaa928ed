package client_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/client"
	"github.com/metalflow/metalflow/inventory"
)

// realAPI serves the real API over a SQLite inventory (no Temporal: only
// routes that do not need it answer) and returns an admin token.
func realAPI(t *testing.T) (string, *inventory.Store, string) {
	t.Helper()
	ctx := context.Background()
	inv, err := inventory.Open(ctx, inventory.DialectSQLite, filepath.Join(t.TempDir(), "inv.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = inv.Close() })
	tokens := &auth.Tokens{Store: inv}
	s := api.New(api.Config{Inventory: inv, Tokens: tokens, Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	admin, _, err := tokens.Issue(ctx, auth.IssueInput{Name: "admin", Role: auth.Admin, By: "test"})
	require.NoError(t, err)
	return srv.URL, inv, admin
}

func newClient(t *testing.T, base, token string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{API: base, Token: token})
	require.NoError(t, err)
	return c
}

func TestClientAgainstRealAPI(t *testing.T) {
	ctx := context.Background()
	base, inv, admin := realAPI(t)
	require.NoError(t, inv.EnsureSite(ctx, inventory.Site{Name: "dc1"}))
	c := newClient(t, base+"/", admin)

	who, err := c.Whoami(ctx)
	require.NoError(t, err)
	require.Equal(t, "admin", who.Value.Role)
	require.Contains(t, string(who.Raw), `"role"`)

	created, err := c.CreateRack(ctx, client.Rack{Site: "dc1", Name: "R01", HeightU: 42})
	require.NoError(t, err)
	require.Equal(t, 42, created.Value.HeightU)
	racks, err := c.Racks(ctx)
	require.NoError(t, err)
	require.Len(t, racks.Value.Racks, 1)
	require.Equal(t, "R01", racks.Value.Racks[0].Name)
	rack, err := c.Rack(ctx, "dc1", "R01")
	require.NoError(t, err)
	require.Equal(t, 42, rack.Value.HeightU)
	require.Empty(t, rack.Value.Units)
	// A server placed in the CMDB shows in its unit.
	require.NoError(t, inv.PlaceAsset(ctx, "SN-7", inventory.Placement{Site: "dc1", Rack: "R01", Unit: 7, Face: "front", HeightU: 1}, "test"))
	rack, err = c.Rack(ctx, "dc1", "R01")
	require.NoError(t, err)
	require.Equal(t, []client.RackUnit{{Unit: 7, Serial: "SN-7"}}, rack.Value.Units)

	_, err = c.Rack(ctx, "dc1", "R99")
	require.Equal(t, http.StatusNotFound, client.StatusOf(err), "%v", err)
	// The same rack with another height contradicts the inventory.
	_, err = c.CreateRack(ctx, client.Rack{Site: "dc1", Name: "R01", HeightU: 40})
	require.Equal(t, http.StatusConflict, client.StatusOf(err), "%v", err)
	var apiErr *client.Error
	require.ErrorAs(t, err, &apiErr)
	require.NotEmpty(t, apiErr.Message)
	require.NotEqual(t, http.StatusText(http.StatusConflict), apiErr.Message, "the API's own message, not the status text")

	tok, err := c.CreateToken(ctx, client.NewToken{Name: "tech", Role: "technician"})
	require.NoError(t, err)
	require.NotEmpty(t, tok.Value.Token)
	require.Equal(t, "technician", tok.Value.Details.Role)
	list, err := c.Tokens(ctx)
	require.NoError(t, err)
	names := []string{}
	for _, tk := range list.Value.Tokens {
		names = append(names, tk.Name)
	}
	require.Contains(t, names, "tech")

	// A token of too low a role: 403 with the API's message.
	tech := newClient(t, base, tok.Value.Token)
	_, err = tech.Tokens(ctx)
	require.Equal(t, http.StatusForbidden, client.StatusOf(err), "%v", err)
	_, err = tech.CreateRack(ctx, client.Rack{Site: "dc1", Name: "R02", HeightU: 42})
	require.Equal(t, http.StatusForbidden, client.StatusOf(err), "%v", err)
	// No token or a wrong one: 401.
	_, err = newClient(t, base, "").Racks(ctx)
	require.Equal(t, http.StatusUnauthorized, client.StatusOf(err), "%v", err)
	_, err = newClient(t, base, "nope").Racks(ctx)
	require.Equal(t, http.StatusUnauthorized, client.StatusOf(err), "%v", err)
	// A bad value: the API's validation message.
	_, err = c.CreateToken(ctx, client.NewToken{Name: "x", Role: "emperor"})
	require.Equal(t, http.StatusUnprocessableEntity, client.StatusOf(err), "%v", err)
}

func TestClientErrorMapping(t *testing.T) {
	ctx := context.Background()
	mux := http.NewServeMux()
	mux.HandleFunc("/api/v1/whoami", func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("Authorization") {
		case "Bearer json":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusConflict)
			_, _ = w.Write([]byte(`{"error":"server SN-1 is not waiting for a decision"}`))
		case "Bearer html":
			w.WriteHeader(http.StatusBadGateway)
			_, _ = w.Write([]byte(`<html>bad gateway</html>`))
		case "Bearer garbage":
			_, _ = w.Write([]byte(`{not json`))
		default:
			w.WriteHeader(http.StatusTeapot)
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	_, err := newClient(t, srv.URL, "json").Whoami(ctx)
	require.EqualError(t, err, "server SN-1 is not waiting for a decision (HTTP 409)")
	require.Equal(t, 409, client.StatusOf(err))

	_, err = newClient(t, srv.URL, "html").Whoami(ctx)
	require.EqualError(t, err, "Bad Gateway (HTTP 502)")

	_, err = newClient(t, srv.URL, "garbage").Whoami(ctx)
	require.ErrorContains(t, err, "decode answer")
	require.Equal(t, 0, client.StatusOf(err))

	_, err = newClient(t, srv.URL, "").Whoami(ctx)
	require.Equal(t, http.StatusTeapot, client.StatusOf(err))

	// Nothing listening: a transport error, not an API status.
	dead := httptest.NewServer(mux)
	dead.Close()
	_, err = newClient(t, dead.URL, "x").Whoami(ctx)
	require.Error(t, err)
	require.Equal(t, 0, client.StatusOf(err))
}

func TestClientRefusesBadAddresses(t *testing.T) {
	for _, a := range []string{"", "localhost:8080", "ftp://x", "http://"} {
		_, err := client.New(client.Config{API: a})
		require.Error(t, err, a)
	}
}
