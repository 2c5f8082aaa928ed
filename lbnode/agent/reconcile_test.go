package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// vipWorkflowsByName answers Wants for node c1/lb1 from a table; a VIP
// missing from it cannot be asked about.
type vipWorkflowsByName map[string]bool

func (w vipWorkflowsByName) Wants(_ context.Context, vip, cluster, node string) (bool, error) {
	if cluster != "c1" || node != "lb1" {
		return false, fmt.Errorf("asked about %s/%s", cluster, node)
	}
	wants, ok := w[vip]
	if !ok {
		return false, errors.New("temporal unavailable")
	}
	return wants, nil
}

func TestRemoveUnwantedRemovesOnlyVIPsItsWorkflowsDoNotWant(t *testing.T) {
	l := newNodeLab(t)
	l.detachAtCleanup()
	node := l.open()
	ann := newRecordingAnnouncer(node)
	a := startAgent(t, l, node, ann, nil)
	t.Cleanup(a.Close)
	x := newActivities(t, a)

	retired := webSpec()
	retired.Name, retired.Address = "retired", "10.200.0.20"
	live := webSpec()
	live.Name, live.Address = "live", "10.200.0.21"
	unknown := webSpec()
	unknown.Name, unknown.Address = "unknown", "10.200.0.22"
	for _, s := range []lbapi.VIPSpec{retired, live, unknown} {
		x.mustApply(s)
	}
	require.Contains(t, ann.Announced(), netip.MustParsePrefix("10.200.0.20/32"))

	removed, err := a.RemoveUnwanted(context.Background(), vipWorkflowsByName{"retired": false, "live": true})
	assert.Equal(t, []string{"retired"}, removed)
	require.Error(t, err, "a VIP it could not ask about is reported")
	assert.Contains(t, err.Error(), "unknown")

	specs := a.Specs()
	assert.NotContains(t, specs, "retired")
	assert.Contains(t, specs, "live")
	assert.Contains(t, specs, "unknown", "a VIP whose workflow it could not ask about is kept")
	assert.NotContains(t, ann.Announced(), netip.MustParsePrefix("10.200.0.20/32"), "the retired VIP is withdrawn")
	assert.Contains(t, ann.Announced(), netip.MustParsePrefix("10.200.0.21/32"))
	for _, k := range keysOf(node) {
		assert.NotEqual(t, netip.MustParseAddr("10.200.0.20"), k.Addr, "the retired VIP is out of the data plane")
	}

	// After a restart the agent reads its state: the removal was saved.
	a.Close()
	b := startAgent(t, l, node, ann, nil)
	t.Cleanup(b.Close)
	assert.NotContains(t, b.Specs(), "retired")
	assert.Contains(t, b.Specs(), "live")
}
