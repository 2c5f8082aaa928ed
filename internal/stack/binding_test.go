package stack

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	namespacepb "go.temporal.io/api/namespace/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"

	"github.com/metalflow/metalflow/inventory"
)

// fakeNamespace is a Temporal namespace's data, as DescribeNamespace and
// UpdateNamespace see it.
type fakeNamespace struct {
	data    map[string]string
	down    bool
	updates int
}

func (f *fakeNamespace) DescribeNamespace(ctx context.Context, in *workflowservice.DescribeNamespaceRequest, _ ...grpc.CallOption) (*workflowservice.DescribeNamespaceResponse, error) {
	if f.down {
		return nil, errors.New("connection refused")
	}
	return &workflowservice.DescribeNamespaceResponse{NamespaceInfo: &namespacepb.NamespaceInfo{Name: in.Namespace, Data: f.data}}, nil
}

func (f *fakeNamespace) UpdateNamespace(_ context.Context, in *workflowservice.UpdateNamespaceRequest, _ ...grpc.CallOption) (*workflowservice.UpdateNamespaceResponse, error) {
	f.updates++
	for k, v := range in.GetUpdateInfo().GetData() {
		f.data[k] = v
	}
	return &workflowservice.UpdateNamespaceResponse{}, nil
}

func openInventory(t *testing.T) *inventory.Store {
	t.Helper()
	s, err := inventory.Open(context.Background(), inventory.DialectSQLite, filepath.Join(t.TempDir(), "metalflow.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestBindingRefusesAnotherInventoryUnlessOwner(t *testing.T) {
	ctx, log := context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil))
	ns := &fakeNamespace{data: map[string]string{}}
	api, stray := openInventory(t), openInventory(t)

	first := Binding{Namespace: "default", Inventory: api, Where: "/srv/a/metalflow.db", Wait: time.Second}
	require.NoError(t, first.Check(ctx, log, ns), "an unbound namespace is bound to the first inventory")
	require.NoError(t, first.Check(ctx, log, ns), "the same inventory again")
	require.Equal(t, 1, ns.updates)

	other := Binding{Namespace: "default", Inventory: stray, Where: "/home/u/.metalflow/metalflow.db", Wait: time.Second}
	err := other.Check(ctx, log, ns)
	require.ErrorContains(t, err, "/srv/a/metalflow.db")
	require.ErrorContains(t, err, "/home/u/.metalflow/metalflow.db")
	require.Equal(t, 1, ns.updates, "a refused process changes nothing")

	other.Owner = true
	require.NoError(t, other.Check(ctx, log, ns), "dev, which owns Temporal and the inventory, rebinds")
	require.ErrorContains(t, first.Check(ctx, log, ns), "/home/u/.metalflow/metalflow.db", "and the old one is refused now")
}

func TestBindingLetsGoWhenTemporalIsAway(t *testing.T) {
	ns := &fakeNamespace{data: map[string]string{}, down: true}
	b := Binding{Namespace: "default", Inventory: openInventory(t), Where: "x", Wait: 50 * time.Millisecond}
	require.NoError(t, b.Check(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), ns))
	require.Zero(t, ns.updates)
}
