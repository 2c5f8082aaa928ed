package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
)

// openRoutes answer without an API token: machines that cannot hold one
// (the installer, the deploy agent, Prometheus), the contract, and the
// operator page's assets.
func openRoutes() map[string]bool {
	return map[string]bool{
		"GET /healthz": true, "GET /readyz": true, "GET /metrics": true,
		"GET /api/v1/openapi.json": true, "POST /api/v1/boot/phone-home": true,
		"GET /boot/ipxe": true, "GET /boot/nocloud/:serial/:attempt/meta-data": true,
		"GET /boot/nocloud/:serial/:attempt/user-data": true, "GET /boot/nocloud/:serial/:attempt/vendor-data": true,
		"GET /boot/files/:name": true, "GET /boot/images/:name": true, "HEAD /boot/images/:name": true, "GET /*": true,
		"POST /api/v1/session": true, "DELETE /api/v1/session": true,
		// The deploy agent holds its install attempt's token, not an API
		// token; package boot's tests hold it to that.
		"GET /boot/agent/vmlinuz": true, "GET /boot/agent/initrd.img": true, "GET /boot/agent/plan": true,
		"POST /boot/agent/inventory": true, "POST /boot/agent/progress": true, "POST /boot/agent/result": true,
	}
}

// minimumRole is the least role each protected route needs; a route added
// without an entry here fails TestEveryRouteRefusesMissingAndLowTokens.
func minimumRole() map[string]auth.Role {
	return map[string]auth.Role{
		"GET /api/v1/info": auth.Viewer, "GET /api/v1/whoami": auth.Viewer,
		"GET /api/v1/servers": auth.Viewer, "GET /api/v1/servers/:serial": auth.Viewer,
		"GET /api/v1/servers/:serial/asset": auth.Viewer, "GET /api/v1/servers/:serial/decommission": auth.Viewer,
		"GET /api/v1/racks": auth.Viewer, "GET /api/v1/racks/:site/:rack": auth.Viewer,
		"GET /api/v1/racks/:site/:rack/batches/:batch": auth.Viewer, "GET /api/v1/sd/targets": auth.Viewer,
		"POST /api/v1/servers/:serial/racked": auth.Technician, "POST /api/v1/servers/:serial/retry": auth.Technician,
		"POST /api/v1/servers/:serial/unracked": auth.Technician, "POST /api/v1/servers/:serial/decommission/retry": auth.Technician,
		"POST /api/v1/servers": auth.Operator, "POST /api/v1/servers/:serial/skip": auth.Operator,
		"POST /api/v1/servers/:serial/abort": auth.Operator, "DELETE /api/v1/servers/:serial": auth.Operator,
		"POST /api/v1/servers/:serial/decommission/abort": auth.Operator, "POST /api/v1/racks": auth.Operator,
		"POST /api/v1/racks/:site/:rack/servers": auth.Operator,
		"POST /api/v1/tokens":                    auth.Admin, "GET /api/v1/tokens": auth.Admin, "DELETE /api/v1/tokens/:id": auth.Admin,
		"GET /api/v1/audit": auth.Admin,
		"POST /api/v1/vips": auth.Operator, "GET /api/v1/vips": auth.Viewer, "GET /api/v1/vips/:name": auth.Viewer,
		"POST /api/v1/vips/:name/approve": auth.Approver, "POST /api/v1/vips/:name/reject": auth.Approver,
		"POST /api/v1/vips/:name/backends": auth.Operator, "POST /api/v1/vips/:name/retry": auth.Operator,
		"POST /api/v1/vips/:name/abort": auth.Operator, "DELETE /api/v1/vips/:name": auth.Operator,
		"POST /api/v1/images": auth.Operator, "GET /api/v1/images": auth.Viewer, "GET /api/v1/images/:name": auth.Viewer,
		"DELETE /api/v1/images/:name": auth.Operator,
	}
}

// below is a role that may not do what need allows, or "" if none is.
func below(need auth.Role) auth.Role {
	switch need {
	case auth.Technician:
		return auth.Viewer
	case auth.Operator:
		return auth.Technician
	case auth.Admin, auth.Approver:
		return auth.Operator
	}
	return ""
}

func newAuthAPI(t *testing.T) (*Server, *inventory.Store) {
	t.Helper()
	inv := apitest.Inventory(t)
	return New(Config{
		Inventory: inv, Tokens: &auth.Tokens{Store: inv},
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
	}), inv
}

// concrete fills a route's parameters so it can be requested.
func concrete(path string) string {
	r := strings.NewReplacer(":serial", "SN-1", ":site", "dc1", ":rack", "R01", ":batch", "b1", ":id", "abc", ":name", "x",
		":attempt", "1", "*", "x")
	return r.Replace(path)
}

// TestEveryRouteRefusesMissingAndLowTokens walks every registered route: a
// protected one answers 401 without a token, 401 with a bad one, and 403
// with a token one step too low; none reaches its handler (no collaborator
// is configured, so a handler would answer 500).
func TestEveryRouteRefusesMissingAndLowTokens(t *testing.T) {
	s, inv := newAuthAPI(t)
	open, need := openRoutes(), minimumRole()
	tokens := map[auth.Role]string{}
	for _, r := range auth.Roles() {
		tokens[r] = apitest.Token(t, inv, r, "")
	}
	seen := map[string]bool{}
	for _, rt := range s.echo.Routes() {
		key := rt.Method + " " + rt.Path
		if rt.Path == "/api/v1/*" || seen[key] {
			continue
		}
		seen[key] = true
		if open[key] {
			continue
		}
		role, ok := need[key]
		require.True(t, ok, "route %s has no declared role: add it to minimumRole (or openRoutes)", key)
		target := concrete(rt.Path)
		for name, header := range map[string]string{"no token": "", "bad token": "Bearer mft_000000000000_00", "basic": "Basic dTpw"} {
			req := httptest.NewRequest(rt.Method, target, nil)
			if header != "" {
				req.Header.Set("Authorization", header)
			}
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			require.Equal(t, http.StatusUnauthorized, rec.Code, "%s with %s: %s", key, name, rec.Body)
			require.Contains(t, rec.Body.String(), `"error"`)
		}
		if low := below(role); low != "" {
			req := httptest.NewRequest(rt.Method, target, nil)
			req.Header.Set("Authorization", "Bearer "+tokens[low])
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			require.Equal(t, http.StatusForbidden, rec.Code, "%s with a %s token: %s", key, low, rec.Body)
		}
		// A project token reaches only the tenant's own read routes.
		if rt.Method != http.MethodGet || !tenantRoute(key) {
			req := httptest.NewRequest(rt.Method, target, nil)
			req.Header.Set("Authorization", "Bearer "+apitest.Token(t, inv, auth.Viewer, "acme"))
			rec := httptest.NewRecorder()
			s.Handler().ServeHTTP(rec, req)
			require.Equal(t, http.StatusForbidden, rec.Code, "%s with a project token: %s", key, rec.Body)
		}
	}
	for key := range need {
		require.True(t, seen[key], "minimumRole lists %s, which no route serves", key)
	}
	// Refusals of mutating calls are audited too.
	log, err := inv.AuditLog(context.Background(), 1000)
	require.NoError(t, err)
	require.NotEmpty(t, log)
	var refused403 bool
	for _, e := range log {
		require.NotEqual(t, "GET", e.Method, "reads are not audited")
		if e.Status == http.StatusForbidden && e.User != "-" {
			refused403 = true
		}
	}
	require.True(t, refused403, "a 403 with a known user must be in the audit log")
}

func tenantRoute(key string) bool {
	switch key {
	case "GET /api/v1/info", "GET /api/v1/whoami", "GET /api/v1/servers", "GET /api/v1/servers/:serial", "GET /api/v1/servers/:serial/asset":
		return true
	}
	return false
}

// TestProjectTokenSeesOnlyItsServers: a tenant lists and reads the servers
// handed to its project; another project's server is "not found".
func TestProjectTokenSeesOnlyItsServers(t *testing.T) {
	s, inv := newAuthAPI(t)
	ctx := context.Background()
	for serial, tenant := range map[string]string{"SN-A1": "acme", "SN-A2": "acme", "SN-G1": "globex", "SN-FREE": ""} {
		_, err := inv.RegisterAsset(ctx, inventory.AssetRecord{Serial: serial, State: "ready", Tenant: tenant}, "test")
		require.NoError(t, err)
	}
	acme := apitest.WithToken(s.Handler(), apitest.Token(t, inv, auth.Viewer, "acme"))
	x := apitest.Call(t, acme, "GET", "/api/v1/servers", "", "")
	require.Equal(t, http.StatusOK, x.Status, string(x.Body))
	var list struct {
		Servers []struct {
			Serial string `json:"serial"`
			State  string `json:"state"`
		} `json:"servers"`
	}
	require.NoError(t, json.Unmarshal(x.Body, &list))
	var serials []string
	for _, srv := range list.Servers {
		serials = append(serials, srv.Serial)
		require.Equal(t, "ready", srv.State)
	}
	require.Equal(t, []string{"SN-A1", "SN-A2"}, serials)

	x = apitest.Call(t, acme, "GET", "/api/v1/servers/SN-A1/asset", "", "")
	require.Equal(t, http.StatusOK, x.Status, string(x.Body))
	for _, serial := range []string{"SN-G1", "SN-FREE", "SN-NONE"} {
		for _, path := range []string{"/api/v1/servers/" + serial, "/api/v1/servers/" + serial + "/asset"} {
			x = apitest.Call(t, acme, "GET", path, "", "")
			require.Equal(t, http.StatusNotFound, x.Status, path)
			require.Contains(t, string(x.Body), "no server "+serial)
		}
	}
	x = apitest.Call(t, acme, "GET", "/api/v1/servers?state=ready", "", "")
	require.Equal(t, http.StatusBadRequest, x.Status)
	x = apitest.Call(t, acme, "GET", "/api/v1/racks", "", "")
	require.Equal(t, http.StatusForbidden, x.Status)
}
