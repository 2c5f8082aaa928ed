package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/activities"
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
	serial, err := serialParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), temporalCallTimeout)
	defer cancel()
	lid := workflows.LifecycleWorkflowID(serial)
	v, err := s.cfg.Temporal.QueryWorkflow(ctx, lid, "", workflows.QueryStatus)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return httpError(http.StatusNotFound, "no server %s", serial)
		}
		return temporalError(err)
	}
	var st workflows.ServerStatus
	if err := v.Get(&st); err != nil {
		return fmt.Errorf("decode status of %s: %w", lid, err)
	}
	// A lifecycle still at work owns the hardware; cancelling it cleanly
	// is staff's decision (abort), not a side effect of a DELETE.
	if st.State != workflows.StateInstalled && st.State != workflows.StateReady {
		return httpError(http.StatusConflict, "server %s is %s: only installed or ready servers are decommissioned; cancel or abort it first", serial, st.State)
	}
	mv, err := s.cfg.Temporal.QueryWorkflow(ctx, lid, "", workflows.QueryMachine)
	if err != nil {
		return temporalError(err)
	}
	var facts workflows.MachineFacts
	if err := mv.Get(&facts); err != nil {
		return fmt.Errorf("decode machine facts of %s: %w", lid, err)
	}
	in := workflows.DecommissionInput{Serial: serial, BMC: facts.BMC, Host: facts.Host, Location: st.Location, Actor: "api"}
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
	v, err := s.cfg.Temporal.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return httpError(http.StatusNotFound, "server %s has no decommission", serial)
		}
		return temporalError(err)
	}
	var st workflows.DecommissionStatus
	if err := v.Get(&st); err != nil {
		return fmt.Errorf("decode status of %s: %w", id, err)
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
	var req struct{}
	if err := decodeOptionalJSON(c, &req); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), updateTimeout)
	defer cancel()
	return s.decommissionUpdate(c, ctx, serial, workflows.UpdateUnracked, workflows.UnrackedInput{By: "api"}, &workflows.UnrackedResult{})
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
	in := workflows.RetryInput{By: "api"}
	ctx, cancel := context.WithTimeout(c.Request().Context(), updateTimeout)
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
	return s.decommissionUpdate(c, ctx, serial, workflows.UpdateRetry, in, &workflows.DecisionResult{})
}

func (s *Server) decommissionAbort(c echo.Context) error {
	serial, err := serialParam(c)
	if err != nil {
		return err
	}
	var req abortRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if req.Reason == "" {
		return httpError(http.StatusBadRequest, "reason is required: it goes into the asset history")
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), updateTimeout)
	defer cancel()
	return s.decommissionUpdate(c, ctx, serial, workflows.UpdateAbort, workflows.AbortInput{Reason: req.Reason, By: "api"}, &workflows.DecisionResult{})
}

// decommissionUpdate sends an update to the decommission and waits for its
// answer: the workflow's refusal is 409, no running decommission 404/409.
func (s *Server) decommissionUpdate(c echo.Context, ctx context.Context, serial, update string, arg, res any) error {
	id := workflows.DecommissionWorkflowID(serial)
	handle, err := s.cfg.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: update, Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		if err = handle.Get(ctx, res); err == nil {
			return c.JSON(http.StatusOK, res)
		}
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return httpError(http.StatusConflict, "%s", appErr.Message())
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		if _, derr := s.cfg.Temporal.DescribeWorkflowExecution(ctx, id, ""); derr == nil {
			return httpError(http.StatusConflict, "the decommission of server %s is no longer running", serial)
		}
		return httpError(http.StatusNotFound, "server %s has no decommission", serial)
	}
	return temporalError(err)
}
