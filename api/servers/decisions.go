package servers

import (
	"context"
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
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.UpdateTimeout)
	defer cancel()
	if in.BMC, err = req.Ref(ctx, h.Credentials, serial); err != nil {
		return err
	}
	return httpx.SendUpdate(c, ctx, h.Temporal, httpx.LifecycleRef(serial), stepapi.UpdateRetry, in, &stepapi.DecisionResult{})
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
	abort, err := httpx.ReadAbort(c)
	if err != nil {
		return err
	}
	return httpx.Update(c, h.Temporal, httpx.LifecycleRef(serial), stepapi.UpdateAbort, abort, &stepapi.DecisionResult{})
}
