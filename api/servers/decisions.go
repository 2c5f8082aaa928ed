package servers

import (
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/api/internal/bmc"
	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

func (h *handlers) retry(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	var req bmc.RetryRequest
	if err := httpx.DecodeOptionalJSON(c, &req); err != nil {
		return err
	}
	if req.Profile != "" && !h.Profiles.Has(req.Profile) {
		return httpx.Errorf(http.StatusUnprocessableEntity, "unknown hardware profile %q", req.Profile)
	}
	in := serverapi.RetryInput{Profile: req.Profile, By: httpx.Actor(c)}
	return req.Send(c, h.Temporal, h.Credentials, h.BMCAddresses, httpx.LifecycleRef(serial), serial, in)
}

func (h *handlers) skip(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	if err := httpx.ReadNoBody(c); err != nil {
		return err
	}
	return httpx.Update(c, h.Temporal, httpx.LifecycleRef(serial), stepapi.UpdateSkip, serverapi.SkipInput{By: httpx.Actor(c)}, &stepapi.DecisionResult{})
}

func (h *handlers) abort(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	return httpx.Abort(c, h.Temporal, httpx.LifecycleRef(serial))
}
