package cloud

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/nodes"
)

// Ironic provision states this package steers between.
const (
	StateEnroll     = "enroll"
	StateVerifying  = "verifying"
	StateManageable = "manageable"
	StateAvailable  = "available"
	StateActive     = "active"
)

// GetNode returns the server's node; a missing node is a NotFound error.
func (c *Ironic) GetNode(ctx context.Context, serial string) (Node, error) {
	n, err := c.get(ctx, "get", serial)
	if err != nil {
		return Node{}, err
	}
	ports, err := c.listPorts(ctx, n.UUID)
	if err != nil {
		return Node{}, classify("get", serial, err)
	}
	macs := make([]string, 0, len(ports))
	for mac := range ports {
		macs = append(macs, mac)
	}
	slices.Sort(macs)
	return nodeOf(n, macs), nil
}

func (c *Ironic) get(ctx context.Context, op, serial string) (*nodes.Node, error) {
	if !validSerial(serial) {
		return nil, newError(Invalid, op, serial, "not a valid serial", nil)
	}
	n, err := nodes.Get(ctx, c.client, serial).Extract()
	if err != nil {
		return nil, classify(op, serial, err)
	}
	return n, nil
}

// Manage moves the node to `manageable`, which for the redfish hardware
// type makes Ironic reach the BMC (it reads the power state through sushy).
// It waits until the transition ends or ctx is done. A node already
// manageable is left alone; one that fails verification goes back to
// `enroll` and Manage returns a Failed error carrying Ironic's last_error.
func (c *Ironic) Manage(ctx context.Context, serial string) (Node, error) {
	return c.moveTo(ctx, "manage", serial, StateManageable, func(state string) (nodes.TargetProvisionState, error) {
		switch state {
		case StateEnroll, StateAvailable, "inspect failed", "clean failed", "adopt failed":
			return nodes.TargetManage, nil
		}
		return "", fmt.Errorf("cannot manage a node in state %q", state)
	})
}

// Provide moves a manageable node to `available` (through cleaning, which
// this deployment leaves to the lifecycle's own RAID and wipe steps). A node
// already available is left alone; a node still in `enroll` must be managed
// first.
func (c *Ironic) Provide(ctx context.Context, serial string) (Node, error) {
	return c.moveTo(ctx, "provide", serial, StateAvailable, func(state string) (nodes.TargetProvisionState, error) {
		if state == StateManageable {
			return nodes.TargetProvide, nil
		}
		if state == StateEnroll {
			return "", fmt.Errorf("node is still in %q: manage it first", state)
		}
		return "", fmt.Errorf("cannot provide a node in state %q", state)
	})
}

// Register enrolls (or reconciles) the node and brings it to `available`,
// doing only the steps still missing: what the lifecycle's RegisterCloud
// step needs, safe to repeat. A node already `active` (deployed by a
// tenant) is reconciled but not moved.
func (c *Ironic) Register(ctx context.Context, spec NodeSpec) (Node, error) {
	n, err := c.EnrollNode(ctx, spec)
	if err != nil {
		return n, err
	}
	macs := n.MACs
	if n.ProvisionState == StateActive {
		return n, nil
	}
	if n.ProvisionState != StateManageable && n.ProvisionState != StateAvailable {
		if n, err = c.Manage(ctx, n.Serial); err != nil {
			return n, err
		}
	}
	if n.ProvisionState != StateAvailable {
		if n, err = c.Provide(ctx, n.Serial); err != nil {
			return n, err
		}
	}
	n.MACs = macs
	return n, nil
}

// moveTo drives the node to want. next says which provision action leads
// there from a settled state, or why none does.
func (c *Ironic) moveTo(ctx context.Context, op, serial, want string,
	next func(state string) (nodes.TargetProvisionState, error),
) (Node, error) {
	n, err := c.settle(ctx, op, serial)
	if err != nil {
		return Node{}, err
	}
	if n.ProvisionState == want {
		return nodeOf(n, nil), nil
	}
	target, err := next(n.ProvisionState)
	if err != nil {
		return nodeOf(n, nil), &Error{Kind: Conflict, Op: op, Node: serial, msg: err.Error(), LastError: n.LastError}
	}
	err = nodes.ChangeProvisionState(ctx, c.client, n.UUID, nodes.ProvisionStateOpts{Target: target}).ExtractErr()
	if err != nil {
		return nodeOf(n, nil), classify(op, serial, err)
	}
	if n, err = c.settle(ctx, op, serial); err != nil {
		return Node{}, err
	}
	if n.ProvisionState != want {
		e := &Error{Kind: Failed, Op: op, Node: serial, LastError: n.LastError,
			msg: fmt.Sprintf("node ended in %q instead of %q", n.ProvisionState, want)}
		return nodeOf(n, nil), e
	}
	return nodeOf(n, nil), nil
}

// settle waits until no transition is under way on the node, polling at
// the client's interval until ctx is done. Ironic clears last_error when a
// transition starts, so a last_error seen once settled is this attempt's.
func (c *Ironic) settle(ctx context.Context, op, serial string) (*nodes.Node, error) {
	ticker := time.NewTicker(c.poll)
	defer ticker.Stop()
	for {
		n, err := c.get(ctx, op, serial)
		if err != nil {
			return nil, err
		}
		if n.TargetProvisionState == "" && !strings.HasSuffix(n.ProvisionState, "ing") && n.ProvisionState != "clean wait" {
			return n, nil
		}
		select {
		case <-ctx.Done():
			e := &Error{Kind: Transient, Op: op, Node: serial, cause: ctx.Err(), LastError: n.LastError,
				msg: fmt.Sprintf("still %q towards %q when the deadline passed", n.ProvisionState, n.TargetProvisionState)}
			return nil, e
		case <-ticker.C:
		}
	}
}

// SetOwner makes project owner the node's owner and lessee its lessee
// (Ironic's multi-tenancy: the owner's project sees and manages the node,
// the lessee's may deploy on it). Empty strings clear them. Only fields that
// differ are patched.
func (c *Ironic) SetOwner(ctx context.Context, serial, owner, lessee string) (Node, error) {
	n, err := c.get(ctx, "set owner", serial)
	if err != nil {
		return Node{}, err
	}
	var patch nodes.UpdateOpts
	for _, f := range []struct{ path, have, want string }{
		{"/owner", n.Owner, owner},
		{"/lessee", n.Lessee, lessee},
	} {
		switch {
		case f.have == f.want:
		case f.want == "":
			patch = append(patch, nodes.UpdateOperation{Op: nodes.RemoveOp, Path: f.path})
		default:
			patch = append(patch, nodes.UpdateOperation{Op: nodes.ReplaceOp, Path: f.path, Value: f.want})
		}
	}
	if len(patch) > 0 {
		if n, err = nodes.Update(ctx, c.client, n.UUID, patch).Extract(); err != nil {
			return Node{}, classify("set owner", serial, err)
		}
	}
	return nodeOf(n, nil), nil
}

// DeleteNode removes the server's node and its ports. Ironic deletes only
// nodes in enroll or manageable, so an available node is managed first. A
// missing node is success: the decommission step may run twice. A node that
// is deployed (active) is a Conflict: deleting it would pull a tenant's
// running machine from under them.
func (c *Ironic) DeleteNode(ctx context.Context, serial string) error {
	n, err := c.settle(ctx, "delete", serial)
	if IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	switch n.ProvisionState {
	case StateEnroll, StateManageable, "adopt failed":
	case StateAvailable, "clean failed", "inspect failed":
		if _, err := c.Manage(ctx, serial); err != nil {
			return err
		}
	default:
		return &Error{Kind: Conflict, Op: "delete", Node: serial,
			msg: fmt.Sprintf("node is %q; undeploy it before decommissioning", n.ProvisionState)}
	}
	err = nodes.Delete(ctx, c.client, n.UUID).ExtractErr()
	if err != nil && !IsNotFound(classify("delete", serial, err)) {
		return classify("delete", serial, err)
	}
	return nil
}
