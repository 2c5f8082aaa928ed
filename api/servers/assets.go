package servers

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
func (h *handlers) getAsset(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	if err := h.checkTenant(c, serial); err != nil {
		return err
	}
	ctx := c.Request().Context()
	a, err := h.Inventory.GetAsset(ctx, serial)
	if err != nil {
		return httpx.InventoryError(err)
	}
	history, err := h.Inventory.History(ctx, serial)
	if err != nil {
		return err
	}
	if history == nil {
		history = []inventory.Change{}
	}
	return c.JSON(http.StatusOK, assetResponse{Asset: a, History: history})
}
