package servers

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/inventory"
)

// checkTenant lets a project-bound caller see a server only when the server
// was assigned to that project. Another project's server is answered as
// absent (404), not forbidden: a tenant must not learn which serials exist.
func (h *handlers) checkTenant(c echo.Context, serial string) error {
	p := httpx.Caller(c)
	if !p.Tenant() {
		return nil
	}
	a, err := h.Inventory.GetAsset(c.Request().Context(), serial)
	if errors.Is(err, inventory.ErrNotFound) || (err == nil && a.Tenant != p.Project) {
		return httpx.Errorf(http.StatusNotFound, "no server %s", serial)
	}
	return err
}

// listTenantServers answers a project-bound caller from the CMDB: a tenant
// sees the servers handed to its project, in the state the lifecycle
// recorded, and nothing of the fleet's work in progress.
func (h *handlers) listTenantServers(c echo.Context) error {
	for _, param := range []string{"state", "rack", "pageToken"} {
		if c.QueryParam(param) != "" {
			return httpx.Errorf(http.StatusBadRequest, "%s is not available to a project token", param)
		}
	}
	assets, err := h.Inventory.TenantAssets(c.Request().Context(), httpx.Caller(c).Project)
	if err != nil {
		return err
	}
	out := serverList{Servers: make([]serverSummary, 0, len(assets))}
	for _, a := range assets {
		sum := serverSummary{Serial: a.Serial, State: a.State, StartedAt: a.CreatedAt}
		if a.Placement != nil {
			sum.Rack = a.Placement.Rack
		}
		out.Servers = append(out.Servers, sum)
	}
	return c.JSON(http.StatusOK, out)
}
