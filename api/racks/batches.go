package racks

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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

	"github.com/metalflow/metalflow/api/internal/bmc"
	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// rackBatchRequest is the body of POST /api/v1/racks/<site>/<rack>/servers:
// a rack's worth of servers, already racked, to provision together.
type rackBatchRequest struct {
	Servers []rackBatchServerRequest `json:"servers"`
	// Concurrency caps lifecycles busy at once (default 10).
	Concurrency int `json:"concurrency,omitempty"`
	// PowerConcurrency caps power operations at once in the rack (default 4).
	PowerConcurrency int `json:"powerConcurrency,omitempty"`
	// AttentionGrace is how long (a Go duration, "45m") a server may wait
	// in attention before the batch reports it rather than waiting (1h).
	AttentionGrace string `json:"attentionGrace,omitempty"`
}

type rackBatchServerRequest struct {
	Serial  string       `json:"serial"`
	BMC     *bmc.Request `json:"bmc"`
	Profile string       `json:"profile,omitempty"`
	Unit    int          `json:"unit"`
	// Face defaults to front, where most servers are mounted from.
	Face string `json:"face,omitempty"`
}

type rackBatchResponse struct {
	BatchID    string `json:"batchId"`
	WorkflowID string `json:"workflowId"`
	RunID      string `json:"runId"`
	Servers    int    `json:"servers"`
}

type rackBatchStatusResponse struct {
	batchapi.RackBatchStatus
	WorkflowID  string `json:"workflowId"`
	TemporalURL string `json:"temporalUrl,omitempty"`
}

// Bounds on what one request may ask for; beyond them it is a typo.
const (
	maxBatchConcurrency = 100
	maxAttentionGrace   = 7 * 24 * time.Hour
)

// createRackBatch checks the whole batch (shape, profiles, BMCs, duplicates,
// the rack's units in the CMDB) before anything is stored or started: a bad
// batch answers 4xx and changes nothing.
func (h *handlers) createRackBatch(c echo.Context) error {
	site, rack := c.Param("site"), c.Param("rack")
	if err := serverapi.ValidateLocation(serverapi.Location{Site: site, Rack: rack, Unit: 1, Face: serverapi.FaceFront}); err != nil {
		return httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	var req rackBatchRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	in, err := h.rackBatchInput(c.Request().Context(), site, rack, httpx.Actor(c), req)
	if err != nil {
		return err
	}
	// One budget for a look-up and a credential per server, then the start.
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.UpdateTimeout)
	defer cancel()
	id := batchapi.RackBatchWorkflowID(site, rack, in.BatchID)
	// The same batch posted twice (a client retrying after a timeout) is
	// one batch; check before storing credentials for it again.
	if _, err := h.Temporal.DescribeWorkflowExecution(ctx, id, ""); err == nil {
		return httpx.Errorf(http.StatusConflict, "this batch was already posted (workflow %s)", id)
	}
	creds := make([]bmc.Request, len(req.Servers))
	for i, r := range req.Servers {
		creds[i] = *r.BMC
	}
	for i := range in.Servers {
		// A server that already has a lifecycle is reported by the batch,
		// not started: store no credential that nothing would ever use.
		if _, err := h.Temporal.DescribeWorkflowExecution(ctx, serverapi.LifecycleWorkflowID(in.Servers[i].Serial), ""); err == nil {
			continue
		}
		ref, err := bmc.Seal(ctx, h.Credentials, in.Servers[i].Serial, creds[i])
		if err != nil {
			return err
		}
		in.Servers[i].BMC.CredentialRef = ref
	}
	run, err := h.Temporal.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                serverapi.TaskQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
	}, batchapi.RackBatchName, in)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return httpx.Errorf(http.StatusConflict, "this batch was already posted (workflow %s)", id)
		}
		return httpx.TemporalError(err)
	}
	c.Response().Header().Set(echo.HeaderLocation, batchPath(site, rack, in.BatchID))
	return c.JSON(http.StatusAccepted, rackBatchResponse{BatchID: in.BatchID, WorkflowID: id, RunID: run.GetRunID(), Servers: len(in.Servers)})
}

// rackBatchInput validates req and turns it into the workflow's input,
// with every credential still to be stored.
func (h *handlers) rackBatchInput(ctx context.Context, site, rack, by string, req rackBatchRequest) (batchapi.RackBatchInput, error) {
	in := batchapi.RackBatchInput{Site: site, Rack: rack, Concurrency: req.Concurrency, PowerConcurrency: req.PowerConcurrency, Actor: by}
	switch {
	case len(req.Servers) == 0:
		return in, httpx.Errorf(http.StatusBadRequest, "servers is required: a batch needs at least one server")
	case len(req.Servers) > batchapi.MaxBatchServers:
		return in, httpx.Errorf(http.StatusBadRequest, "a batch has at most %d servers, got %d", batchapi.MaxBatchServers, len(req.Servers))
	case req.Concurrency < 0 || req.Concurrency > maxBatchConcurrency:
		return in, httpx.Errorf(http.StatusBadRequest, "concurrency must be between 1 and %d (0 or absent: %d)", maxBatchConcurrency, batchapi.DefaultBatchConcurrency)
	case req.PowerConcurrency < 0 || req.PowerConcurrency > maxBatchConcurrency:
		return in, httpx.Errorf(http.StatusBadRequest, "powerConcurrency must be between 1 and %d (0 or absent: %d)", maxBatchConcurrency, batchapi.DefaultPowerConcurrency)
	}
	if req.AttentionGrace != "" {
		d, err := time.ParseDuration(req.AttentionGrace)
		if err != nil || d <= 0 || d > maxAttentionGrace {
			return in, httpx.Errorf(http.StatusBadRequest, "attentionGrace must be a duration such as \"45m\", between 1s and %s, got %q", maxAttentionGrace, req.AttentionGrace)
		}
		in.AttentionGrace = d
	}
	serials := map[string]int{}
	units := map[int]int{}
	for i, r := range req.Servers {
		where := fmt.Sprintf("servers[%d]", i)
		if err := stepapi.ValidateSerial(r.Serial); err != nil {
			return in, httpx.Errorf(http.StatusBadRequest, "%s: %s", where, err)
		}
		where = fmt.Sprintf("servers[%d] (%s)", i, r.Serial)
		if j, dup := serials[r.Serial]; dup {
			return in, httpx.Errorf(http.StatusBadRequest, "%s: serial %s is listed twice (also servers[%d])", where, r.Serial, j)
		}
		serials[r.Serial] = i
		if r.BMC == nil {
			return in, httpx.Errorf(http.StatusBadRequest, "%s: bmc is required", where)
		}
		if err := bmc.Validate(*r.BMC, true); err != nil {
			return in, prefixError(err, where)
		}
		if r.Profile != "" && !h.Profiles.Has(r.Profile) {
			return in, httpx.Errorf(http.StatusUnprocessableEntity, "%s: unknown hardware profile %q (known: %s)", where, r.Profile, strings.Join(h.Profiles.Names(), ", "))
		}
		face := r.Face
		if face == "" {
			face = serverapi.FaceFront
		}
		loc := serverapi.Location{Site: site, Rack: rack, Unit: r.Unit, Face: face}
		if err := serverapi.ValidateLocation(loc); err != nil {
			return in, httpx.Errorf(http.StatusBadRequest, "%s: %s", where, err)
		}
		if j, dup := units[r.Unit]; dup {
			return in, httpx.Errorf(http.StatusBadRequest, "%s: unit %d is also given to servers[%d] (%s)", where, r.Unit, j, req.Servers[j].Serial)
		}
		units[r.Unit] = i
		in.Servers = append(in.Servers, batchapi.RackBatchServer{
			Serial: r.Serial, Profile: r.Profile, Location: loc,
			BMC: &serverapi.BMCRef{Address: r.BMC.Address},
		})
	}
	// The CMDB last: one query per server, and only for a batch whose
	// shape is right. The unit claims stay the lifecycles' (atomic) job.
	for i := range in.Servers {
		srv := in.Servers[i]
		if err := httpx.CheckPlacement(ctx, h.Inventory, srv.Serial, srv.Location); err != nil {
			return in, prefixError(err, fmt.Sprintf("servers[%d] (%s)", i, srv.Serial))
		}
		if err := h.BMCAddresses.Check(ctx, srv.BMC.Address, site); err != nil {
			return in, prefixError(err, fmt.Sprintf("servers[%d] (%s)", i, srv.Serial))
		}
	}
	// The rack exists (CheckPlacement said so): every location gets its
	// room, as a technician's racked would.
	if r, err := h.Inventory.GetRack(ctx, site, rack); err == nil {
		for k := range in.Servers {
			in.Servers[k].Location.Room = r.Room
		}
	}
	in.BatchID = batchID(in)
	if err := batchapi.ValidateRackBatch(in); err != nil {
		return in, httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	return in, nil
}

// batchID names a batch by what it asks for (never by its passwords), so
// posting the same batch twice finds the first one instead of a second run.
func batchID(in batchapi.RackBatchInput) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s/%s|%d|%d|%d\n", in.Site, in.Rack, in.Concurrency, in.PowerConcurrency, in.AttentionGrace)
	for _, s := range in.Servers {
		fmt.Fprintf(h, "%s|%s|%s|%d|%s\n", s.Serial, s.BMC.Address, s.Profile, s.Location.Unit, s.Location.Face)
	}
	return "b-" + hex.EncodeToString(h.Sum(nil))[:12]
}

func batchPath(site, rack, id string) string {
	return "/api/v1/racks/" + url.PathEscape(site) + "/" + url.PathEscape(rack) + "/batches/" + url.PathEscape(id)
}

// prefixError says which server of a batch an error is about.
func prefixError(err error, where string) error {
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return httpx.Errorf(he.Code, "%s: %v", where, he.Message)
	}
	return err
}

// getRackBatch answers a batch's summary from its status query.
func (h *handlers) getRackBatch(c echo.Context) error {
	site, rack, batch := c.Param("site"), c.Param("rack"), c.Param("batch")
	if err := serverapi.ValidateLocation(serverapi.Location{Site: site, Rack: rack, Unit: 1, Face: serverapi.FaceFront}); err != nil {
		return httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	if err := stepapi.ValidateSerial(batch); err != nil {
		return httpx.Errorf(http.StatusBadRequest, "invalid batch id %q", batch)
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.CallTimeout)
	defer cancel()
	id := batchapi.RackBatchWorkflowID(site, rack, batch)
	v, err := h.Temporal.QueryWorkflow(ctx, id, "", stepapi.QueryStatus)
	if err != nil {
		var nf *serviceerror.NotFound
		if errors.As(err, &nf) {
			return httpx.Errorf(http.StatusNotFound, "no batch %s in rack %s/%s", batch, site, rack)
		}
		return httpx.TemporalError(err)
	}
	var st batchapi.RackBatchStatus
	if err := v.Get(&st); err != nil {
		return fmt.Errorf("decode status of %s: %w", id, err)
	}
	runID := ""
	if desc, err := h.Temporal.DescribeWorkflowExecution(ctx, id, ""); err == nil {
		runID = desc.GetWorkflowExecutionInfo().GetExecution().GetRunId()
	}
	return c.JSON(http.StatusOK, rackBatchStatusResponse{RackBatchStatus: st, WorkflowID: id, TemporalURL: h.UI.WorkflowURL(id, runID)})
}
