package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/workflows"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// workflowRef is a workflow the API reads or sends staff decisions to, and
// what to call it when it is not there.
type workflowRef struct {
	id string
	// missing is the 404 message: "no server SN-1".
	missing string
	// name is how an ended run is named in a 409: "the lifecycle of
	// server SN-1".
	name string
}

func lifecycleRef(serial string) workflowRef {
	return workflowRef{id: workflows.LifecycleWorkflowID(serial), missing: "no server " + serial,
		name: "the lifecycle of server " + serial}
}

func decommissionRef(serial string) workflowRef {
	return workflowRef{id: workflows.DecommissionWorkflowID(serial), missing: "server " + serial + " has no decommission",
		name: "the decommission of server " + serial}
}

// askAgainPause spaces the requests for an update the SDK gave up waiting
// on, so a Temporal that answers at once with a cancelled stream is not
// asked in a tight loop.
const askAgainPause = 250 * time.Millisecond

// updateInProgress answers an accepted update that has not finished yet.
type updateInProgress struct {
	UpdateID string `json:"updateId"`
	Message  string `json:"message"`
}

// queryStatus reads a workflow's status query into out; a workflow that
// never existed is a 404.
func (s *Server) queryStatus(ctx context.Context, ref workflowRef, query string, out any) error {
	v, err := s.cfg.Temporal.QueryWorkflow(ctx, ref.id, "", query)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return httpError(http.StatusNotFound, "%s", ref.missing)
		}
		return temporalError(err)
	}
	if err := v.Get(out); err != nil {
		return fmt.Errorf("decode %s of %s: %w", query, ref.id, err)
	}
	return nil
}

// sendUpdate sends a staff decision and answers with the workflow's
// result. The workflow's refusal is a 409 (422 for a placement the CMDB
// cannot take); a run that ended is a 409, one that never existed a 404.
func (s *Server) sendUpdate(c echo.Context, ctx context.Context, ref workflowRef, update string, arg, res any) error {
	id, err := updateID(c, update, arg)
	if err != nil {
		return err
	}
	opts := client.UpdateWorkflowOptions{
		UpdateID: id, WorkflowID: ref.id, UpdateName: update, Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageAccepted,
	}
	handle, err := s.cfg.Temporal.UpdateWorkflow(ctx, opts)
	// The SDK's own poll for acceptance can end before our deadline when
	// Temporal is slow to run the workflow task: ask again for the same
	// update (the same ID joins it, never a second one) while time is left.
	var gaveUp *client.WorkflowUpdateServiceTimeoutOrCanceledError
	for errors.As(err, &gaveUp) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
			continue
		case <-time.After(askAgainPause):
		}
		handle, err = s.cfg.Temporal.UpdateWorkflow(ctx, opts)
	}
	if err == nil {
		if err = handle.Get(ctx, res); err == nil {
			return c.JSON(http.StatusOK, res)
		}
		// Accepted, but no outcome within the request (a VIP change rolled
		// out node by node outlasts it; the SDK's wait ends with a timeout
		// or a cancelled stream, sometimes before our own deadline): it
		// goes on in the workflow. Say so, rather than blaming Temporal
		// with a 503. The workflow's own refusal is mapped below.
		var refused *temporal.ApplicationError
		if !errors.As(err, &refused) && c.Request().Context().Err() == nil {
			c.Response().Header().Set(echo.HeaderLocation, c.Request().URL.Path)
			return c.JSON(http.StatusAccepted, updateInProgress{
				UpdateID: handle.UpdateID(),
				Message:  "accepted and still in progress: follow the status",
			})
		}
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		if appErr.Type() == stepapi.ErrTypeInvalidPlacement {
			return httpError(http.StatusUnprocessableEntity, "%s", appErr.Message())
		}
		return httpError(http.StatusConflict, "%s", appErr.Message())
	}
	if errors.As(err, &gaveUp) && c.Request().Context().Err() == nil {
		// Temporal has the update but did not accept it within our wait:
		// the workflow may still run it. Say so, so the client checks
		// before repeating, or repeats with the same key.
		c.Response().Header().Set("Retry-After", "5")
		return httpError(http.StatusServiceUnavailable,
			"temporal did not confirm %s to %s within %s; it may still take effect: check the status before repeating it, or repeat it with the same %s header",
			update, ref.name, updateTimeout, idempotencyKeyHeader)
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		// NotFound covers both "never existed" and "already finished".
		desc, derr := s.cfg.Temporal.DescribeWorkflowExecution(ctx, ref.id, "")
		if derr == nil && desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return httpError(http.StatusConflict, "%s is no longer running", ref.name)
		}
		return httpError(http.StatusNotFound, "%s", ref.missing)
	}
	return temporalError(err)
}

// update sends a staff decision within the API's wait for updates.
func (s *Server) update(c echo.Context, ref workflowRef, update string, arg, res any) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), updateTimeout)
	defer cancel()
	return s.sendUpdate(c, ctx, ref, update, arg, res)
}

// readAbort reads an abort: a reason is required, for the record.
func readAbort(c echo.Context) (workflows.AbortInput, error) {
	var req abortRequest
	if err := decodeJSON(c, &req); err != nil {
		return workflows.AbortInput{}, err
	}
	if req.Reason == "" {
		return workflows.AbortInput{}, httpError(http.StatusBadRequest, "reason is required: it goes into the record")
	}
	return workflows.AbortInput{Reason: req.Reason, By: actor(c)}, nil
}

// readNoBody accepts an absent or empty JSON object and nothing else.
func readNoBody(c echo.Context) error {
	var req struct{}
	return decodeOptionalJSON(c, &req)
}
