package workers

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows"
)

// LoadBalancerMembership adds servers to VIPs and takes them out, by update
// to each VIP's workflow: the VIP's own rollout (canary first, every node)
// does the work, so a server joins exactly as an operator's change would.
type LoadBalancerMembership struct {
	Client    client.Client
	Inventory *inventory.Store
}

// Register registers the membership activities under their stable names.
func (m *LoadBalancerMembership) Register(r interface {
	RegisterActivityWithOptions(a interface{}, options activity.RegisterOptions)
}) {
	r.RegisterActivityWithOptions(m.JoinLoadBalancer, activity.RegisterOptions{Name: activities.JoinLoadBalancerName})
	r.RegisterActivityWithOptions(m.LeaveLoadBalancer, activity.RegisterOptions{Name: activities.LeaveLoadBalancerName})
}

// JoinLoadBalancer makes the server a backend of the VIP (by serial: the
// VIP resolves its host address). Joining again replaces the backend with
// itself.
func (m *LoadBalancerMembership) JoinLoadBalancer(ctx context.Context, in activities.LoadBalancerMembershipInput) error {
	return m.update(ctx, in.VIP, workflows.BackendsInput{Servers: []string{in.Serial}, By: in.Actor})
}

// LeaveLoadBalancer removes the server from the VIP's backends. A server
// that is not a backend (never joined, or left already) is done; so is a
// VIP that no longer exists.
func (m *LoadBalancerMembership) LeaveLoadBalancer(ctx context.Context, in activities.LoadBalancerMembershipInput) error {
	addr, err := m.Inventory.GetHostAddress(ctx, in.Serial)
	if errors.Is(err, inventory.ErrNotFound) || (err == nil && !addr.IsValid()) {
		return nil // no address, so never a backend
	}
	if err != nil {
		return err
	}
	v, err := m.Client.QueryWorkflow(ctx, lbapi.VIPWorkflowID(in.VIP), "", workflows.QueryStatus)
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return nil
	}
	if err != nil {
		return err
	}
	var st workflows.VIPStatus
	if err := v.Get(&st); err != nil {
		return err
	}
	if !hasBackend(st, addr) {
		return nil
	}
	return m.update(ctx, in.VIP, workflows.BackendsInput{Remove: []string{addr.String()}, By: in.Actor})
}

func hasBackend(st workflows.VIPStatus, addr netip.Addr) bool {
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
func (m *LoadBalancerMembership) update(ctx context.Context, vip string, in workflows.BackendsInput) error {
	stop := heartbeatEvery(ctx, 10*time.Second)
	defer stop()
	h, err := m.Client.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
		WorkflowID: lbapi.VIPWorkflowID(vip), UpdateName: workflows.UpdateBackends, Args: []any{in},
		WaitForStage: client.WorkflowUpdateStageCompleted,
	})
	if err == nil {
		err = h.Get(ctx, nil)
	}
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return temporal.NewNonRetryableApplicationError(fmt.Sprintf("no running VIP %s", vip), activities.ErrTypeNoSuchVIP, err)
	}
	if err != nil {
		return fmt.Errorf("VIP %s: %w", vip, err)
	}
	return nil
}

// heartbeatEvery keeps a long update wait alive for Temporal.
func heartbeatEvery(ctx context.Context, d time.Duration) (stop func()) {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}
