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
// thousands of servers.
func (h *handlers) listServers(c echo.Context) error {
	if httpx.Caller(c).Tenant() {
		return h.listTenantServers(c)
	}
	query := fmt.Sprintf("WorkflowType = '%s'", serverapi.ServerLifecycleName)
	for param, attr := range map[string]string{"state": serverapi.SearchAttrLifecycleState, "rack": serverapi.SearchAttrRack} {
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
		query += fmt.Sprintf(` AND %s = "%s"`, attr, v)
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
	res, err := h.Temporal.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{
		Query: query, PageSize: int32(pageSize), NextPageToken: token,
	})
	if err != nil {
		return httpx.TemporalError(err)
	}
	out := serverList{Servers: make([]serverSummary, 0, len(res.GetExecutions()))}
	for _, e := range res.GetExecutions() {
		fields := e.GetSearchAttributes().GetIndexedFields()
		out.Servers = append(out.Servers, serverSummary{
			Serial:        keyword(fields, serverapi.SearchAttrServerSerial),
			State:         keyword(fields, serverapi.SearchAttrLifecycleState),
			Step:          keyword(fields, serverapi.SearchAttrLifecycleStep),
			StepStartedAt: datetime(fields, serverapi.SearchAttrLifecycleStepStartedAt),
			Rack:          keyword(fields, serverapi.SearchAttrRack),
			WorkflowID:    e.GetExecution().GetWorkflowId(),
			StartedAt:     e.GetStartTime().AsTime(),
		})
	}
	if len(res.GetNextPageToken()) > 0 {
		out.NextPageToken = base64.RawURLEncoding.EncodeToString(res.GetNextPageToken())
	}
	return c.JSON(http.StatusOK, out)
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
