package httpx

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// CallTimeout bounds every call into Temporal made for a request.
const CallTimeout = 10 * time.Second

// UpdateTimeout bounds an update, which waits for the workflow's answer and
// the activities its handler runs (a few short retries at most).
const UpdateTimeout = 30 * time.Second

// Workflows is what reading a workflow and sending it staff decisions
// takes of Temporal.
type Workflows interface {
	QueryWorkflow(ctx context.Context, workflowID, runID, queryType string, args ...any) (converter.EncodedValue, error)
	UpdateWorkflow(ctx context.Context, options client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error)
	DescribeWorkflowExecution(ctx context.Context, workflowID, runID string) (*workflowservice.DescribeWorkflowExecutionResponse, error)
}

// WorkflowRef is a workflow the API reads or sends staff decisions to, and
// what to call it when it is not there.
type WorkflowRef struct {
	ID string
	// Missing is the 404 message: "no server SN-1".
	Missing string
	// Name is how an ended run is named in a 409: "the lifecycle of
	// server SN-1".
	Name string
}

// LifecycleRef is a server's lifecycle, which both its own routes and its
// decommission read.
func LifecycleRef(serial string) WorkflowRef {
	return WorkflowRef{ID: serverapi.LifecycleWorkflowID(serial), Missing: "no server " + serial,
		Name: "the lifecycle of server " + serial}
}

// DecommissionRef is a server's decommission, which its status shows too.
func DecommissionRef(serial string) WorkflowRef {
	return WorkflowRef{ID: serverapi.DecommissionWorkflowID(serial), Missing: "server " + serial + " has no decommission",
		Name: "the decommission of server " + serial}
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

// QueryStatus reads a workflow's status query into out; a workflow that
// never existed is a 404.
func QueryStatus(ctx context.Context, tc Workflows, ref WorkflowRef, query string, out any) error {
	v, err := tc.QueryWorkflow(ctx, ref.ID, "", query)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return Errorf(http.StatusNotFound, "%s", ref.Missing)
		}
		return TemporalError(err)
	}
	if err := v.Get(out); err != nil {
		return fmt.Errorf("decode %s of %s: %w", query, ref.ID, err)
	}
	return nil
}

// SendUpdate sends a staff decision and answers with the workflow's
// result. The workflow's refusal is a 409 (422 for a placement the CMDB
// cannot take); a run that ended is a 409, one that never existed a 404.
func SendUpdate(c echo.Context, ctx context.Context, tc Workflows, ref WorkflowRef, update string, arg, res any) error {
	id, err := updateID(c, update, arg)
	if err != nil {
		return err
	}
	opts := client.UpdateWorkflowOptions{
		UpdateID: id, WorkflowID: ref.ID, UpdateName: update, Args: []any{arg}, WaitForStage: client.WorkflowUpdateStageAccepted,
	}
	handle, err := tc.UpdateWorkflow(ctx, opts)
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
		handle, err = tc.UpdateWorkflow(ctx, opts)
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
			return Errorf(http.StatusUnprocessableEntity, "%s", appErr.Message())
		}
		return Errorf(http.StatusConflict, "%s", appErr.Message())
	}
	if errors.As(err, &gaveUp) && c.Request().Context().Err() == nil {
		// Temporal has the update but did not accept it within our wait:
		// the workflow may still run it. Say so, so the client checks
		// before repeating, or repeats with the same key.
		c.Response().Header().Set("Retry-After", "5")
		return Errorf(http.StatusServiceUnavailable,
			"temporal did not confirm %s to %s within %s; it may still take effect: check the status before repeating it, or repeat it with the same %s header",
			update, ref.Name, UpdateTimeout, IdempotencyKeyHeader)
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		// NotFound covers both "never existed" and "already finished".
		desc, derr := tc.DescribeWorkflowExecution(ctx, ref.ID, "")
		if derr == nil && desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return Errorf(http.StatusConflict, "%s is no longer running", ref.Name)
		}
		return Errorf(http.StatusNotFound, "%s", ref.Missing)
	}
	return TemporalError(err)
}

// Update sends a staff decision within the API's wait for updates.
func Update(c echo.Context, tc Workflows, ref WorkflowRef, update string, arg, res any) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), UpdateTimeout)
	defer cancel()
	return SendUpdate(c, ctx, tc, ref, update, arg, res)
}

// TemporalUI links answers to the Temporal Web UI.
type TemporalUI struct {
	// URL is the Web UI's; empty when there is none.
	URL       string
	Namespace string
}

// WorkflowURL is where the Web UI shows a run's history; empty without a
// Web UI or a run.
func (u TemporalUI) WorkflowURL(id, runID string) string {
	if u.URL == "" || runID == "" {
		return ""
	}
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s/%s/history",
		u.URL, url.PathEscape(u.Namespace), url.PathEscape(id), url.PathEscape(runID))
}
