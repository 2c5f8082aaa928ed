// Package vips is the API of virtual IPs: an operator asks for one, an
// approver publishes a public one, and each VIP's rollout workflow places
// it on load-balancer nodes and keeps its backends.
package vips

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"time"

	"github.com/labstack/echo/v4"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/metalflow/metalflow/api/access"
	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// Inventory lists VIPs as their workflows recorded them.
type Inventory interface {
	ListVIPs(ctx context.Context) ([]inventory.VIPRecord, error)
}

// Deps is what the VIP routes use.
type Deps struct {
	Temporal  client.Client
	Inventory Inventory
	UI        httpx.TemporalUI
}

type handlers struct {
	Deps
}

// Register mounts the VIP routes.
func Register(v1 *echo.Group, guard *access.Guard, d Deps) {
	h := &handlers{Deps: d}
	viewer, operator, approver := guard.Allow(auth.Viewer), guard.Allow(auth.Operator), guard.Allow(auth.Approver)
	v1.POST("/vips", h.createVIP, operator)
	v1.GET("/vips", h.listVIPs, viewer)
	v1.GET("/vips/:name", h.getVIP, viewer)
	v1.POST("/vips/:name/approve", h.approveVIP, approver, httpx.IdempotencyKey)
	v1.POST("/vips/:name/reject", h.rejectVIP, approver, httpx.IdempotencyKey)
	v1.POST("/vips/:name/backends", h.changeVIPBackends, operator, httpx.IdempotencyKey)
	v1.POST("/vips/:name/retry", h.vipRetry, operator, httpx.IdempotencyKey)
	v1.POST("/vips/:name/abort", h.vipAbort, operator, httpx.IdempotencyKey)
	v1.DELETE("/vips/:name", h.retireVIP, operator, httpx.IdempotencyKey)
}

// createVIPRequest is the body of POST /api/v1/vips. Where the VIP runs is
// the platform's choice: the request says how many clusters, never which.
type createVIPRequest struct {
	Name     string   `json:"name"`
	Protocol string   `json:"protocol"`
	Port     uint16   `json:"port,omitempty"`
	Ports    []uint16 `json:"ports,omitempty"`
	// Exposure is internal or public; public waits for an approver.
	Exposure    string             `json:"exposure"`
	Backends    []lbapi.Backend    `json:"backends,omitempty"`
	Servers     []string           `json:"servers,omitempty"`
	Clusters    int                `json:"clusters,omitempty"`
	HealthCheck *lbapi.HealthCheck `json:"healthCheck,omitempty"`
}

type vipCreated struct {
	Name       string `json:"name"`
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
}

type vipResponse struct {
	vipapi.VIPStatus
	WorkflowID  string `json:"workflowId"`
	TemporalURL string `json:"temporalUrl,omitempty"`
	// Traffic is each placed node's counters, read from the nodes now;
	// absent with ?counters=false or when the VIP's workflow has ended.
	Traffic *vipapi.VIPReport `json:"traffic,omitempty"`
}

type vipList struct {
	VIPs []vipSummary `json:"vips"`
}

type vipSummary struct {
	Name             string    `json:"name"`
	Address          string    `json:"address"`
	Exposure         string    `json:"exposure"`
	State            string    `json:"state"`
	RequestedBy      string    `json:"requestedBy,omitempty"`
	ApprovedBy       string    `json:"approvedBy,omitempty"`
	AwaitingApproval bool      `json:"awaitingApproval"`
	UpdatedAt        time.Time `json:"updatedAt"`
}

type rejectRequest struct {
	Reason string `json:"reason"`
}

type retireRequest struct {
	Reason string `json:"reason,omitempty"`
}

func vipRef(name string) httpx.WorkflowRef {
	return httpx.WorkflowRef{ID: lbapi.VIPWorkflowID(name), Missing: "no VIP " + name, Name: "the rollout of VIP " + name}
}

func vipParam(c echo.Context) (string, error) {
	name, err := url.PathUnescape(c.Param("name"))
	if err != nil {
		return "", httpx.Errorf(http.StatusBadRequest, "invalid VIP name in path")
	}
	if err := vipapi.ValidateVIPName(name); err != nil {
		return "", httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	return name, nil
}

// createVIP starts a VIP's rollout. Everything the workflow would refuse is
// refused here first, so a bad request holds no address and starts nothing.
func (h *handlers) createVIP(c echo.Context) error {
	var req createVIPRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	if req.Port != 0 && len(req.Ports) > 0 {
		return httpx.Errorf(http.StatusBadRequest, "give port or ports, not both")
	}
	in := vipapi.VIPRolloutInput{
		Name: req.Name, Protocol: req.Protocol, Ports: req.Ports, Exposure: req.Exposure,
		Backends: req.Backends, Servers: req.Servers, Clusters: req.Clusters, HealthCheck: req.HealthCheck,
		RequestedBy: httpx.Actor(c),
	}
	if req.Port != 0 {
		in.Ports = []uint16{req.Port}
	}
	in = vipapi.NormalizeVIPInput(in)
	if err := vipapi.ValidateVIPInput(in); err != nil {
		return httpx.Errorf(http.StatusUnprocessableEntity, "%s", err)
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.CallTimeout)
	defer cancel()
	id := lbapi.VIPWorkflowID(in.Name)
	run, err := h.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:        id,
		TaskQueue: serverapi.TaskQueue,
		// A retired or rejected VIP's name may be used again.
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, vipapi.VIPRolloutName, in)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return httpx.Errorf(http.StatusConflict, "VIP %s exists (workflow %s)", in.Name, id)
		}
		return httpx.TemporalError(err)
	}
	c.Response().Header().Set(echo.HeaderLocation, "/api/v1/vips/"+url.PathEscape(in.Name))
	return c.JSON(http.StatusAccepted, vipCreated{Name: in.Name, WorkflowID: id, RunID: run.GetRunID()})
}

// listVIPs answers from the inventory, which every VIP workflow keeps up
// to date: no query per VIP.
func (h *handlers) listVIPs(c echo.Context) error {
	recs, err := h.Inventory.ListVIPs(c.Request().Context())
	if err != nil {
		return err
	}
	out := vipList{VIPs: make([]vipSummary, 0, len(recs))}
	for _, r := range recs {
		out.VIPs = append(out.VIPs, summarizeVIP(r))
	}
	return c.JSON(http.StatusOK, out)
}

func summarizeVIP(r inventory.VIPRecord) vipSummary {
	return vipSummary{Name: r.Name, Address: r.Address, Exposure: r.Exposure, State: r.State,
		RequestedBy: r.RequestedBy, ApprovedBy: r.ApprovedBy, UpdatedAt: r.UpdatedAt,
		AwaitingApproval: awaitingApproval(r)}
}

// awaitingApproval is the workflow's own rule: a public VIP nobody has
// approved yet, until it ends. (It may wait in attention before it
// reaches the approvers' queue.)
func awaitingApproval(r inventory.VIPRecord) bool {
	switch r.State {
	case vipapi.VIPStateRetired, vipapi.VIPStateRejected, vipapi.VIPStateAborted:
		return false
	}
	return r.Exposure == lbapi.ExposurePublic && r.ApprovedBy == ""
}

func (h *handlers) getVIP(c echo.Context) error {
	name, err := vipParam(c)
	if err != nil {
		return err
	}
	// Counters ask every placed node, which a page polling every few
	// seconds should not do each time; refusing a bad value before any
	// Temporal call keeps the answer the same whatever the VIP.
	counters := true
	switch c.QueryParam("counters") {
	case "", "true":
	case "false":
		counters = false
	default:
		return httpx.Errorf(http.StatusBadRequest, "counters must be true or false, not %q", c.QueryParam("counters"))
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.CallTimeout)
	defer cancel()
	var st vipapi.VIPStatus
	if err := httpx.QueryStatus(ctx, h.Temporal, vipRef(name), stepapi.QueryStatus, &st); err != nil {
		return err
	}
	id := lbapi.VIPWorkflowID(name)
	res := vipResponse{VIPStatus: st, WorkflowID: id, TemporalURL: h.UI.WorkflowURL(id, st.RunID)}
	if counters {
		res.Traffic = h.vipTraffic(ctx, id)
	}
	return c.JSON(http.StatusOK, res)
}

// vipTraffic asks the VIP's nodes for their counters through its workflow.
// The status stands on its own: when the nodes cannot be asked (the
// workflow has ended, Temporal is slow) the answer has no traffic rather
// than failing.
func (h *handlers) vipTraffic(ctx context.Context, id string) *vipapi.VIPReport {
	report, err := h.Temporal.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: id, UpdateName: vipapi.UpdateReport, WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err != nil {
		return nil
	}
	var rep vipapi.VIPReport
	if err := report.Get(ctx, &rep); err != nil {
		return nil
	}
	return &rep
}

// approveVIP publishes a public VIP. The route admits approvers and admins;
// the workflow itself refuses the requester and any other role, so no path
// publishes a VIP its requester approved.
func (h *handlers) approveVIP(c echo.Context) error {
	name, err := vipParam(c)
	if err != nil {
		return err
	}
	if err := httpx.ReadNoBody(c); err != nil {
		return err
	}
	p := httpx.Caller(c)
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.UpdateTimeout)
	defer cancel()
	return httpx.SendUpdate(c, ctx, h.Temporal, vipRef(name), vipapi.UpdateApprove,
		vipapi.ApproveInput{By: p.User, Role: string(p.Role)}, &vipapi.VIPStatus{})
}

func (h *handlers) rejectVIP(c echo.Context) error {
	name, err := vipParam(c)
	if err != nil {
		return err
	}
	var req rejectRequest
	if err := httpx.DecodeOptionalJSON(c, &req); err != nil {
		return err
	}
	p := httpx.Caller(c)
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.UpdateTimeout)
	defer cancel()
	return httpx.SendUpdate(c, ctx, h.Temporal, vipRef(name), vipapi.UpdateReject,
		vipapi.RejectInput{By: p.User, Role: string(p.Role), Reason: req.Reason}, &vipapi.VIPStatus{})
}

func (h *handlers) changeVIPBackends(c echo.Context) error {
	name, err := vipParam(c)
	if err != nil {
		return err
	}
	var in vipapi.BackendsInput
	if err := httpx.DecodeJSON(c, &in); err != nil {
		return err
	}
	if in.By != "" {
		return httpx.Errorf(http.StatusBadRequest, "by is set from your token, not the body")
	}
	in.By = httpx.Actor(c)
	return httpx.Update(c, h.Temporal, vipRef(name), vipapi.UpdateBackends, in, &vipapi.VIPStatus{})
}

// retireVIP withdraws a VIP everywhere and frees its address; the update
// answers once that is done.
func (h *handlers) retireVIP(c echo.Context) error {
	name, err := vipParam(c)
	if err != nil {
		return err
	}
	var req retireRequest
	if err := httpx.DecodeOptionalJSON(c, &req); err != nil {
		return err
	}
	return httpx.Update(c, h.Temporal, vipRef(name), vipapi.UpdateRetire, vipapi.RetireInput{By: httpx.Actor(c), Reason: req.Reason}, &vipapi.VIPStatus{})
}

func (h *handlers) vipRetry(c echo.Context) error {
	name, err := vipParam(c)
	if err != nil {
		return err
	}
	if err := httpx.ReadNoBody(c); err != nil {
		return err
	}
	return httpx.Update(c, h.Temporal, vipRef(name), stepapi.UpdateRetry, serverapi.RetryInput{By: httpx.Actor(c)}, &stepapi.DecisionResult{})
}

func (h *handlers) vipAbort(c echo.Context) error {
	name, err := vipParam(c)
	if err != nil {
		return err
	}
	return httpx.Abort(c, h.Temporal, vipRef(name))
}
