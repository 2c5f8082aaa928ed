package workers

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// names records what is registered, as a worker would; a worker refuses a
// name registered twice, and so does this.
type names struct {
	t                     *testing.T
	activities, workflows map[string]bool
}

func (n *names) RegisterActivityWithOptions(a interface{}, o activity.RegisterOptions) {
	require.NotNil(n.t, a, o.Name)
	require.False(n.t, n.activities[o.Name] || n.workflows[o.Name], "%s registered twice", o.Name)
	n.activities[o.Name] = true
}

func (n *names) RegisterWorkflowWithOptions(w interface{}, o workflow.RegisterOptions) {
	require.NotNil(n.t, w, o.Name)
	require.False(n.t, n.activities[o.Name] || n.workflows[o.Name], "%s registered twice", o.Name)
	n.workflows[o.Name] = true
}

// contractNames reads every workflow and activity name (a string constant
// called …Name) the contract packages declare, from their source: a name
// added to a contract must be registered on the queue that runs it, or the
// workflow that schedules it waits forever.
func contractNames(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, dir := range []string{"stepapi", "server/serverapi", "rackbatch/batchapi", "vip/vipapi"} {
		files, err := filepath.Glob(filepath.Join("..", "workflows", dir, "*.go"))
		require.NoError(t, err)
		require.NotEmpty(t, files, dir)
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, 0)
			require.NoError(t, err)
			ast.Inspect(file, func(n ast.Node) bool {
				spec, ok := n.(*ast.ValueSpec)
				if !ok {
					return true
				}
				for i, id := range spec.Names {
					if !strings.HasSuffix(id.Name, "Name") || i >= len(spec.Values) {
						continue
					}
					if lit, ok := spec.Values[i].(*ast.BasicLit); ok && lit.Kind == token.STRING {
						v, err := strconv.Unquote(lit.Value)
						require.NoError(t, err)
						out[v] = true
					}
				}
				return true
			})
		}
	}
	return out
}

// The lifecycle queue runs every workflow and activity the contracts name,
// plus the LB node registry (whose name is the lbnode's contract; the
// lbnode's own activities run on the nodes' queues), and nothing else.
func TestLifecycleWorkerRegistersEveryContractName(t *testing.T) {
	got := &names{t: t, activities: map[string]bool{}, workflows: map[string]bool{}}
	registerLifecycle(got, nil, LifecycleDependencies{})

	want := contractNames(t)
	want[lbapi.RegistryWorkflowName] = true
	registered := map[string]bool{}
	for n := range got.activities {
		registered[n] = true
	}
	for n := range got.workflows {
		registered[n] = true
	}
	require.Equal(t, want, registered)
	require.Equal(t, map[string]bool{
		serverapi.ServerLifecycleName: true, serverapi.DecommissionName: true, batchapi.RackBatchName: true,
		vipapi.VIPRolloutName: true, lbapi.RegistryWorkflowName: true,
	}, got.workflows, "the rest are activities")
}
