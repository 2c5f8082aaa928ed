package activities

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/cloud"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/inventory"
)

// Cloud runs the lifecycle's cloud steps: Ironic registration, Nova
// aggregates, tenant assignment. A nil Ironic or Compute means the worker
// was started without it; the steps then answer Skipped, so the workflow
// records what really happened.
type Cloud struct {
	Ironic      *cloud.Ironic
	Compute     *cloud.Compute
	Inventory   *inventory.Store
	Credentials credentials.Store
	// InsecureBMC makes Ironic accept the BMC's self-signed certificate
	// (redfish_verify_ca=false).
	InsecureBMC bool
	// SiteConductorGroups pins each node to the Ironic conductor group
	// named after its site; off, nodes use the default group (what a
	// standalone Ironic such as scripts/ironic.sh serves).
	SiteConductorGroups bool
}

// RegisterCloud enrolls the server in Ironic (or reconciles the node that
// already carries its serial), lets Ironic verify the BMC itself through
// sushy (manage) and offers the node for scheduling (provide), ending in
// `available`. Every part is idempotent, so a retried activity finishes
// what the last attempt left.
func (c *Cloud) RegisterCloud(ctx context.Context, in RegisterCloudInput) (CloudStepResult, error) {
	if c.Ironic == nil {
		return CloudStepResult{Skipped: true, Note: NoteNoIronic}, nil
	}
	cred, err := c.Credentials.Get(ctx, in.BMC.CredentialRef)
	if errors.Is(err, credentials.ErrUnknownRef) {
		return CloudStepResult{}, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeCredentialMissing, nil)
	}
	if err != nil {
		return CloudStepResult{}, err
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
	stop := keepAlive(ctx)
	n, err := c.Ironic.Register(ctx, spec)
	stop()
	if err != nil {
		return CloudStepResult{}, cloudError(err)
	}
	if err := c.Inventory.SetState(ctx, in.Serial, "cloud-available", in.Actor,
		fmt.Sprintf("Ironic node %s %s in %s, power %s", n.UUID, n.ProvisionState, domain, n.PowerState)); err != nil {
		return CloudStepResult{}, classify(err)
	}
	return CloudStepResult{NodeUUID: n.UUID, ProvisionState: n.ProvisionState, PowerState: n.PowerState}, nil
}

// JoinAggregate adds the host to the Nova aggregate of its rack, creating
// the aggregate with the site's availability zone if it is the first.
// Nova not knowing the host yet (nova-compute still starting) is retried.
func (c *Cloud) JoinAggregate(ctx context.Context, in JoinAggregateInput) (CloudStepResult, error) {
	if c.Compute == nil {
		return CloudStepResult{Skipped: true, Note: NoteNoNova}, nil
	}
	agg := cloud.FailureDomain{Site: in.Site, Room: in.Room, Rack: in.Rack}.Aggregate()
	stop := keepAlive(ctx)
	defer stop()
	if err := c.Compute.AddHostToAggregate(ctx, agg, in.Host); err != nil {
		return CloudStepResult{}, cloudError(err)
	}
	return CloudStepResult{Note: fmt.Sprintf("host %s in aggregate %s (zone %s)", in.Host, agg.Name, agg.AvailabilityZone)}, nil
}

// AssignTenant makes the tenant the node's owner and lessee in Ironic and
// records it on the asset, which then is `ready`. Both writes compare
// before they change anything, so a retry adds nothing.
func (c *Cloud) AssignTenant(ctx context.Context, in AssignTenantInput) (CloudStepResult, error) {
	if c.Ironic == nil {
		return CloudStepResult{Skipped: true, Note: NoteNoIronic}, nil
	}
	if in.Tenant == "" {
		// Nobody ordered it: the node stays unowned in the cloud's shared
		// pool, and the step says so instead of claiming an assignment.
		if err := c.Inventory.SetState(ctx, in.Serial, "ready", in.Actor, "Ironic node available, no tenant"); err != nil {
			return CloudStepResult{}, classify(err)
		}
		return CloudStepResult{Skipped: true, Note: NoteNoTenant}, nil
	}
	stop := keepAlive(ctx)
	defer stop()
	n, err := c.Ironic.SetOwner(ctx, in.Serial, in.Tenant, in.Tenant)
	if err != nil {
		return CloudStepResult{}, cloudError(err)
	}
	if _, err := c.Inventory.RegisterAsset(ctx, inventory.AssetRecord{Serial: in.Serial, Tenant: in.Tenant}, in.Actor); err != nil {
		return CloudStepResult{}, classify(err)
	}
	if err := c.Inventory.SetState(ctx, in.Serial, "ready", in.Actor, "Ironic node available, owned by "+in.Tenant); err != nil {
		return CloudStepResult{}, classify(err)
	}
	return CloudStepResult{NodeUUID: n.UUID, ProvisionState: n.ProvisionState, PowerState: n.PowerState}, nil
}

// cloudError maps package cloud's verdicts onto Temporal's: transient
// failures are retried with backoff, everything else parks the server for
// a human with Ironic's own words (last_error included). The cloud
// package's messages never contain the BMC password.
func cloudError(err error) error {
	switch cloud.KindOf(err) {
	case cloud.Transient:
		return temporal.NewApplicationError(err.Error(), ErrTypeCloudTransient)
	case cloud.Failed:
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeCloudFailed, nil)
	case cloud.Invalid, cloud.Conflict, cloud.NotFound:
		return temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeCloudRejected, nil)
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
