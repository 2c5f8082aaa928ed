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

	"github.com/metalflow/metalflow/workflows"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
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
	serial, err := serialParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), temporalCallTimeout)
	defer cancel()
	var st workflows.ServerStatus
	if err := s.queryStatus(ctx, lifecycleRef(serial), workflows.QueryStatus, &st); err != nil {
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
		return httpError(http.StatusConflict, "server %s is %s: there is nothing to decommission", serial, st.State)
	}
	var facts workflows.MachineFacts
	if err := s.queryStatus(ctx, lifecycleRef(serial), workflows.QueryMachine, &facts); err != nil {
		return err
	}
	in := workflows.DecommissionInput{Serial: serial, BMC: facts.BMC, Host: facts.Host, Location: st.Location, Actor: actor(c),
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
			return httpError(http.StatusConflict, "server %s is being or has been decommissioned (workflow %s)", serial, id)
		}
		return temporalError(err)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/servers/"+url.PathEscape(serial)+"/decommission")
	return c.JSON(http.StatusAccepted, decommissionResponse{Serial: serial, WorkflowID: id, RunID: run.GetRunID()})
}

func (s *Server) getDecommission(c echo.Context) error {
	serial, err := serialParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), temporalCallTimeout)
	defer cancel()
	id := workflows.DecommissionWorkflowID(serial)
	var st workflows.DecommissionStatus
	if err := s.queryStatus(ctx, decommissionRef(serial), workflows.QueryStatus, &st); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, decommissionStatusResponse{DecommissionStatus: st, WorkflowID: id, TemporalURL: s.workflowURL(id, st.RunID)})
}

// unracked is the technician's report that a decommissioned server left
// its rack; the workflow refuses it (409) until it waits for it.
func (s *Server) unracked(c echo.Context) error {
	serial, err := serialParam(c)
	if err != nil {
		return err
	}
	if err := readNoBody(c); err != nil {
		return err
	}
	return s.update(c, decommissionRef(serial), workflows.UpdateUnracked, workflows.UnrackedInput{By: actor(c)}, &workflows.UnrackedResult{})
}

func (s *Server) decommissionRetry(c echo.Context) error {
	serial, err := serialParam(c)
	if err != nil {
		return err
	}
	var req retryRequest
	if err := decodeOptionalJSON(c, &req); err != nil {
		return err
	}
	if req.Profile != "" {
		return httpError(http.StatusBadRequest, "a decommission has no profile to change")
	}
	in := workflows.RetryInput{By: actor(c)}
	ctx, cancel := context.WithTimeout(c.Request().Context(), updateTimeout)
	defer cancel()
	if req.BMC != nil {
		if err := validateBMC(*req.BMC, false); err != nil {
			return err
		}
		in.BMC = &serverapi.BMCRef{Address: req.BMC.Address}
		if req.BMC.Username != "" || req.BMC.Password != "" {
			ref, err := s.storeBMC(ctx, serial, *req.BMC)
			if err != nil {
				return err
			}
			in.BMC.CredentialRef = ref
		}
	}
	return s.sendUpdate(c, ctx, decommissionRef(serial), workflows.UpdateRetry, in, &workflows.DecisionResult{})
}

func (s *Server) decommissionAbort(c echo.Context) error {
	serial, err := serialParam(c)
	if err != nil {
		return err
	}
	abort, err := readAbort(c)
	if err != nil {
		return err
	}
	return s.update(c, decommissionRef(serial), workflows.UpdateAbort, abort, &workflows.DecisionResult{})
}
