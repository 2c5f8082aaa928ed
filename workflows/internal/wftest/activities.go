package wftest

import (
	"context"
	"sync"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// Activities stands in for the server domain's activities: it records
// every call and answers with programmed errors, so each branch of the step
// machines can be driven without hardware. (The real activities are tested against the BMC
// simulator and the real Temporal server in other packages.)
type Activities struct {
	Mu       sync.Mutex
	Calls    []string
	Errs     map[string][]error
	Inspect  serverapi.InspectServerResult
	Inputs   map[string][]any
	Attempts []int
	// Ironic and Nova say what the stand-in worker has configured; without
	// them the cloud steps answer skipped, as the real activities do.
	Ironic, Nova bool
	// BIOS and RAID are what ConfigureBIOS / ConfigureRAID report read back.
	BIOS *serverapi.BIOSReport
	RAID *serverapi.RAIDReport
}

// NewActivities answers as a Dell R650 with the default profile would.
func NewActivities() *Activities {
	return &Activities{
		Errs:   map[string][]error{},
		Inputs: map[string][]any{},
		Inspect: serverapi.InspectServerResult{
			Vendor: "Dell Inc.", Model: "PowerEdge R650", MACs: []string{"02:00:00:00:00:01"}, Profile: "default", Role: "compute",
			InstallTimeout: 30 * time.Minute, InstallAttempts: 3,
		},
	}
}

// FailNext makes the next calls of an activity fail with errs, in order.
func (f *Activities) FailNext(name string, errs ...error) {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Errs[name] = append(f.Errs[name], errs...)
}

// Record notes a call and answers with the next programmed error, if any.
func (f *Activities) Record(name string, in any) error {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	f.Calls = append(f.Calls, name)
	f.Inputs[name] = append(f.Inputs[name], in)
	if q := f.Errs[name]; len(q) > 0 {
		f.Errs[name] = q[1:]
		return q[0]
	}
	return nil
}

// Count is how many times the activity was called.
func (f *Activities) Count(name string) int {
	f.Mu.Lock()
	defer f.Mu.Unlock()
	n := 0
	for _, c := range f.Calls {
		if c == name {
			n++
		}
	}
	return n
}

// Register registers the stand-ins under the contract's activity names.
func (f *Activities) Register(env *testsuite.TestWorkflowEnvironment) {
	reg := func(name string, fn any) { env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg(serverapi.RackServerName, func(_ context.Context, in serverapi.RackServerInput) error {
		return f.Record(serverapi.RackServerName, in)
	})
	reg(serverapi.RegisterAssetName, func(_ context.Context, in serverapi.RegisterAssetInput) error {
		return f.Record(serverapi.RegisterAssetName, in)
	})
	reg(serverapi.InspectServerName, func(_ context.Context, in serverapi.InspectServerInput) (serverapi.InspectServerResult, error) {
		return f.Inspect, f.Record(serverapi.InspectServerName, in)
	})
	reg(serverapi.RegisterMonitoringName, func(_ context.Context, in serverapi.RegisterMonitoringInput) error {
		return f.Record(serverapi.RegisterMonitoringName, in)
	})
	reg(serverapi.ConfigureBIOSName, func(_ context.Context, in serverapi.ConfigureBIOSInput) (serverapi.ConfigureBIOSResult, error) {
		err := f.Record(serverapi.ConfigureBIOSName, in)
		f.Mu.Lock()
		defer f.Mu.Unlock()
		return serverapi.ConfigureBIOSResult{Report: f.BIOS}, err
	})
	reg(serverapi.ConfigureRAIDName, func(_ context.Context, in serverapi.ConfigureRAIDInput) (serverapi.ConfigureRAIDResult, error) {
		err := f.Record(serverapi.ConfigureRAIDName, in)
		f.Mu.Lock()
		defer f.Mu.Unlock()
		return serverapi.ConfigureRAIDResult{Report: f.RAID}, err
	})
	reg(serverapi.StartInstallName, func(_ context.Context, in serverapi.StartInstallInput) error {
		f.Mu.Lock()
		f.Attempts = append(f.Attempts, in.Attempt)
		f.Mu.Unlock()
		return f.Record(serverapi.StartInstallName, in)
	})
	reg(serverapi.FinishInstallName, func(_ context.Context, in serverapi.FinishInstallInput) error {
		return f.Record(serverapi.FinishInstallName, in)
	})
	reg(serverapi.DecideDeployName, func(_ context.Context, in serverapi.DecideDeployInput) error {
		return f.Record(serverapi.DecideDeployName, in)
	})
	reg(serverapi.BootFromDiskName, func(_ context.Context, in serverapi.BootFromDiskInput) error {
		return f.Record(serverapi.BootFromDiskName, in)
	})
	reg(serverapi.AbortServerName, func(_ context.Context, in serverapi.AbortServerInput) error {
		return f.Record(serverapi.AbortServerName, in)
	})
	reg(serverapi.CancelServerName, func(_ context.Context, in serverapi.CancelServerInput) error {
		return f.Record(serverapi.CancelServerName, in)
	})
	reg(serverapi.JoinLoadBalancerName, func(_ context.Context, in serverapi.LoadBalancerMembershipInput) error {
		return f.Record(serverapi.JoinLoadBalancerName, in)
	})
	reg(serverapi.RegisterCloudName, func(_ context.Context, in serverapi.RegisterCloudInput) (serverapi.CloudStepResult, error) {
		if err := f.Record(serverapi.RegisterCloudName, in); err != nil || !f.Ironic {
			return serverapi.CloudStepResult{Skipped: !f.Ironic, Note: serverapi.NoteNoIronic}, err
		}
		return serverapi.CloudStepResult{NodeUUID: "node-" + in.Serial, ProvisionState: "available", PowerState: "power off"}, nil
	})
	reg(serverapi.JoinAggregateName, func(_ context.Context, in serverapi.JoinAggregateInput) (serverapi.CloudStepResult, error) {
		if err := f.Record(serverapi.JoinAggregateName, in); err != nil || !f.Nova {
			return serverapi.CloudStepResult{Skipped: !f.Nova, Note: serverapi.NoteNoNova}, err
		}
		return serverapi.CloudStepResult{Note: "host " + in.Host + " in aggregate " + in.Site + "-" + in.Rack}, nil
	})
	reg(serverapi.AssignTenantName, func(_ context.Context, in serverapi.AssignTenantInput) (serverapi.CloudStepResult, error) {
		if err := f.Record(serverapi.AssignTenantName, in); err != nil || !f.Ironic {
			return serverapi.CloudStepResult{Skipped: !f.Ironic, Note: serverapi.NoteNoIronic}, err
		}
		if in.Tenant == "" {
			return serverapi.CloudStepResult{Skipped: true, Note: serverapi.NoteNoTenant}, nil
		}
		return serverapi.CloudStepResult{NodeUUID: "node-" + in.Serial, ProvisionState: "available", PowerState: "power off"}, nil
	})
}

// RegisterDecommission adds stand-ins for the decommission's activities.
// The cloud ones answer skipped without Ironic/Nova, as the real ones do.
func (f *Activities) RegisterDecommission(env *testsuite.TestWorkflowEnvironment) {
	reg := func(name string, fn any) { env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	for _, name := range []string{serverapi.WipeServerName, serverapi.ResetBIOSDefaultsName, serverapi.PowerOffServerName, serverapi.RetireAssetName} {
		reg(name, func(_ context.Context, in serverapi.DecommissionStepInput) (serverapi.DecommissionStepResult, error) {
			return serverapi.DecommissionStepResult{Note: name + " done"}, f.Record(name, in)
		})
	}
	reg(serverapi.LeaveAggregateName, func(_ context.Context, in serverapi.DecommissionStepInput) (serverapi.DecommissionStepResult, error) {
		if err := f.Record(serverapi.LeaveAggregateName, in); err != nil || !f.Nova {
			return serverapi.DecommissionStepResult{Skipped: !f.Nova, Note: serverapi.NoteNoNova}, err
		}
		return serverapi.DecommissionStepResult{}, nil
	})
	reg(serverapi.DeleteCloudNodeName, func(_ context.Context, in serverapi.DecommissionStepInput) (serverapi.DecommissionStepResult, error) {
		if err := f.Record(serverapi.DeleteCloudNodeName, in); err != nil || !f.Ironic {
			return serverapi.DecommissionStepResult{Skipped: !f.Ironic, Note: serverapi.NoteNoIronic}, err
		}
		return serverapi.DecommissionStepResult{}, nil
	})
	reg(serverapi.ReleaseRackUnitName, func(_ context.Context, in serverapi.ReleaseRackUnitInput) error {
		return f.Record(serverapi.ReleaseRackUnitName, in)
	})
	reg(serverapi.LeaveLoadBalancerName, func(_ context.Context, in serverapi.LoadBalancerMembershipInput) error {
		return f.Record(serverapi.LeaveLoadBalancerName, in)
	})
}

// NonRetryable is an activity's verdict that needs a human.
func NonRetryable(msg, typ string) error {
	return temporal.NewNonRetryableApplicationError(msg, typ, nil)
}
