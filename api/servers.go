package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/workflows"
)

// createServerRequest is the body of POST /api/v1/servers.
type createServerRequest struct {
	Serial   string              `json:"serial"`
	BMC      *bmcRequest         `json:"bmc,omitempty"`
	Profile  string              `json:"profile,omitempty"`
	Location *workflows.Location `json:"location,omitempty"`
	// Tenant is the cloud project that ordered the server; it becomes the
	// Ironic node's owner and lessee once the server is registered.
	Tenant string `json:"tenant,omitempty"`
}

// bmcRequest is a BMC as staff give it; the password goes straight into
// the credential store and only a reference goes on.
type bmcRequest struct {
	Address  string `json:"address"`
	Username string `json:"username"`
	Password string `json:"password"`
}

type createServerResponse struct {
	Serial     string `json:"serial"`
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
}

// serverResponse is a server's status plus where to look at its run.
type serverResponse struct {
	workflows.ServerStatus
	WorkflowID  string `json:"workflowId"`
	TemporalURL string `json:"temporalUrl,omitempty"`
}

// temporalCallTimeout bounds every call into Temporal made for a request.
const temporalCallTimeout = 10 * time.Second

// updateTimeout bounds an update, which waits for the workflow's answer and
// the activities its handler runs (a few short retries at most).
const updateTimeout = 30 * time.Second

func (s *Server) createServer(c echo.Context) error {
	var req createServerRequest
	if err := decodeJSON(c, &req); err != nil {
		return err
	}
	if err := workflows.ValidateSerial(req.Serial); err != nil {
		return httpError(http.StatusBadRequest, "%s", err)
	}
	if err := workflows.ValidateTenant(req.Tenant); err != nil {
		return httpError(http.StatusBadRequest, "%s", err)
	}
	if req.Profile != "" && !s.cfg.Profiles.Has(req.Profile) {
		return httpError(http.StatusUnprocessableEntity, "unknown hardware profile %q (known: %s)", req.Profile, strings.Join(s.cfg.Profiles.Names(), ", "))
	}
	if req.BMC != nil {
		if err := validateBMC(*req.BMC, true); err != nil {
			return err
		}
	}
	if req.Location != nil {
		if err := workflows.ValidateLocation(*req.Location); err != nil {
			return httpError(http.StatusBadRequest, "%s", err)
		}
		if err := s.checkPlacement(c.Request().Context(), req.Serial, *req.Location); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), temporalCallTimeout)
	defer cancel()
	id := workflows.LifecycleWorkflowID(req.Serial)
	// A duplicate must not leave a stored credential behind: check first.
	if _, err := s.cfg.Temporal.DescribeWorkflowExecution(ctx, id, ""); err == nil {
		return httpError(http.StatusConflict, "server %s already has a lifecycle (workflow %s)", req.Serial, id)
	}
	input := workflows.ServerLifecycleInput{Serial: req.Serial, Location: req.Location, Profile: req.Profile, Tenant: req.Tenant, Actor: "api"}
	if req.BMC != nil {
		ref, err := s.storeBMC(ctx, req.Serial, *req.BMC)
		if err != nil {
			return err
		}
		input.BMC = &activities.BMCRef{Address: req.BMC.Address, CredentialRef: ref}
	}
	run, err := s.cfg.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        id,
		TaskQueue: workflows.TaskQueue,
		// One lifecycle per serial, ever: a finished or failed run is not
		// silently replaced by a second POST.
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		TypedSearchAttributes:    workflows.LifecycleStartAttributes(req.Serial),
		// Without this the SDK hands back the existing run as if started.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, workflows.ServerLifecycleName, input)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return httpError(http.StatusConflict, "server %s already has a lifecycle (workflow %s)", req.Serial, id)
		}
		return temporalError(err)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/servers/"+url.PathEscape(req.Serial))
	return c.JSON(http.StatusAccepted, createServerResponse{Serial: req.Serial, WorkflowID: id, RunID: run.GetRunID()})
}

func (s *Server) getServer(c echo.Context) error {
	serial, err := serialParam(c)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), temporalCallTimeout)
	defer cancel()
	id := workflows.LifecycleWorkflowID(serial)
	v, err := s.cfg.Temporal.QueryWorkflow(ctx, id, "", workflows.QueryStatus)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return httpError(http.StatusNotFound, "no server %s", serial)
		}
		return temporalError(err)
	}
	var st workflows.ServerStatus
	if err := v.Get(&st); err != nil {
		return fmt.Errorf("decode status of %s: %w", id, err)
	}
	return c.JSON(http.StatusOK, serverResponse{ServerStatus: st, WorkflowID: id, TemporalURL: s.workflowURL(id, st.RunID)})
}

func (s *Server) racked(c echo.Context) error {
	serial, err := serialParam(c)
	if err != nil {
		return err
	}
	var loc workflows.Location
	if err := decodeJSON(c, &loc); err != nil {
		return err
	}
	// The workflow's validator checks the same; checking here too answers
	// malformed input without a round trip and gives it the 422 it deserves.
	if err := workflows.ValidateLocation(loc); err != nil {
		return httpError(http.StatusUnprocessableEntity, "%s", err)
	}
	// Refuse what the CMDB already knows is wrong (unknown rack, unit out
	// of range or taken) without touching the workflow; the workflow's
	// claim stays authoritative for races between two technicians.
	if err := s.checkPlacement(c.Request().Context(), serial, loc); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), updateTimeout)
	defer cancel()
	id := workflows.LifecycleWorkflowID(serial)
	handle, err := s.cfg.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID:   id,
		UpdateName:   workflows.UpdateRacked,
		Args:         []any{workflows.RackedInput{Location: loc}},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		var res workflows.RackedResult
		if err = handle.Get(ctx, &res); err == nil {
			return c.JSON(http.StatusOK, res)
		}
	}
	return s.updateError(ctx, serial, err)
}

// updateError turns a failed update into the answer staff can act on.
func (s *Server) updateError(ctx context.Context, serial string, err error) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		// The workflow refused: a validator rejection or a handler error.
		if appErr.Type() == activities.ErrTypeInvalidPlacement {
			return httpError(http.StatusUnprocessableEntity, "%s", appErr.Message())
		}
		return httpError(http.StatusConflict, "%s", appErr.Message())
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		// NotFound covers both "never existed" and "already finished".
		desc, derr := s.cfg.Temporal.DescribeWorkflowExecution(ctx, workflows.LifecycleWorkflowID(serial), "")
		if derr == nil && desc.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return httpError(http.StatusConflict, "the lifecycle of server %s is no longer running", serial)
		}
		return httpError(http.StatusNotFound, "no server %s", serial)
	}
	return temporalError(err)
}

func serialParam(c echo.Context) (string, error) {
	serial, err := url.PathUnescape(c.Param("serial"))
	if err != nil {
		return "", httpError(http.StatusBadRequest, "invalid serial in path")
	}
	if err := workflows.ValidateSerial(serial); err != nil {
		return "", httpError(http.StatusBadRequest, "%s", err)
	}
	return serial, nil
}

// temporalError reports Temporal being unreachable or overloaded as 503, so
// clients retry instead of giving up.
func temporalError(err error) error {
	var unavailable *serviceerror.Unavailable
	var exhausted *serviceerror.ResourceExhausted
	var deadline *serviceerror.DeadlineExceeded
	if errors.As(err, &unavailable) || errors.As(err, &exhausted) || errors.As(err, &deadline) ||
		errors.Is(err, context.DeadlineExceeded) {
		return &echo.HTTPError{Code: http.StatusServiceUnavailable, Message: "temporal unavailable: " + err.Error(), Internal: err}
	}
	return &echo.HTTPError{Code: http.StatusInternalServerError, Message: "temporal call failed: " + err.Error(), Internal: err}
}

func (s *Server) workflowURL(id, runID string) string {
	if s.cfg.TemporalUIURL == "" || runID == "" {
		return ""
	}
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s/%s/history",
		s.cfg.TemporalUIURL, url.PathEscape(s.cfg.Namespace), url.PathEscape(id), url.PathEscape(runID))
}
