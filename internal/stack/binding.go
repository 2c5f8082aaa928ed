package stack

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	namespacepb "go.temporal.io/api/namespace/v1"
	"go.temporal.io/api/workflowservice/v1"
	"google.golang.org/grpc"

	"github.com/metalflow/metalflow/inventory"
)

// inventoryDataKey is where a Temporal namespace records the inventory its
// workflows act on, in the namespace's own data.
const inventoryDataKey = "metalflow.inventory"

// inventoryClaim is what the namespace records: the inventory's identity
// and, for people reading the error, where it is.
type inventoryClaim struct {
	ID    string `json:"id"`
	Where string `json:"where"`
}

// Binding ties a Temporal namespace to one inventory. The API, the workers
// and dev all open an inventory of their own from their flags; nothing
// else stops a worker started in another directory from opening a fresh,
// empty one and failing every server the API hands it.
type Binding struct {
	Namespace string
	Inventory *inventory.Store
	// Where is the inventory's location as an operator would name it (a
	// file path, a database URL without its password).
	Where string
	// Owner rebinds a namespace bound to another inventory (dev, which
	// runs both the Temporal server and the inventory, after the operator
	// removed one of them); others refuse to start.
	Owner bool
	// Wait bounds how long Temporal may take to answer; past it the check
	// is skipped with a warning rather than holding the process back.
	Wait time.Duration
}

// namespaceService is the part of Temporal's API a binding uses.
type namespaceService interface {
	DescribeNamespace(ctx context.Context, in *workflowservice.DescribeNamespaceRequest, opts ...grpc.CallOption) (*workflowservice.DescribeNamespaceResponse, error)
	UpdateNamespace(ctx context.Context, in *workflowservice.UpdateNamespaceRequest, opts ...grpc.CallOption) (*workflowservice.UpdateNamespaceResponse, error)
}

// Check binds the namespace to the inventory if it names none, and
// otherwise refuses an inventory other than the one it names. A Temporal
// that does not answer, or does not let this process record the binding
// (a namespace its operators manage), is logged and let go: the check
// protects, it does not gate.
func (b Binding) Check(ctx context.Context, log *slog.Logger, svc namespaceService) error {
	id, err := b.Inventory.Identity(ctx)
	if err != nil {
		return err
	}
	mine := inventoryClaim{ID: id.ID, Where: b.Where}
	ctx, cancel := context.WithTimeout(ctx, b.Wait)
	defer cancel()
	var desc *workflowservice.DescribeNamespaceResponse
	for {
		desc, err = svc.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: b.Namespace})
		if err == nil || ctx.Err() != nil {
			break
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
	if err != nil {
		log.Warn("could not check that this process shares the API's inventory: Temporal did not answer", "namespace", b.Namespace, "error", err)
		return nil
	}
	var bound inventoryClaim
	if raw := desc.GetNamespaceInfo().GetData()[inventoryDataKey]; raw != "" {
		if err := json.Unmarshal([]byte(raw), &bound); err != nil {
			log.Warn("the namespace's inventory binding is unreadable; recording this process's", "namespace", b.Namespace, "value", raw)
			bound = inventoryClaim{}
		}
	}
	switch {
	case bound.ID == mine.ID:
		return nil
	case bound.ID != "" && !b.Owner:
		return fmt.Errorf("this process opened inventory %s (%s), but Temporal namespace %q acts on inventory %s (%s): "+
			"a worker or API on another inventory fails every server it touches. Start it on the same inventory and key: "+
			"the same --data directory as the others (metalflow dev's, .metalflow by default), or the same --inventory-db and --credentials-key",
			mine.ID, mine.Where, b.Namespace, bound.ID, bound.Where)
	}
	raw, err := json.Marshal(mine)
	if err != nil {
		return err
	}
	if _, err := svc.UpdateNamespace(ctx, &workflowservice.UpdateNamespaceRequest{
		Namespace:  b.Namespace,
		UpdateInfo: &namespacepb.UpdateNamespaceInfo{Data: map[string]string{inventoryDataKey: string(raw)}},
	}); err != nil {
		log.Warn("could not record this process's inventory on the namespace; workers on other inventories will not be told apart",
			"namespace", b.Namespace, "error", err)
		return nil
	}
	if bound.ID != "" {
		log.Warn("the namespace acted on another inventory; it now acts on this one", "namespace", b.Namespace,
			"was", bound.ID, "wasAt", bound.Where, "now", mine.ID, "nowAt", mine.Where)
	} else {
		log.Info("namespace bound to this inventory", "namespace", b.Namespace, "inventory", mine.ID, "at", mine.Where)
	}
	return nil
}

// InventoryWhere names an inventory URL for people: a SQLite file's
// absolute path, a PostgreSQL URL without its password.
func InventoryWhere(raw string) string {
	if strings.HasPrefix(raw, "postgres://") || strings.HasPrefix(raw, "postgresql://") {
		u, err := url.Parse(raw)
		if err != nil {
			return "postgres (unreadable URL)"
		}
		return u.Redacted()
	}
	path := strings.TrimPrefix(raw, "sqlite:")
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}
