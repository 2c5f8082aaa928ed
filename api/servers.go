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

	"github.com/metalflow/metalflow/workflows"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
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
	// Pools are VIPs (by name) the server joins as a backend once ready.
	Pools []string `json:"pools,omitempty"`
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
	// Decommission is the server's way out, once one has started.
	Decommission *decommissionSummary `json:"decommission,omitempty"`
}

// decommissionSummary points at a server's decommission from its status.
type decommissionSummary struct {
	WorkflowID string `json:"workflowId"`
	State      string `json:"state"`
	Step       string `json:"step,omitempty"`
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
	if err := workflows.ValidatePools(req.Pools); err != nil {
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
	input := workflows.ServerLifecycleInput{Serial: req.Serial, Location: req.Location, Profile: req.Profile, Tenant: req.Tenant, Pools: req.Pools, Actor: actor(c)}
	if req.BMC != nil {
		ref, err := s.storeBMC(ctx, req.Serial, *req.BMC)
		if err != nil {
			return err
		}
		input.BMC = &serverapi.BMCRef{Address: req.BMC.Address, CredentialRef: ref}
	}
	run, err := s.cfg.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        id,
		TaskQueue: workflows.TaskQueue,
		// One lifecycle per serial, ever: a finished or failed run is not
		// silently replaced by a second POST.
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		TypedSearchAttributes:    workflows.LifecycleStartAttributes(req.Serial, time.Now()),
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
	if err := s.checkTenant(c, serial); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), temporalCallTimeout)
	defer cancel()
	id := workflows.LifecycleWorkflowID(serial)
	var st workflows.ServerStatus
	if err := s.queryStatus(ctx, lifecycleRef(serial), workflows.QueryStatus, &st); err != nil {
		return err
	}
	res := serverResponse{ServerStatus: st, WorkflowID: id, TemporalURL: s.workflowURL(id, st.RunID)}
	if err := s.addDecommission(ctx, &res); err != nil {
		return err
	}
	return c.JSON(http.StatusOK, res)
}

// addDecommission shows a server's decommission in its status: once a
// server is on its way out, its lifecycle's last word (ready, installed,
// cancelled) is no longer what it is. Only servers whose lifecycle has
// reached such an end can have one, so servers being provisioned cost no
// extra call.
func (s *Server) addDecommission(ctx context.Context, res *serverResponse) error {
	switch res.State {
	case workflows.StateInstalled, workflows.StateReady, workflows.StateCancelled:
	default:
		return nil
	}
	ref := decommissionRef(res.Serial)
	var d workflows.DecommissionStatus
	if err := s.queryStatus(ctx, ref, workflows.QueryStatus, &d); err != nil {
		var he *echo.HTTPError
		if errors.As(err, &he) && he.Code == http.StatusNotFound {
			return nil
		}
		return err
	}
	res.Decommission = &decommissionSummary{WorkflowID: ref.id, State: d.State, Step: d.Step}
	switch d.State {
	case workflows.StateDecommissioning, workflows.StateAttention:
		res.State = workflows.StateDecommissioning
	case workflows.StateWaitingUnrack, workflows.StateDecommissioned:
		res.State = d.State
	}
	return nil
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
	return s.update(c, lifecycleRef(serial), workflows.UpdateRacked, workflows.RackedInput{Location: loc}, &workflows.RackedResult{})
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
