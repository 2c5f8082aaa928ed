package cloud

import (
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/nodes"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/ports"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEnrollManageProvideReachesAvailable(t *testing.T) {
	c := newIronic(t)
	ctx := testContext(t)
	spec := fakeSpec(serialFor(t))

	n, err := c.EnrollNode(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, StateEnroll, n.ProvisionState)

	got, err := c.GetNode(ctx, spec.Serial)
	require.NoError(t, err)
	assert.Equal(t, n.UUID, got.UUID)
	assert.Equal(t, "fake-hardware", got.HardwareType)
	assert.Equal(t, map[string]any{
		"redfish_address":   "https://10.1.0.7",
		"redfish_system_id": "/redfish/v1/Systems/1",
		"redfish_username":  "admin",
		"redfish_verify_ca": true,
	}, got.DriverInfo, "driver_info without the password")
	assert.Equal(t, map[string]any{"cpus": 64.0, "memory_mb": 524288.0, "local_gb": 1800.0, "cpu_arch": "x86_64"}, got.Properties)
	assert.Equal(t, "baremetal.gp-large", got.ResourceClass)
	require.NotNil(t, got.AutomatedClean)
	assert.False(t, *got.AutomatedClean, "wiping is the lifecycle's, not Ironic's")
	assert.Equal(t, "dc1/A/R07", got.Extra["failure_domain"])
	assert.Equal(t, "R07", got.Extra["rack"])
	assert.Equal(t, []string{testMAC(spec.Serial, 1), testMAC(spec.Serial, 2)}, got.MACs)

	n, err = c.Manage(ctx, spec.Serial)
	require.NoError(t, err)
	assert.Equal(t, StateManageable, n.ProvisionState)
	n, err = c.Provide(ctx, spec.Serial)
	require.NoError(t, err)
	assert.Equal(t, StateAvailable, n.ProvisionState)
	assert.Empty(t, n.LastError)

	// Every step again, as a retried activity would: nothing moves back.
	n, err = c.Provide(ctx, spec.Serial)
	require.NoError(t, err)
	assert.Equal(t, StateAvailable, n.ProvisionState)
	n, err = c.Register(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, StateAvailable, n.ProvisionState)
	assert.Equal(t, []string{testMAC(spec.Serial, 1), testMAC(spec.Serial, 2)}, n.MACs)
}

func TestProvideBeforeManageIsRefusedAndChangesNothing(t *testing.T) {
	c := newIronic(t)
	ctx := testContext(t)
	spec := fakeSpec(serialFor(t))
	_, err := c.EnrollNode(ctx, spec)
	require.NoError(t, err)

	_, err = c.Provide(ctx, spec.Serial)
	require.Error(t, err)
	assert.False(t, IsRetryable(err))
	assert.Contains(t, err.Error(), "manage it first")
	n, err := c.GetNode(ctx, spec.Serial)
	require.NoError(t, err)
	assert.Equal(t, StateEnroll, n.ProvisionState)
}

func TestEnrollAgainReconcilesInsteadOfDuplicating(t *testing.T) {
	c := newIronic(t)
	ctx := testContext(t)
	spec := fakeSpec(serialFor(t))
	first, err := c.Register(ctx, spec)
	require.NoError(t, err)

	// Someone else's keys and a stray port, added behind metalflow's back.
	_, err = nodes.Update(ctx, c.client, first.UUID, nodes.UpdateOpts{
		nodes.UpdateOperation{Op: nodes.AddOp, Path: "/extra/ticket", Value: "OPS-12"},
		nodes.UpdateOperation{Op: nodes.ReplaceOp, Path: "/resource_class", Value: "wrong"},
		nodes.UpdateOperation{Op: nodes.ReplaceOp, Path: "/automated_clean", Value: true},
	}).Extract()
	require.NoError(t, err)
	_, err = ports.Create(ctx, c.client, ports.CreateOpts{NodeUUID: first.UUID, Address: testMAC(spec.Serial, 99)}).Extract()
	require.NoError(t, err)

	// The server came back from repair with more memory, one NIC swapped
	// and its BMC on a new address.
	spec.MemoryMiB = 1048576
	spec.BMC.Address = "https://10.1.9.7"
	spec.MACs = []string{testMAC(spec.Serial, 2), testMAC(spec.Serial, 3)}
	second, err := c.EnrollNode(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, first.UUID, second.UUID, "same node, not a new one")
	assert.Equal(t, StateAvailable, second.ProvisionState, "reconciling does not move the node")

	got, err := c.GetNode(ctx, spec.Serial)
	require.NoError(t, err)
	assert.Equal(t, []string{testMAC(spec.Serial, 2), testMAC(spec.Serial, 3)}, got.MACs)
	assert.Equal(t, 1048576.0, got.Properties["memory_mb"])
	assert.Equal(t, "https://10.1.9.7", got.DriverInfo["redfish_address"])
	assert.Equal(t, "baremetal.gp-large", got.ResourceClass)
	require.NotNil(t, got.AutomatedClean)
	assert.False(t, *got.AutomatedClean)
	assert.Equal(t, "OPS-12", got.Extra["ticket"], "keys metalflow does not own are kept")
	assert.Equal(t, 1, countNodesNamed(t, c, spec.Serial))
}

func TestConcurrentEnrollsMakeOneNode(t *testing.T) {
	c := newIronic(t)
	ctx := testContext(t)
	spec := fakeSpec(serialFor(t))
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, errs[i] = c.EnrollNode(ctx, spec) })
	}
	wg.Wait()
	for _, err := range errs {
		// Racing patches meet Ironic's node lock; that is retryable.
		if err != nil {
			assert.True(t, IsRetryable(err), "%v", err)
		}
	}
	assert.Equal(t, 1, countNodesNamed(t, c, spec.Serial))
	_, err := c.EnrollNode(ctx, spec)
	require.NoError(t, err, "the retry succeeds")
	got, err := c.GetNode(ctx, spec.Serial)
	require.NoError(t, err)
	assert.Equal(t, []string{testMAC(spec.Serial, 1), testMAC(spec.Serial, 2)}, got.MACs)
}

func countNodesNamed(t *testing.T, c *Ironic, name string) int {
	t.Helper()
	page, err := nodes.List(c.client, nodes.ListOpts{}).AllPages(context.Background())
	require.NoError(t, err)
	all, err := nodes.ExtractNodes(page)
	require.NoError(t, err)
	count := 0
	for _, n := range all {
		if n.Name == name {
			count++
		}
	}
	return count
}

func TestMACOnAnotherNodeIsAConflictForAHuman(t *testing.T) {
	c := newIronic(t)
	ctx := testContext(t)
	a := fakeSpec(serialFor(t) + "-a")
	shared := testMAC(a.Serial, 1)
	_, err := c.EnrollNode(ctx, a)
	require.NoError(t, err)

	b := fakeSpec(serialFor(t) + "-b")
	b.MACs = []string{shared}
	_, err = c.EnrollNode(ctx, b)
	require.Error(t, err)
	assert.Equal(t, Conflict, KindOf(err))
	assert.False(t, IsRetryable(err))
	assert.Contains(t, err.Error(), shared)
}

func TestSetOwnerAndLessee(t *testing.T) {
	c := newIronic(t)
	ctx := testContext(t)
	spec := fakeSpec(serialFor(t))
	_, err := c.Register(ctx, spec)
	require.NoError(t, err)

	n, err := c.SetOwner(ctx, spec.Serial, "project-blue", "project-green")
	require.NoError(t, err)
	assert.Equal(t, "project-blue", n.Owner)
	assert.Equal(t, "project-green", n.Lessee)

	n, err = c.SetOwner(ctx, spec.Serial, "project-blue", "project-green")
	require.NoError(t, err, "setting the same owner twice")
	assert.Equal(t, "project-blue", n.Owner)

	n, err = c.SetOwner(ctx, spec.Serial, "project-blue", "")
	require.NoError(t, err)
	got, err := c.GetNode(ctx, spec.Serial)
	require.NoError(t, err)
	assert.Equal(t, "project-blue", got.Owner)
	assert.Empty(t, got.Lessee)
	assert.Equal(t, StateAvailable, got.ProvisionState)

	_, err = c.SetOwner(ctx, "SN-nobody-has-this", "p", "")
	assert.True(t, IsNotFound(err), "%v", err)
}

func TestDeleteNodeTwice(t *testing.T) {
	c := newIronic(t)
	ctx := testContext(t)
	spec := fakeSpec(serialFor(t))
	spec.MACs = []string{testMAC(spec.Serial, 1)}
	_, err := c.Register(ctx, spec)
	require.NoError(t, err)

	require.NoError(t, c.DeleteNode(ctx, spec.Serial), "available node is managed, then deleted")
	_, err = c.GetNode(ctx, spec.Serial)
	assert.True(t, IsNotFound(err), "%v", err)
	page, err := ports.ListDetail(c.client, ports.ListOpts{Address: testMAC(spec.Serial, 1)}).AllPages(ctx)
	require.NoError(t, err)
	left, err := ports.ExtractPorts(page)
	require.NoError(t, err)
	assert.Empty(t, left, "the node's ports went with it")

	require.NoError(t, c.DeleteNode(ctx, spec.Serial), "deleting a deleted node is success")

	// The serial can be enrolled afresh afterwards.
	n, err := c.EnrollNode(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, StateEnroll, n.ProvisionState)
}

func TestDeleteRefusesADeployedNode(t *testing.T) {
	c := newIronic(t)
	ctx := testContext(t)
	spec := fakeSpec(serialFor(t))
	n, err := c.Register(ctx, spec)
	require.NoError(t, err)
	// A tenant deploys on it (fake deploy interface: no image needed).
	require.NoError(t, nodes.ChangeProvisionState(ctx, c.client, n.UUID, nodes.ProvisionStateOpts{Target: nodes.TargetActive}).ExtractErr())
	_, err = c.settle(ctx, "deploy", spec.Serial)
	require.NoError(t, err)

	err = c.DeleteNode(ctx, spec.Serial)
	require.Error(t, err)
	assert.Equal(t, Conflict, KindOf(err))
	got, err := c.GetNode(ctx, spec.Serial)
	require.NoError(t, err)
	assert.Equal(t, StateActive, got.ProvisionState, "still deployed")
}

func TestIronicDownIsRetryableAndResumes(t *testing.T) {
	c := newIronic(t)
	ctx := testContext(t)
	spec := fakeSpec(serialFor(t))
	_, err := c.EnrollNode(ctx, spec)
	require.NoError(t, err)

	ironicServer.Halt()
	t.Cleanup(func() { _ = ironicServer.Resume() })
	for name, call := range map[string]func() error{
		"enroll": func() error { _, err := c.EnrollNode(ctx, spec); return err },
		"manage": func() error { _, err := c.Manage(ctx, spec.Serial); return err },
		"get":    func() error { _, err := c.GetNode(ctx, spec.Serial); return err },
		"delete": func() error { return c.DeleteNode(ctx, spec.Serial) },
	} {
		err := call()
		require.Error(t, err, name)
		assert.True(t, IsRetryable(err), "%s: %v", name, err)
		assert.NotContains(t, err.Error(), spec.BMC.Password)
	}

	require.NoError(t, ironicServer.Resume())
	n, err := c.Register(ctx, spec)
	require.NoError(t, err, "the retry after Ironic is back completes")
	assert.Equal(t, StateAvailable, n.ProvisionState)
	assert.Equal(t, 1, countNodesNamed(t, c, spec.Serial))
}

// A hung Ironic (frozen, port open, no answers) costs the caller its own
// deadline, and the error is retryable.
func TestHungIronicMeetsTheCallersDeadline(t *testing.T) {
	c := newIronic(t)
	ctx := testContext(t)
	spec := fakeSpec(serialFor(t))
	_, err := c.EnrollNode(ctx, spec)
	require.NoError(t, err)

	ironicServer.Freeze()
	t.Cleanup(ironicServer.Thaw)
	short, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = c.Manage(short, spec.Serial)
	require.Error(t, err)
	assert.True(t, IsRetryable(err), "%v", err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NoError(t, ctx.Err(), "it was the short deadline that ended the call")

	ironicServer.Thaw()
	n, err := c.Register(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, StateAvailable, n.ProvisionState)
}

// A redfish node whose BMC does not answer: Ironic's manage reads the power
// state through sushy, fails, and puts the node back to enroll.
func TestRedfishWithoutBMCFailsVerificationWithLastError(t *testing.T) {
	c := newIronic(t)
	ctx := testContext(t)
	spec := fakeSpec(serialFor(t))
	spec.HardwareType = HardwareRedfish
	spec.BMC.Address = "http://" + closedPort(t)

	_, err := c.Register(ctx, spec)
	require.Error(t, err)
	assert.Equal(t, Failed, KindOf(err))
	assert.False(t, IsRetryable(err))
	assert.Contains(t, LastErrorOf(err), "Redfish connection failed")
	assert.Contains(t, err.Error(), "Redfish connection failed", "last_error is in the message staff see")
	assert.NotContains(t, err.Error(), spec.BMC.Password)

	n, err := c.GetNode(ctx, spec.Serial)
	require.NoError(t, err)
	assert.Equal(t, StateEnroll, n.ProvisionState)
	assert.Equal(t, "redfish", n.HardwareType)
	assert.Equal(t, spec.BMC.Address, n.DriverInfo["redfish_address"])

	// Retrying unchanged fails the same way: it needs a fix, not a retry.
	_, err = c.Manage(ctx, spec.Serial)
	assert.Equal(t, Failed, KindOf(err))
}

// closedPort is a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	return addr
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	c := newIronic(t)
	ctx := testContext(t)
	base := serialFor(t)
	cases := map[string]func(*NodeSpec){
		"bad MAC":                                    func(s *NodeSpec) { s.MACs = []string{"52:54:00:zz:00:01"} },
		"MAC twice":                                  func(s *NodeSpec) { s.MACs = []string{"52:54:00:aa:00:01", "52:54:00:AA:00:01"} },
		"negative memory":                            func(s *NodeSpec) { s.MemoryMiB = -1 },
		"redfish without URL":                        func(s *NodeSpec) { s.HardwareType = HardwareRedfish; s.BMC.Address = "10.0.0.5" },
		"redfish no password":                        func(s *NodeSpec) { s.HardwareType = HardwareRedfish; s.BMC.Password = "" },
		"bad system ID":                              func(s *NodeSpec) { s.HardwareType = HardwareRedfish; s.BMC.SystemID = "Systems/1" },
		"bad conductor group":                        func(s *NodeSpec) { s.ConductorGroup = "rack R07" },
		"unknown hardware type (Ironic refuses)":     func(s *NodeSpec) { s.HardwareType = "no-such-hardware" },
		"group no conductor serves (Ironic refuses)": func(s *NodeSpec) { s.ConductorGroup = "dc9" },
	}
	i := 0
	for name, mutate := range cases {
		i++
		t.Run(name, func(t *testing.T) {
			spec := fakeSpec(base + "-" + strconv.Itoa(i))
			mutate(&spec)
			_, err := c.EnrollNode(ctx, spec)
			require.Error(t, err)
			assert.Equal(t, Invalid, KindOf(err), "%v", err)
			assert.False(t, IsRetryable(err))
			assert.NotContains(t, err.Error(), "s3cret")
			_, err = c.GetNode(ctx, spec.Serial)
			assert.True(t, IsNotFound(err), "no node was created: %v", err)
		})
	}
	_, err := c.EnrollNode(ctx, NodeSpec{Serial: "has space"})
	assert.Equal(t, Invalid, KindOf(err))
	assert.True(t, strings.Contains(err.Error(), "serial"), "%v", err)
}
