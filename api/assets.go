package api

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/inventory"
)

type assetResponse struct {
	inventory.Asset
	History []inventory.Change `json:"history"`
}

// getAsset answers with the CMDB record of a server and its history.
func (s *Server) getAsset(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	if err := s.checkTenant(c, serial); err != nil {
		return err
	}
	ctx := c.Request().Context()
	a, err := s.cfg.Inventory.GetAsset(ctx, serial)
	if err != nil {
		return httpx.InventoryError(err)
	}
	h, err := s.cfg.Inventory.History(ctx, serial)
	if err != nil {
		return err
	}
	if h == nil {
		h = []inventory.Change{}
	}
	return c.JSON(http.StatusOK, assetResponse{Asset: a, History: h})
}
