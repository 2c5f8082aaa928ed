// Package racks is the API of racks: the racks the CMDB knows and what
// they hold, and rack batches, a rack's worth of racked servers to
// provision together.
package racks

import (
	"context"
	"net/http"

	"github.com/labstack/echo/v4"

	"go.temporal.io/sdk/client"

	"github.com/metalflow/metalflow/api/access"
	"github.com/metalflow/metalflow/api/internal/bmc"
	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// Inventory is what the rack routes read and write of the CMDB.
type Inventory interface {
	httpx.Placements
	CreateRack(ctx context.Context, r inventory.Rack) error
	ListRacks(ctx context.Context, site string) ([]inventory.Rack, error)
	GetRack(ctx context.Context, site, name string) (inventory.Rack, error)
	Occupancy(ctx context.Context, site, rack string) ([]inventory.UnitOccupant, error)
}

// Deps is what the rack routes use.
type Deps struct {
	Temporal  client.Client
	Inventory Inventory
	// Credentials seals the BMC passwords of a batch.
	Credentials bmc.Sealer
	// BMCAddresses holds a batch's BMCs to its site's BMC networks.
	BMCAddresses bmc.Addresses
	// Profiles are the known hardware profiles, for input checks.
	Profiles *profiles.Catalog
	UI       httpx.TemporalUI
}

type handlers struct {
	Deps
}

// Register mounts the rack and rack batch routes.
func Register(v1 *echo.Group, guard *access.Guard, d Deps) {
	h := &handlers{Deps: d}
	viewer, operator := guard.Allow(auth.Viewer), guard.Allow(auth.Operator)
	v1.POST("/racks", h.createRack, operator)
	v1.GET("/racks", h.listRacks, viewer)
	v1.GET("/racks/:site/:rack", h.getRack, viewer)
	v1.POST("/racks/:site/:rack/servers", h.createRackBatch, operator)
	v1.GET("/racks/:site/:rack/batches/:batch", h.getRackBatch, viewer)
}

type rackResponse struct {
	inventory.Rack
	Units []inventory.UnitOccupant `json:"units"`
}

func (h *handlers) createRack(c echo.Context) error {
	var r inventory.Rack
	if err := httpx.DecodeJSON(c, &r); err != nil {
		return err
	}
	// Rack names share the rules of locations: they end up in them.
	if err := serverapi.ValidateLocation(serverapi.Location{Site: r.Site, Room: r.Room, Rack: r.Name, Unit: 1, Face: serverapi.FaceFront}); err != nil {
		return httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	if err := h.Inventory.CreateRack(c.Request().Context(), r); err != nil {
		return httpx.InventoryError(err)
	}
	return c.JSON(http.StatusCreated, r)
}

func (h *handlers) listRacks(c echo.Context) error {
	racks, err := h.Inventory.ListRacks(c.Request().Context(), c.QueryParam("site"))
	if err != nil {
		return err
	}
	if racks == nil {
		racks = []inventory.Rack{}
	}
	return c.JSON(http.StatusOK, map[string]any{"racks": racks})
}

func (h *handlers) getRack(c echo.Context) error {
	ctx := c.Request().Context()
	r, err := h.Inventory.GetRack(ctx, c.Param("site"), c.Param("rack"))
	if err != nil {
		return httpx.InventoryError(err)
	}
	units, err := h.Inventory.Occupancy(ctx, r.Site, r.Name)
	if err != nil {
		return httpx.InventoryError(err)
	}
	if units == nil {
		units = []inventory.UnitOccupant{}
	}
	return c.JSON(http.StatusOK, rackResponse{Rack: r, Units: units})
}
