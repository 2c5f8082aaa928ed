package vips

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/access"
	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// The list says "awaiting approval" exactly when the VIP's own status does.
func TestVIPListAwaitingApprovalFollowsTheWorkflow(t *testing.T) {
	for _, tc := range []struct {
		rec  inventory.VIPRecord
		want bool
	}{
		{inventory.VIPRecord{Exposure: "public", State: vipapi.VIPStateAwaitingApproval}, true},
		{inventory.VIPRecord{Exposure: "public", State: vipapi.VIPStateAttention}, true},
		{inventory.VIPRecord{Exposure: "public", State: vipapi.VIPStateActive, ApprovedBy: "bob"}, false},
		{inventory.VIPRecord{Exposure: "public", State: vipapi.VIPStateRejected}, false},
		{inventory.VIPRecord{Exposure: "internal", State: vipapi.VIPStateActive}, false},
	} {
		require.Equal(t, tc.want, summarizeVIP(tc.rec).AwaitingApproval, "%+v", tc.rec)
	}
}

// A bad counters value is refused before anything asks Temporal (this API
// has none): the caller learns of the typo, not of a missing VIP.
func TestGetVIPCountersParameter(t *testing.T) {
	inv := apitest.Inventory(t)
	e := apitest.Echo()
	guard := access.New(access.Config{Tokens: &auth.Tokens{Store: inv}, Store: inv, Logger: slog.New(slog.DiscardHandler)})
	Register(e.Group("/api/v1"), guard, Deps{Inventory: inv})
	h := apitest.WithToken(e, apitest.Token(t, inv, auth.Viewer, ""))
	for _, v := range []string{"maybe", "1", "FALSE", "no"} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/api/v1/vips/web?counters="+v, nil))
		require.Equal(t, http.StatusBadRequest, rec.Code, v)
		require.Contains(t, rec.Body.String(), "counters must be true or false", v)
	}
}
