package serverapi

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// decommissionStates are every state a decommission's status reports, and
// "" for a server that has none.
func decommissionStates() []string {
	return []string{"", StateDecommissioning, StateAttention, StateWaitingUnrack, StateDecommissioned, StateAborted, StateFailed}
}

func TestServerStateFollowsTheDecommissionOnceHandedOver(t *testing.T) {
	cases := []struct{ lifecycle, decommission, want string }{
		{StateInstalled, "", StateInstalled},
		{StateReady, StateDecommissioning, StateDecommissioning},
		{StateInstalled, StateAttention, StateDecommissioning},
		{StateReady, StateWaitingUnrack, StateWaitingUnrack},
		{StateCancelled, StateDecommissioned, StateDecommissioned},
		// An aborted or failed decommission gives the server back.
		{StateReady, StateAborted, StateReady},
		{StateInstalled, StateFailed, StateInstalled},
		// While the decommission cancels a lifecycle still at work, the
		// lifecycle says where the server is.
		{StateProvisioning, StateDecommissioning, StateProvisioning},
		{StateAttention, StateDecommissioning, StateAttention},
		{StateAborted, StateDecommissioned, StateAborted},
	}
	for _, c := range cases {
		require.Equal(t, c.want, ServerState(c.lifecycle, c.decommission), "%+v", c)
	}
}

// The fleet list filters by a state through DecommissionStatesShownAs: it
// must pick exactly the decommissions ServerState turns into that state,
// and every state ServerState answers must be one the list accepts.
func TestDecommissionStatesShownAsInvertsServerState(t *testing.T) {
	for _, lifecycle := range States() {
		for _, d := range decommissionStates() {
			got := ServerState(lifecycle, d)
			require.Contains(t, States(), got, "ServerState(%s, %s)", lifecycle, d)
			if got == lifecycle {
				continue
			}
			require.True(t, HandedOver(lifecycle), "%s gave way to a decommission", lifecycle)
			require.Contains(t, DecommissionStatesShownAs(got), d, "ServerState(%s, %s) = %s", lifecycle, d, got)
		}
	}
	for _, s := range States() {
		for _, d := range DecommissionStatesShownAs(s) {
			require.True(t, slices.Contains(decommissionStates(), d), d)
			require.Equal(t, s, ServerState(StateInstalled, d))
		}
	}
	require.Nil(t, DecommissionStatesShownAs(StateInstalled), "a lifecycle's own state")
}
