package api

import (
	"context"
	"errors"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/workflows"
)

type decommissionResponse struct {
	Serial     string `json:"serial"`
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
}

type decommissionStatusResponse struct {
	workflows.DecommissionStatus
	WorkflowID  string `json:"workflowId"`
	TemporalURL string `json:"temporalUrl,omitempty"`
}

// decommission starts the Decommission workflow of an installed or ready
// server. What it needs (BMC by credential reference, location, role,
// hostname) comes from the server's lifecycle, so the request has no body.
func (s *Server) decommission(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.CallTimeout)
	defer cancel()
	var st workflows.ServerStatus
	if err := httpx.QueryStatus(ctx, s.cfg.Temporal, httpx.LifecycleRef(serial), workflows.QueryStatus, &st); err != nil {
		return err
	}
	// A lifecycle still at work is cancelled by the decommission itself,
	// durably, before anything touches the hardware; one that ended
	// without a server to take back (aborted, failed, cancelled) has
	// nothing for a decommission to do.
	cancelLifecycle := false
	switch st.State {
	case workflows.StateInstalled, workflows.StateReady:
	case workflows.StateWaitingRack, workflows.StateProvisioning, workflows.StateAttention:
		cancelLifecycle = true
	default:
		return httpx.Errorf(http.StatusConflict, "server %s is %s: there is nothing to decommission", serial, st.State)
	}
	var facts workflows.MachineFacts
	if err := httpx.QueryStatus(ctx, s.cfg.Temporal, httpx.LifecycleRef(serial), workflows.QueryMachine, &facts); err != nil {
		return err
	}
	in := workflows.DecommissionInput{Serial: serial, BMC: facts.BMC, Host: facts.Host, Location: st.Location, Actor: httpx.Actor(c),
		CancelLifecycle: cancelLifecycle, Pools: st.Pools}
	if st.Hardware != nil {
		in.Role = st.Hardware.Role
	}
	id := workflows.DecommissionWorkflowID(serial)
	run, err := s.cfg.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        id,
		TaskQueue: workflows.TaskQueue,
		// A finished decommission is final; one that failed or was
		// aborted may be started again.
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE_FAILED_ONLY,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, workflows.DecommissionName, in)
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

func (s *Server) getDecommission(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.CallTimeout)
	defer cancel()
	id := workflows.DecommissionWorkflowID(serial)
	var st workflows.DecommissionStatus
	if err := httpx.QueryStatus(ctx, s.cfg.Temporal, httpx.DecommissionRef(serial), workflows.QueryStatus, &st); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, decommissionStatusResponse{DecommissionStatus: st, WorkflowID: id, TemporalURL: s.workflowURL(id, st.RunID)})
}

// unracked is the technician's report that a decommissioned server left
// its rack; the workflow refuses it (409) until it waits for it.
func (s *Server) unracked(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	if err := httpx.ReadNoBody(c); err != nil {
		return err
	}
	return httpx.Update(c, s.cfg.Temporal, httpx.DecommissionRef(serial), workflows.UpdateUnracked, workflows.UnrackedInput{By: httpx.Actor(c)}, &workflows.UnrackedResult{})
}

func (s *Server) decommissionRetry(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	var req retryRequest
	if err := httpx.DecodeOptionalJSON(c, &req); err != nil {
		return err
	}
	if req.Profile != "" {
		return httpx.Errorf(http.StatusBadRequest, "a decommission has no profile to change")
	}
	in := workflows.RetryInput{By: httpx.Actor(c)}
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.UpdateTimeout)
	defer cancel()
	if req.BMC != nil {
		if err := validateBMC(*req.BMC, false); err != nil {
			return err
		}
		in.BMC = &activities.BMCRef{Address: req.BMC.Address}
		if req.BMC.Username != "" || req.BMC.Password != "" {
			ref, err := s.storeBMC(ctx, serial, *req.BMC)
			if err != nil {
				return err
			}
			in.BMC.CredentialRef = ref
		}
	}
	return httpx.SendUpdate(c, ctx, s.cfg.Temporal, httpx.DecommissionRef(serial), workflows.UpdateRetry, in, &workflows.DecisionResult{})
}

func (s *Server) decommissionAbort(c echo.Context) error {
	serial, err := httpx.SerialParam(c)
	if err != nil {
		return err
	}
	abort, err := httpx.ReadAbort(c)
	if err != nil {
		return err
	}
	return httpx.Update(c, s.cfg.Temporal, httpx.DecommissionRef(serial), workflows.UpdateAbort, abort, &workflows.DecisionResult{})
}
