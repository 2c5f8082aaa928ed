package api

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows"
)

// The list says "awaiting approval" exactly when the VIP's own status does.
func TestVIPListAwaitingApprovalFollowsTheWorkflow(t *testing.T) {
	for _, tc := range []struct {
		rec  inventory.VIPRecord
		want bool
	}{
		{inventory.VIPRecord{Exposure: "public", State: workflows.VIPStateAwaitingApproval}, true},
		{inventory.VIPRecord{Exposure: "public", State: workflows.VIPStateAttention}, true},
		{inventory.VIPRecord{Exposure: "public", State: workflows.VIPStateActive, ApprovedBy: "bob"}, false},
		{inventory.VIPRecord{Exposure: "public", State: workflows.VIPStateRejected}, false},
		{inventory.VIPRecord{Exposure: "internal", State: workflows.VIPStateActive}, false},
	} {
		require.Equal(t, tc.want, summarizeVIP(tc.rec).AwaitingApproval, "%+v", tc.rec)
	}
}
