package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// VIPClient is how a server's membership talks to a VIP's workflow;
// client.Client does it.
type VIPClient interface {
	QueryWorkflow(ctx context.Context, workflowID, runID, queryType string, args ...interface{}) (converter.EncodedValue, error)
	UpdateWorkflow(ctx context.Context, options client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error)
}

// HostAddresses tells a server's host address, which is what a VIP knows
// its backends by.
type HostAddresses interface {
	GetHostAddress(ctx context.Context, serial string) (netip.Addr, error)
}

// LoadBalancerMembership adds servers to VIPs and takes them out, by update
// to each VIP's workflow: the VIP's own rollout (canary first, every node)
// does the work, so a server joins exactly as an operator's change would.
type LoadBalancerMembership struct {
	Client    VIPClient
	Inventory HostAddresses
}

// Register registers the membership activities under their stable names.
func (m *LoadBalancerMembership) Register(r activities.Registrar) {
	r.RegisterActivityWithOptions(m.JoinLoadBalancer, activity.RegisterOptions{Name: serverapi.JoinLoadBalancerName})
	r.RegisterActivityWithOptions(m.LeaveLoadBalancer, activity.RegisterOptions{Name: serverapi.LeaveLoadBalancerName})
}

// JoinLoadBalancer makes the server a backend of the VIP (by serial: the
// VIP resolves its host address). Joining again replaces the backend with
// itself.
func (m *LoadBalancerMembership) JoinLoadBalancer(ctx context.Context, in serverapi.LoadBalancerMembershipInput) error {
	return m.update(ctx, in.VIP, vipapi.BackendsInput{Servers: []string{in.Serial}, By: in.Actor})
}

// LeaveLoadBalancer removes the server from the VIP's backends. A server
// that is not a backend (never joined, or left already) is done; so is a
// VIP that no longer exists.
func (m *LoadBalancerMembership) LeaveLoadBalancer(ctx context.Context, in serverapi.LoadBalancerMembershipInput) error {
	addr, err := m.Inventory.GetHostAddress(ctx, in.Serial)
	if errors.Is(err, inventory.ErrNotFound) || (err == nil && !addr.IsValid()) {
		return nil // no address, so never a backend
	}
	if err != nil {
		return err
	}
	v, err := m.Client.QueryWorkflow(ctx, lbapi.VIPWorkflowID(in.VIP), "", stepapi.QueryStatus)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return err
	}
	var st vipapi.VIPStatus
	if err := v.Get(&st); err != nil {
		return err
	}
	if !hasBackend(st, addr) {
		return nil
	}
	return m.update(ctx, in.VIP, vipapi.BackendsInput{Remove: []string{addr.String()}, By: in.Actor})
}

func hasBackend(st vipapi.VIPStatus, addr netip.Addr) bool {
	for _, b := range st.Backends {
		if a, err := netip.ParseAddr(b.Address); err == nil && a == addr {
			return true
		}
	}
	return false
}

// update sends a backends change and waits for the VIP's rollout of it. A
// VIP busy with another change refuses: that is retried (the error is
// retryable); a VIP that does not exist is not.
func (m *LoadBalancerMembership) update(ctx context.Context, vip string, in vipapi.BackendsInput) error {
	stop := activities.KeepAlive(ctx)
	defer stop()
	h, err := m.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: lbapi.VIPWorkflowID(vip), UpdateName: vipapi.UpdateBackends, Args: []any{in},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("no running VIP %s", vip), stepapi.ErrTypeNoSuchVIP, err)
	}
	if err != nil {
		return fmt.Errorf("VIP %s: %w", vip, err)
	}
	return nil
}
