package server

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/cloud"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// Cloud runs the lifecycle's cloud steps: Ironic registration, Nova
// aggregates, tenant assignment. A nil Ironic or Compute means the worker
// was started without it; the steps then answer Skipped, so the workflow
// records what really happened.
type Cloud struct {
	Ironic      *cloud.Ironic
	Compute     *cloud.Compute
	Inventory   CloudInventory
	Credentials Credentials
	// InsecureBMC makes Ironic accept the BMC's self-signed certificate
	// (redfish_verify_ca=false).
	InsecureBMC bool
	// SiteConductorGroups pins each node to the Ironic conductor group
	// named after its site; off, nodes use the default group (what a
	// standalone Ironic such as scripts/ironic.sh serves).
	SiteConductorGroups bool
}

// CloudInventory is what the cloud steps record on the asset.
type CloudInventory interface {
	RegisterAsset(ctx context.Context, rec inventory.AssetRecord, actor string) (changed bool, err error)
	SetState(ctx context.Context, serial, state, actor, detail string) error
	RecordStep(ctx context.Context, serial, key, actor, action, detail string) error
}

// Register registers the cloud steps under their stable names. They are
// registered even without Ironic: they then report the step skipped, which
// a workflow needs to hear from the worker that runs it.
func (c *Cloud) Register(r activities.Registrar) {
	activities.RegisterByName(r, map[string]any{
		serverapi.RegisterCloudName:   c.RegisterCloud,
		serverapi.JoinAggregateName:   c.JoinAggregate,
		serverapi.AssignTenantName:    c.AssignTenant,
		serverapi.LeaveAggregateName:  c.LeaveAggregate,
		serverapi.DeleteCloudNodeName: c.DeleteCloudNode,
	})
}

// RegisterCloud enrolls the server in Ironic (or reconciles the node that
// already carries its serial), lets Ironic verify the BMC itself through
// sushy (manage) and offers the node for scheduling (provide), ending in
// `available`. Every part is idempotent, so a retried activity finishes
// what the last attempt left.
func (c *Cloud) RegisterCloud(ctx context.Context, in serverapi.RegisterCloudInput) (serverapi.CloudStepResult, error) {
	if c.Ironic == nil {
		return serverapi.CloudStepResult{Skipped: true, Note: serverapi.NoteNoIronic}, nil
	}
	cred, err := c.Credentials.Get(ctx, in.BMC.CredentialRef)
	if errors.Is(err, credentials.ErrUnknownRef) {
		return serverapi.CloudStepResult{}, temporal.NewNonRetryableApplicationError(err.Error(), stepapi.ErrTypeCredentialMissing, nil)
	}
	if err != nil {
		return serverapi.CloudStepResult{}, err
	}
	domain := cloud.FailureDomain{Site: in.Site, Room: in.Room, Rack: in.Rack}
	spec := cloud.NodeSpec{
		Serial: in.Serial,
		BMC: cloud.BMC{
			Address: in.BMC.Address, Username: cred.Username, Password: cred.Password,
			InsecureSkipVerify: c.InsecureBMC,
		},
		CPUs: in.CPUs, MemoryMiB: in.MemoryMiB, LocalGB: in.LocalGB, CPUArch: ironicCPUArch(in.CPUArch),
		ResourceClass: in.ResourceClass,
		FailureDomain: domain,
		MACs:          in.MACs,
	}
	if c.SiteConductorGroups {
		spec.ConductorGroup = domain.ConductorGroup()
	}
	stop := activities.KeepAlive(ctx)
	n, err := c.Ironic.Register(ctx, spec)
	stop()
	if err != nil {
		return serverapi.CloudStepResult{}, cloudError(err)
	}
	if err := c.Inventory.SetState(ctx, in.Serial, "cloud-available", in.Actor,
		fmt.Sprintf("Ironic node %s %s in %s, power %s", n.UUID, n.ProvisionState, domain, n.PowerState)); err != nil {
		return serverapi.CloudStepResult{}, activities.InventoryError(err)
	}
	return serverapi.CloudStepResult{NodeUUID: n.UUID, ProvisionState: n.ProvisionState, PowerState: n.PowerState}, nil
}

// JoinAggregate adds the host to the Nova aggregate of its rack, creating
// the aggregate with the site's availability zone if it is the first.
// Nova not knowing the host yet (nova-compute still starting) is retried.
func (c *Cloud) JoinAggregate(ctx context.Context, in serverapi.JoinAggregateInput) (serverapi.CloudStepResult, error) {
	if c.Compute == nil {
		return serverapi.CloudStepResult{Skipped: true, Note: serverapi.NoteNoNova}, nil
	}
	agg := cloud.FailureDomain{Site: in.Site, Room: in.Room, Rack: in.Rack}.Aggregate()
	stop := activities.KeepAlive(ctx)
	defer stop()
	if err := c.Compute.AddHostToAggregate(ctx, agg, in.Host); err != nil {
		return serverapi.CloudStepResult{}, cloudError(err)
	}
	return serverapi.CloudStepResult{Note: fmt.Sprintf("host %s in aggregate %s (zone %s)", in.Host, agg.Name, agg.AvailabilityZone)}, nil
}

// AssignTenant makes the tenant the node's owner and lessee in Ironic and
// records it on the asset, which then is `ready`. Both writes compare
// before they change anything, so a retry adds nothing.
func (c *Cloud) AssignTenant(ctx context.Context, in serverapi.AssignTenantInput) (serverapi.CloudStepResult, error) {
	if c.Ironic == nil {
		return serverapi.CloudStepResult{Skipped: true, Note: serverapi.NoteNoIronic}, nil
	}
	if in.Tenant == "" {
		// Nobody ordered it: the node stays unowned in the cloud's shared
		// pool, and the step says so instead of claiming an assignment.
		if err := c.Inventory.SetState(ctx, in.Serial, "ready", in.Actor, "Ironic node available, no tenant"); err != nil {
			return serverapi.CloudStepResult{}, activities.InventoryError(err)
		}
		return serverapi.CloudStepResult{Skipped: true, Note: serverapi.NoteNoTenant}, nil
	}
	stop := activities.KeepAlive(ctx)
	defer stop()
	n, err := c.Ironic.SetOwner(ctx, in.Serial, in.Tenant, in.Tenant)
	if err != nil {
		return serverapi.CloudStepResult{}, cloudError(err)
	}
	if _, err := c.Inventory.RegisterAsset(ctx, inventory.AssetRecord{Serial: in.Serial, Tenant: in.Tenant}, in.Actor); err != nil {
		return serverapi.CloudStepResult{}, activities.InventoryError(err)
	}
	if err := c.Inventory.SetState(ctx, in.Serial, "ready", in.Actor, "Ironic node available, owned by "+in.Tenant); err != nil {
		return serverapi.CloudStepResult{}, activities.InventoryError(err)
	}
	return serverapi.CloudStepResult{NodeUUID: n.UUID, ProvisionState: n.ProvisionState, PowerState: n.PowerState}, nil
}

// cloudError maps package cloud's verdicts onto Temporal's: transient
// failures are retried with backoff, everything else parks the server for
// a human with Ironic's own words (last_error included). The cloud
// package's messages never contain the BMC password.
func cloudError(err error) error {
	switch cloud.KindOf(err) {
	case cloud.Transient:
		return temporal.NewApplicationError(err.Error(), stepapi.ErrTypeCloudTransient)
	case cloud.Failed:
		return temporal.NewNonRetryableApplicationError(err.Error(), stepapi.ErrTypeCloudFailed, nil)
	case cloud.Invalid, cloud.Conflict, cloud.NotFound:
		return temporal.NewNonRetryableApplicationError(err.Error(), stepapi.ErrTypeCloudRejected, nil)
	}
	// Not from package cloud (a bug, or a context ended by the worker
	// stopping): let Temporal retry rather than bother a human.
	return err
}

// ironicCPUArch turns Redfish's ProcessorArchitecture, which inspection
// reports, into the cpu_arch Ironic and Nova flavors use. Redfish's "x86"
// covers both widths; servers that reach this lifecycle are 64-bit, as
// Ironic's own Redfish inspection assumes too.
func ironicCPUArch(redfish string) string {
	switch strings.ToLower(redfish) {
	case "x86", "x86-64", "x86_64":
		return "x86_64"
	case "ia-64":
		return "ia64"
	case "arm", "arm-a64", "aarch64":
		return "aarch64"
	case "power", "powerisa":
		return "ppc64le"
	}
	return strings.ToLower(redfish)
}
