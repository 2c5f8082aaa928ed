//go:build !agent

package main

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/internal/devserver"
	"github.com/metalflow/metalflow/internal/netlab"
	"github.com/metalflow/metalflow/lbnode"
	"github.com/metalflow/metalflow/lbnode/agent"
	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// Test workflows standing in for the VIP workflow (written elsewhere): they
// drive the node through its task queue exactly as that workflow will.
const (
	testQueue        = "lbnode-test"
	testMainQueue    = "lbnode-test-main"
	testApplyName    = "LBTestApply"
	testAwaitHealthN = "LBTestAwaitHealth"
	testWantsName    = "LBTestWants"
)

func lbTestApply(ctx workflow.Context, queue string, spec lbapi.VIPSpec) (lbapi.ApplyVIPResult, error) {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		TaskQueue: queue, StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3},
	})
	var res lbapi.ApplyVIPResult
	err := workflow.ExecuteActivity(ctx, lbapi.ApplyVIPName, lbapi.ApplyVIPInput{Spec: spec}).Get(ctx, &res)
	return res, err
}

func lbTestAwaitHealth(ctx workflow.Context) (lbapi.BackendHealthChange, error) {
	var c lbapi.BackendHealthChange
	workflow.GetSignalChannel(ctx, lbapi.SignalBackendHealth).Receive(ctx, &c)
	return c, nil
}

// lbTestWants wants its VIP on node only, until terminated.
func lbTestWants(ctx workflow.Context, node string) error {
	if err := workflow.SetQueryHandler(ctx, lbapi.QueryWantsNode, func(in lbapi.WantsNodeInput) (bool, error) {
		return in.Node == node, nil
	}); err != nil {
		return err
	}
	return workflow.Await(ctx, func() bool { return false })
}

// heartbeats reads the heartbeats signalled to the node's registry
// workflow, and the workflow's type and queue as started.
func heartbeats(t *testing.T, c client.Client) (hbs []lbapi.NodeHeartbeat, wfType, queue string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	iter := c.GetWorkflowHistory(ctx, lbapi.RegistryWorkflowID("c1", "lb1"), "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	dc := converter.GetDefaultDataConverter()
	for iter.HasNext() {
		ev, err := iter.Next()
		if err != nil {
			return nil, "", ""
		}
		if a := ev.GetWorkflowExecutionStartedEventAttributes(); a != nil {
			wfType, queue = a.GetWorkflowType().GetName(), a.GetTaskQueue().GetName()
		}
		if a := ev.GetWorkflowExecutionSignaledEventAttributes(); a != nil && a.GetSignalName() == lbapi.SignalHeartbeat {
			var hb lbapi.NodeHeartbeat
			require.NoError(t, dc.FromPayloads(a.GetInput(), &hb))
			hbs = append(hbs, hb)
		}
	}
	return hbs, wfType, queue
}

// TestLBNodeAgentWithTemporal runs the node's worker against a real
// (embedded) Temporal server: a workflow applies a VIP through the node's
// queue, the node registers and heartbeats, a backend's health reaches the
// VIP's workflow as a signal, and shutdown sends a last "stopping"
// heartbeat.
func TestLBNodeAgentWithTemporal(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the Temporal test in -short mode")
	}
	l := netlab.New(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	frontend := ln.Addr().String()
	ln.Close()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := devserver.Start(devserver.Options{FrontendAddress: frontend, Namespace: "default", Logger: log, LogLevel: slog.LevelError})
	require.NoError(t, err)
	t.Cleanup(func() { _ = srv.Stop() })
	c, err := client.Dial(client.Options{HostPort: srv.FrontendAddress(), Namespace: "default"})
	require.NoError(t, err)
	t.Cleanup(c.Close)

	solo := newSoloNode(t, l, "10.31.0")
	var node *lbnode.Node
	l.MustCall(solo.ns, func() {
		node, err = lbnode.Open(lbnode.Config{Interface: solo.iface, Mode: lbnode.AttachGeneric, PinRoot: solo.pins,
			NextHopMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}})
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = node.Close() })

	a, err := agent.New(context.Background(), agent.Config{
		Node: node, Cluster: "c1", NodeName: "lb1", FailureDomain: "rack-a", Capacity: 4,
		StateDir: t.TempDir(), Logger: log, Reporter: agent.TemporalReporter{Client: c, Logger: log},
		HeartbeatInterval: 100 * time.Millisecond, MainTaskQueue: testMainQueue,
	})
	require.NoError(t, err)
	t.Cleanup(a.Close)
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- a.Run(runCtx, c) }()

	w := worker.New(c, testQueue, worker.Options{})
	w.RegisterWorkflowWithOptions(lbTestApply, workflow.RegisterOptions{Name: testApplyName})
	w.RegisterWorkflowWithOptions(lbTestAwaitHealth, workflow.RegisterOptions{Name: testAwaitHealthN})
	w.RegisterWorkflowWithOptions(lbTestWants, workflow.RegisterOptions{Name: testWantsName})
	require.NoError(t, w.Start())
	t.Cleanup(w.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	backend, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { backend.Close() })
	go func() {
		for {
			conn, err := backend.Accept()
			if err != nil {
				return
			}
			conn.Close()
		}
	}()
	_, port, _ := net.SplitHostPort(backend.Addr().String())
	portN, _ := strconv.Atoi(port)

	// The VIP's workflow is there before the node reports on it.
	await, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: lbapi.VIPWorkflowID("web"), TaskQueue: testQueue}, testAwaitHealthN)
	require.NoError(t, err)

	spec := lbapi.VIPSpec{Name: "web", Address: "10.201.0.10", Protocol: "tcp", Ports: []uint16{uint16(portN)},
		Backends:    []lbapi.Backend{{Address: "127.0.0.1", Weight: 100}},
		HealthCheck: &lbapi.HealthCheck{Kind: "tcp", IntervalMS: 10, Rise: 1}}
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: testQueue}, testApplyName, a.TaskQueue(), spec)
	require.NoError(t, err)
	var res lbapi.ApplyVIPResult
	require.NoError(t, run.Get(ctx, &res))
	assert.Equal(t, lbapi.Digest(spec), res.Digest)
	assert.True(t, res.Changed)
	assert.Equal(t, "lb1", res.Node)
	assert.Len(t, node.VIPs(), 1)

	t.Run("an invalid spec fails the activity without retries", func(t *testing.T) {
		bad := spec
		bad.Protocol = "sctp"
		run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{TaskQueue: testQueue}, testApplyName, a.TaskQueue(), bad)
		require.NoError(t, err)
		err = run.Get(ctx, nil)
		var appErr *temporal.ApplicationError
		require.True(t, errors.As(err, &appErr), "got %v", err)
		assert.Equal(t, agent.ErrInvalidSpec, appErr.Type())
		assert.True(t, appErr.NonRetryable())
		assert.Len(t, node.VIPs(), 1)
	})

	t.Run("the backend's health reaches the VIP's workflow", func(t *testing.T) {
		var change lbapi.BackendHealthChange
		require.NoError(t, await.Get(ctx, &change))
		assert.Equal(t, "web", change.VIP)
		assert.Equal(t, "127.0.0.1", change.Backend)
		assert.True(t, change.Healthy)
		assert.Equal(t, "c1", change.Cluster)
		assert.Equal(t, "lb1", change.Node)
		// A VIP without a workflow is logged, not an error.
		require.NoError(t, agent.TemporalReporter{Client: c, Logger: log}.ReportBackendHealth(ctx,
			lbapi.BackendHealthChange{VIP: "nobody", Backend: "127.0.0.1", Healthy: true}))
	})

	t.Run("the node registers and heartbeats", func(t *testing.T) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			hbs, wfType, queue := heartbeats(t, c)
			if len(hbs) > 0 && hbs[len(hbs)-1].VIPs == 1 {
				last := hbs[len(hbs)-1]
				assert.Equal(t, lbapi.RegistryWorkflowName, wfType)
				assert.Equal(t, testMainQueue, queue)
				assert.Equal(t, "rack-a", last.FailureDomain)
				assert.Equal(t, 4, last.Capacity)
				assert.True(t, last.Healthy)
				assert.False(t, last.Stopping)
				break
			}
			require.True(t, time.Now().Before(deadline), "no heartbeat with the VIP counted")
			time.Sleep(50 * time.Millisecond)
		}
	})

	t.Run("shutdown sends a last heartbeat saying so", func(t *testing.T) {
		stop()
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-ctx.Done():
			t.Fatal("the worker did not stop")
		}
		hbs, _, _ := heartbeats(t, c)
		require.NotEmpty(t, hbs)
		assert.True(t, hbs[len(hbs)-1].Stopping)
		assert.Len(t, node.VIPs(), 1, "the data plane keeps its VIPs")
		assert.Equal(t, netip.MustParseAddr("10.201.0.10"), node.VIPs()[0].Addr)
	})

	t.Run("a VIP its workflow does not want here is removed", func(t *testing.T) {
		// web's workflow (the health stand-in) ended when it got its
		// report; still's runs but answers no wants-node query (an older
		// metalflow); moved's wants it on other nodes only; nobody's never
		// existed, which is not taken as unwanted.
		still, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: lbapi.VIPWorkflowID("still"), TaskQueue: testQueue}, testAwaitHealthN)
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.TerminateWorkflow(context.Background(), still.GetID(), "", "test over") })
		moved, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: lbapi.VIPWorkflowID("moved"), TaskQueue: testQueue}, testWantsName, "lb2")
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.TerminateWorkflow(context.Background(), moved.GetID(), "", "test over") })
		vips := agent.TemporalVIPWorkflows{Client: c}
		for vip, want := range map[string]bool{"web": false, "still": true, "moved": false, "nobody": true} {
			wants, err := vips.Wants(ctx, vip, "c1", "lb1")
			require.NoError(t, err, vip)
			assert.Equal(t, want, wants, vip)
		}
		wants, err := vips.Wants(ctx, "moved", "c1", "lb2")
		require.NoError(t, err)
		assert.True(t, wants, "moved wants lb2")
		removed, err := a.RemoveUnwanted(ctx, vips)
		require.NoError(t, err)
		assert.Equal(t, []string{"web"}, removed)
		assert.Empty(t, node.VIPs(), "the ended VIP is out of the data plane")
		assert.Empty(t, a.Specs(), "and out of the saved state")
	})
}
