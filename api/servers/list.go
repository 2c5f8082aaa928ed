package servers

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/labstack/echo/v4"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/converter"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

type serverSummary struct {
	Serial string `json:"serial"`
	State  string `json:"state"`
	Step   string `json:"step,omitempty"`
	// StepStartedAt is when the server entered its step; absent for runs
	// started before the attribute existed that have not changed step since.
	StepStartedAt *time.Time `json:"stepStartedAt,omitempty"`
	Rack          string     `json:"rack,omitempty"`
	WorkflowID    string     `json:"workflowId"`
	StartedAt     time.Time  `json:"startedAt"`
}

type serverList struct {
	Servers       []serverSummary `json:"servers"`
	NextPageToken string          `json:"nextPageToken,omitempty"`
}

// listServers answers from Temporal's visibility store (search
// attributes), not by querying each workflow, so it stays cheap for tens of
// thousands of servers. A server's state is the one its own status gives
// (serverapi.ServerState): its lifecycle's until a decommission takes over.
// The two are separate workflows with a record each, so a page is read
// from one kind and completed from the other.
func (h *handlers) listServers(c echo.Context) error {
	if httpx.Caller(c).Tenant() {
		return h.listTenantServers(c)
	}
	var f listFilter
	for param, into := range map[string]*string{"state": &f.state, "rack": &f.rack} {
		v := c.QueryParam(param)
		if v == "" {
			continue
		}
		// Values go into a visibility query: allow only name characters.
		if err := stepapi.ValidateSerial(v); err != nil {
			return httpx.Errorf(http.StatusBadRequest, "invalid %s filter %q", param, v)
		}
		if param == "state" && !slices.Contains(serverapi.States(), v) {
			return httpx.Errorf(http.StatusBadRequest, "unknown state %q (one of %s)", v, strings.Join(serverapi.States(), ", "))
		}
		*into = v
	}
	pageSize := 100
	if v := c.QueryParam("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1000 {
			return httpx.Errorf(http.StatusBadRequest, "pageSize must be 1 to 1000")
		}
		pageSize = n
	}
	var token []byte
	if v := c.QueryParam("pageToken"); v != "" {
		t, err := base64.RawURLEncoding.DecodeString(v)
		if err != nil {
			return httpx.Errorf(http.StatusBadRequest, "invalid pageToken")
		}
		token = t
	}
	ctx, cancel := context.WithTimeout(c.Request().Context(), httpx.CallTimeout)
	defer cancel()
	page, next, err := h.visible(ctx, f.query(), pageSize, token)
	if err != nil {
		return httpx.TemporalError(err)
	}
	servers, err := h.settle(ctx, f, page)
	if err != nil {
		return httpx.TemporalError(err)
	}
	out := serverList{Servers: servers}
	if len(next) > 0 {
		out.NextPageToken = base64.RawURLEncoding.EncodeToString(next)
	}
	return c.JSON(http.StatusOK, out)
}

// listFilter is what the list was asked for; both are checked names.
type listFilter struct {
	state, rack string
}

// byDecommission says only a decommission gives the state asked for, so
// the page is read from decommissions.
func (f listFilter) byDecommission() bool {
	return serverapi.DecommissionStatesShownAs(f.state) != nil
}

// query selects one page's records: the lifecycles in the state asked for,
// or the decommissions that put their server in it. Either kind carries the
// LifecycleState and Rack attributes.
func (f listFilter) query() string {
	var q string
	if f.byDecommission() {
		q = fmt.Sprintf("WorkflowType = '%s' AND %s IN (%s)", serverapi.DecommissionName, serverapi.SearchAttrLifecycleState,
			quoted(serverapi.DecommissionStatesShownAs(f.state)))
	} else {
		q = fmt.Sprintf("WorkflowType = '%s'", serverapi.ServerLifecycleName)
		if f.state != "" {
			q += fmt.Sprintf(` AND %s = "%s"`, serverapi.SearchAttrLifecycleState, f.state)
		}
	}
	if f.rack != "" {
		q += fmt.Sprintf(` AND %s = "%s"`, serverapi.SearchAttrRack, f.rack)
	}
	return q
}

// record is one workflow's visibility record as the list reads it.
type record struct {
	serial, state, step, rack, workflowID string
	stepStartedAt                         *time.Time
	startedAt                             time.Time
}

// visible reads one page of records.
func (h *handlers) visible(ctx context.Context, query string, pageSize int, token []byte) ([]record, []byte, error) {
	res, err := h.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: query, PageSize: int32(pageSize), NextPageToken: token,
	})
	if err != nil {
		return nil, nil, err
	}
	out := make([]record, 0, len(res.GetExecutions()))
	for _, e := range res.GetExecutions() {
		fields := e.GetSearchAttributes().GetIndexedFields()
		serial := keyword(fields, serverapi.SearchAttrServerSerial)
		if serial == "" {
			// The page is settled by serial: a run without the attribute
			// must not stand in for another. Its ID names the serial.
			_, serial, _ = strings.Cut(e.GetExecution().GetWorkflowId(), "/")
		}
		out = append(out, record{
			serial:        serial,
			state:         keyword(fields, serverapi.SearchAttrLifecycleState),
			step:          keyword(fields, serverapi.SearchAttrLifecycleStep),
			stepStartedAt: datetime(fields, serverapi.SearchAttrLifecycleStepStartedAt),
			rack:          keyword(fields, serverapi.SearchAttrRack),
			workflowID:    e.GetExecution().GetWorkflowId(),
			startedAt:     e.GetStartTime().AsTime(),
		})
	}
	return out, res.GetNextPageToken(), nil
}

// serialsPerQuery bounds the serials one visibility query names.
const serialsPerQuery = 100

// ofServers reads every record of workflowType for the given serials.
func (h *handlers) ofServers(ctx context.Context, workflowType string, serials []string) ([]record, error) {
	var out []record
	for chunk := range slices.Chunk(serials, serialsPerQuery) {
		query := fmt.Sprintf("WorkflowType = '%s' AND %s IN (%s)", workflowType, serverapi.SearchAttrServerSerial, quoted(chunk))
		var token []byte
		for {
			page, next, err := h.visible(ctx, query, 1000, token)
			if err != nil {
				return nil, err
			}
			out = append(out, page...)
			if len(next) == 0 {
				break
			}
			token = next
		}
	}
	return out, nil
}

// settle gives each server of a page the state its status would give, from
// its lifecycle and its latest decommission, and keeps those in the state
// asked for. A page may so come out shorter than asked; the next page
// token still leads on.
func (h *handlers) settle(ctx context.Context, f listFilter, page []record) ([]serverSummary, error) {
	lifecycles := map[string]record{}
	var handedOver []string
	if f.byDecommission() {
		var serials []string
		seen := map[string]bool{}
		for _, r := range page {
			if !seen[r.serial] {
				seen[r.serial] = true
				serials = append(serials, r.serial)
			}
		}
		found, err := h.ofServers(ctx, serverapi.ServerLifecycleName, serials)
		if err != nil {
			return nil, err
		}
		for _, r := range found {
			lifecycles[r.serial] = r
		}
		handedOver = serials
	} else {
		for _, r := range page {
			lifecycles[r.serial] = r
			// Only these can have a decommission that decides: the others
			// cost no second query.
			if serverapi.HandedOver(r.state) {
				handedOver = append(handedOver, r.serial)
			}
		}
	}
	runs, err := h.ofServers(ctx, serverapi.DecommissionName, handedOver)
	if err != nil {
		return nil, err
	}
	// A decommission aborted or failed may be started again: the latest
	// run is the one the server's status reads.
	decommissions := map[string]record{}
	for _, r := range runs {
		if d, ok := decommissions[r.serial]; !ok || r.startedAt.After(d.startedAt) {
			decommissions[r.serial] = r
		}
	}
	out := make([]serverSummary, 0, len(page))
	listed := map[string]bool{}
	for _, r := range page {
		lc, ok := lifecycles[r.serial]
		if !ok || listed[r.serial] {
			continue
		}
		d := decommissions[r.serial]
		state := serverapi.ServerState(lc.state, d.state)
		if f.state != "" && state != f.state {
			continue
		}
		listed[r.serial] = true
		s := serverSummary{
			Serial: lc.serial, State: state, Step: lc.step, StepStartedAt: lc.stepStartedAt, Rack: lc.rack,
			WorkflowID: lc.workflowID, StartedAt: lc.startedAt,
		}
		if state != lc.state {
			// On its way out, the server's step is its decommission's.
			s.Step, s.StepStartedAt = d.step, d.stepStartedAt
		}
		out = append(out, s)
	}
	return out, nil
}

// quoted lists checked names for a visibility query's IN.
func quoted(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = `"` + v + `"`
	}
	return strings.Join(q, ", ")
}

func keyword(fields map[string]*commonpb.Payload, name string) string {
	p, ok := fields[name]
	if !ok {
		return ""
	}
	var v string
	if err := converter.GetDefaultDataConverter().FromPayload(p, &v); err != nil {
		// Keyword lists decode as []string; take the first.
		var list []string
		if converter.GetDefaultDataConverter().FromPayload(p, &list) == nil && len(list) > 0 {
			return list[0]
		}
		return ""
	}
	return strings.TrimSpace(v)
}

// datetime reads a Datetime search attribute; nil when absent or unreadable.
func datetime(fields map[string]*commonpb.Payload, name string) *time.Time {
	p, ok := fields[name]
	if !ok {
		return nil
	}
	var t time.Time
	if err := converter.GetDefaultDataConverter().FromPayload(p, &t); err != nil || t.IsZero() {
		return nil
	}
	t = t.UTC()
	return &t
}
