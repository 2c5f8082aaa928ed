package httpx

import (
	"context"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// SerialParam is the :serial of the path, unescaped and checked.
func SerialParam(c echo.Context) (string, error) {
	serial, err := url.PathUnescape(c.Param("serial"))
	if err != nil {
		return "", Errorf(http.StatusBadRequest, "invalid serial in path")
	}
	if err := stepapi.ValidateSerial(serial); err != nil {
		return "", Errorf(http.StatusBadRequest, "%s", err)
	}
	return serial, nil
}

// Placements is the CMDB's check of where a server is to go.
type Placements interface {
	CheckPlacement(ctx context.Context, serial string, p inventory.Placement) error
}

// CheckPlacement answers 422 for a location the CMDB rejects (unknown site
// or rack, unit outside the rack) and 409 for a unit another server holds.
func CheckPlacement(ctx context.Context, inv Placements, serial string, loc serverapi.Location) error {
	err := inv.CheckPlacement(ctx, serial, inventory.Placement{
		Site: loc.Site, Room: loc.Room, Rack: loc.Rack, Unit: loc.Unit, Face: loc.Face, HeightU: 1,
	})
	if err != nil {
		return InventoryError(err)
	}
	return nil
}
