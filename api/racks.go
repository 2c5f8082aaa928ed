package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows"
)

type rackResponse struct {
	inventory.Rack
	Units []inventory.UnitOccupant `json:"units"`
}

func (s *Server) createRack(c echo.Context) error {
	var r inventory.Rack
	if err := httpx.DecodeJSON(c, &r); err != nil {
		return err
	}
	// Rack names share the rules of locations: they end up in them.
	if err := workflows.ValidateLocation(workflows.Location{Site: r.Site, Room: r.Room, Rack: r.Name, Unit: 1, Face: workflows.FaceFront}); err != nil {
		return httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	if err := s.cfg.Inventory.CreateRack(c.Request().Context(), r); err != nil {
		return httpx.InventoryError(err)
	}
	return c.JSON(http.StatusCreated, r)
}

func (s *Server) listRacks(c echo.Context) error {
	racks, err := s.cfg.Inventory.ListRacks(c.Request().Context(), c.QueryParam("site"))
	if err != nil {
		return err
	}
	if racks == nil {
		racks = []inventory.Rack{}
	}
	return c.JSON(http.StatusOK, map[string]any{"racks": racks})
}

func (s *Server) getRack(c echo.Context) error {
	ctx := c.Request().Context()
	r, err := s.cfg.Inventory.GetRack(ctx, c.Param("site"), c.Param("rack"))
	if err != nil {
		return httpx.InventoryError(err)
	}
	units, err := s.cfg.Inventory.Occupancy(ctx, r.Site, r.Name)
	if err != nil {
		return httpx.InventoryError(err)
	}
	if units == nil {
		units = []inventory.UnitOccupant{}
	}
	return c.JSON(http.StatusOK, rackResponse{Rack: r, Units: units})
}
