// Package decommission is the API of a server's way out: the Decommission
// workflow that takes an installed server back (wipe, power off, out of
// its pools and the CMDB) until a technician reports it unracked.
package decommission

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/metalflow/metalflow/api/access"
	"github.com/metalflow/metalflow/api/internal/bmc"
	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/server/serverattrs"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// Deps is what the decommission routes use.
type Deps struct {
	Temporal client.Client
	// Credentials seals a corrected BMC credential given with a retry.
	Credentials bmc.Sealer
	// BMCAddresses checks a corrected BMC address given with a retry.
	BMCAddresses bmc.Addresses
	UI           httpx.TemporalUI
}

type handlers struct {
	Deps
}

// Register mounts the decommission routes, which sit under the server's.
func Register(v1 *echo.Group, guard *access.Guard, d Deps) {
	h := &handlers{Deps: d}
	viewer, technician, operator := guard.Allow(auth.Viewer), guard.Allow(auth.Technician), guard.Allow(auth.Operator)
	v1.DELETE("/servers/:serial", h.decommission, operator)
	v1.GET("/servers/:serial/decommission", h.getDecommission, viewer)
	v1.POST("/servers/:serial/decommission/retry", h.decommissionRetry, technician, httpx.IdempotencyKey)
	v1.POST("/servers/:serial/decommission/abort", h.decommissionAbort, operator, httpx.IdempotencyKey)
	v1.POST("/servers/:serial/unracked", h.unracked, technician, httpx.IdempotencyKey)
}

type decommissionResponse struct {
	Serial     string `json:"serial"`
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
}

type decommissionStatusResponse struct {
	serverapi.DecommissionStatus
	WorkflowID  string `json:"workflowId"`
	TemporalURL string `json:"temporalUrl,omitempty"`
}

// decommission starts the Decommission workflow of an installed or ready
// server. What it needs (BMC by credential reference, location, role,
// hostname) comes from the server's lifecycle, so the request has no body.
func (h *handlers) decommission(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.CallTimeout)
	defer cancel()
	var st serverapi.ServerStatus
	if err := httpx.QueryStatus(ctx, h.Temporal, httpx.LifecycleRef(serial), stepapi.QueryStatus, &st); err != nil {
		return err
	}
	// A lifecycle still at work is cancelled by the decommission itself,
	// durably, before anything touches the hardware; one that ended
	// without a server to take back (aborted, failed, cancelled) has
	// nothing for a decommission to do.
	cancelLifecycle := false
	switch st.State {
	case serverapi.StateInstalled, serverapi.StateReady:
	case serverapi.StateWaitingRack, serverapi.StateProvisioning, serverapi.StateAttention:
		cancelLifecycle = true
	default:
		return httpx.Errorf(http.StatusConflict, "server %s is %s: there is nothing to decommission", serial, st.State)
	}
	var facts serverapi.MachineFacts
	if err := httpx.QueryStatus(ctx, h.Temporal, httpx.LifecycleRef(serial), serverapi.QueryMachine, &facts); err != nil {
		return err
	}
	in := serverapi.DecommissionInput{Serial: serial, BMC: facts.BMC, Host: facts.Host, Location: st.Location, Actor: httpx.Actor(c),
		CancelLifecycle: cancelLifecycle, Pools: st.Pools}
	if st.Hardware != nil {
		in.Role = st.Hardware.Role
	}
	id := serverapi.DecommissionWorkflowID(serial)
	run, err := h.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        id,
		TaskQueue: serverapi.TaskQueue,
		// A finished decommission is final; one that failed or was
		// aborted may be started again.
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		TypedSearchAttributes:                    serverattrs.DecommissionAtStart(serial, st.Location),
	}, serverapi.DecommissionName, in)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return httpx.Errorf(http.StatusConflict, "server %s is being or has been decommissioned (workflow %s)", serial, id)
		}
		return httpx.TemporalError(err)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/servers/"+url.PathEscape(serial)+"/decommission")
	return c.JSON(http.StatusAccepted, decommissionResponse{Serial: serial, WorkflowID: id, RunID: run.GetRunID()})
}

func (h *handlers) getDecommission(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.CallTimeout)
	defer cancel()
	id := serverapi.DecommissionWorkflowID(serial)
	var st serverapi.DecommissionStatus
	if err := httpx.QueryStatus(ctx, h.Temporal, httpx.DecommissionRef(serial), stepapi.QueryStatus, &st); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, decommissionStatusResponse{DecommissionStatus: st, WorkflowID: id, TemporalURL: h.UI.WorkflowURL(id, st.RunID)})
}

// unracked is the technician's report that a decommissioned server left
// its rack; the workflow refuses it (409) until it waits for it.
func (h *handlers) unracked(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	if err := httpx.ReadNoBody(c); err != nil {
		return err
	}
	return httpx.Update(c, h.Temporal, httpx.DecommissionRef(serial), serverapi.UpdateUnracked, serverapi.UnrackedInput{By: httpx.Actor(c)}, &serverapi.UnrackedResult{})
}

func (h *handlers) decommissionRetry(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	var req bmc.RetryRequest
	if err := httpx.DecodeOptionalJSON(c, &req); err != nil {
		return err
	}
	if req.Profile != "" {
		return httpx.Errorf(http.StatusBadRequest, "a decommission has no profile to change")
	}
	in := serverapi.RetryInput{By: httpx.Actor(c)}
	return req.Send(c, h.Temporal, h.Credentials, h.BMCAddresses, httpx.DecommissionRef(serial), serial, in)
}

func (h *handlers) decommissionAbort(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	return httpx.Abort(c, h.Temporal, httpx.DecommissionRef(serial))
}
