package server

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/workflows/internal/options"
	"github.com/metalflow/metalflow/workflows/rackbatch"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// deployChange: lifecycles started before metalflow deployed images with
// its own agent install through the installer only. Asked only when an
// install names an image, so other lifecycles' histories carry no marker.
const deployChange = "deploy-agent"

// Error types of a deploy that needs a human.
const (
	errTypeInventoryDisagrees = "DeployInventoryDisagrees"
	errTypeDeployFailed       = "DeployFailed"
)

// deploy is what the current attempt's agent has reported.
type deploy struct {
	attempt   int
	inventory *serverapi.AgentInventory
	// final is the agent's last word: written or failed.
	final *serverapi.DeployReport
}

// image is the catalog image this server's install writes: its own, or its
// profile's default; "" leaves the install to the installer.
func (l *lifecycle) image() string {
	if l.in.Image != "" {
		return l.in.Image
	}
	return l.inspected.Image
}

// deployPlan is what the agent of this server writes.
func (l *lifecycle) deployPlan(image string) *serverapi.DeployPlan {
	p := &serverapi.DeployPlan{
		Image: image, RootDevice: l.inspected.RootDevice, Hostname: strings.ToLower(l.status.Serial),
		SSHAuthorizedKeys: append(slices.Clone(l.inspected.SSHAuthorizedKeys), l.in.SSHAuthorizedKeys...),
		UserData:          l.inspected.UserData,
	}
	if l.in.UserData != "" {
		p.UserData = l.in.UserData
	}
	if len(l.inspected.MACs) > 0 {
		p.MAC = l.inspected.MACs[0]
	}
	return p
}

// takeDeployReport records a report of the current attempt's agent; one of
// another attempt (a late or replayed request) changes nothing.
func (l *lifecycle) takeDeployReport(ctx workflow.Context, r serverapi.DeployReport) {
	d := l.status.Deploy
	if d == nil || l.deploy == nil || r.Attempt != l.deploy.attempt || l.status.Step != serverapi.StepInstallOS {
		workflow.GetLogger(ctx).Warn("ignoring a deploy report for another install attempt",
			"attempt", r.Attempt, "phase", r.Phase, "current", l.status.InstallAttempt)
		return
	}
	now := workflow.Now(ctx)
	if r.Disk != "" {
		d.Disk = r.Disk
	}
	if r.BytesTotal > 0 {
		d.BytesWritten, d.BytesTotal = r.BytesWritten, r.BytesTotal
	}
	switch r.Phase {
	case serverapi.DeployInventory:
		if l.deploy.inventory == nil {
			l.deploy.inventory = r.Inventory
			d.Phase, d.AgentUpAt = serverapi.DeployInventory, &now
		}
	case serverapi.DeployProgress:
		if l.deploy.final == nil {
			d.Phase = serverapi.DeployProgress
		}
	case serverapi.DeployWritten, serverapi.DeployFailed:
		if l.deploy.final == nil {
			l.deploy.final = &r
			d.Phase = r.Phase
			if r.Phase == serverapi.DeployWritten {
				// The whole image is on the disk, whatever the last
				// progress report had counted.
				d.WrittenAt, d.BytesWritten = &now, d.BytesTotal
				d.ImageMiBPerSecond, d.DiskLimitMiBPerSecond = r.ImageMiBPerSecond, r.DiskLimitMiBPerSecond
			}
		}
	}
}

// awaitDeploy follows attempt's agent until the image is on the disk and
// the disk boots, or until deadline. It answers false when the agent was
// not heard from in time (the attempt is spent, as an installer that never
// phones home), and an error that parks the server when the agent's
// machine is not the one the BMC described or the deploy failed.
func (l *lifecycle) awaitDeploy(ctx workflow.Context, bmc serverapi.BMCRef, attempt int, deadline time.Time) (bool, error) {
	heard, err := l.awaitUntil(ctx, deadline, func() bool { return l.deploy.inventory != nil || l.deploy.final != nil })
	if err != nil || !heard {
		return false, err
	}
	if inv := l.deploy.inventory; inv != nil && l.deploy.final == nil {
		problem := inventoryMismatch(l.inspected, *inv)
		if err := l.decideDeploy(ctx, attempt, problem); err != nil {
			return false, err
		}
		if problem != "" {
			return false, temporal.NewNonRetryableApplicationError(
				"the deploy agent's machine is not the one the BMC describes: "+problem, errTypeInventoryDisagrees, nil)
		}
	}
	done, err := l.awaitUntil(ctx, deadline, func() bool { return l.deploy.final != nil })
	if err != nil || !done {
		return false, err
	}
	if f := l.deploy.final; f.Phase == serverapi.DeployFailed {
		return false, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the deploy agent failed (%s): %s", f.FailureClass, f.Failure), errTypeDeployFailed, nil)
	}
	if err := rackbatch.WithPowerSlot(ctx, l.batch, l.status.Serial, func() error {
		return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.BMC(5*time.Minute)), serverapi.BootFromDiskName,
			serverapi.BootFromDiskInput{Serial: l.status.Serial, BMC: bmc}).Get(ctx, nil)
	}); err != nil {
		return false, err
	}
	now := workflow.Now(ctx)
	l.status.Deploy.RebootAt = &now
	return true, nil
}

func (l *lifecycle) decideDeploy(ctx workflow.Context, attempt int, problem string) error {
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, options.Inventory()), serverapi.DecideDeployName,
		serverapi.DecideDeployInput{Serial: l.status.Serial, Attempt: attempt, Release: problem == "", Reason: problem}).Get(ctx, nil)
}

// awaitUntil waits for cond until deadline; false when the deadline came.
func (l *lifecycle) awaitUntil(ctx workflow.Context, deadline time.Time, cond func() bool) (bool, error) {
	left := deadline.Sub(workflow.Now(ctx))
	if left <= 0 {
		return cond(), nil
	}
	return workflow.AwaitWithTimeout(ctx, left, cond)
}

// inventoryMismatch says how the machine the agent booted on differs from
// what the BMC reported ("" when it does not): the serial, or a MAC one
// sees and the other does not. Either means the wrong machine, or a BMC
// wired to another chassis, and writing a disk then is the worst outcome.
func inventoryMismatch(bmc serverapi.InspectServerResult, inv serverapi.AgentInventory) string {
	var problems []string
	if bmc.SystemSerial != "" && inv.SystemSerial != "" && !strings.EqualFold(strings.TrimSpace(bmc.SystemSerial), strings.TrimSpace(inv.SystemSerial)) {
		problems = append(problems, fmt.Sprintf("serial: the BMC says %q, the machine says %q", bmc.SystemSerial, inv.SystemSerial))
	}
	norm := func(macs []string) []string {
		out := make([]string, 0, len(macs))
		for _, m := range macs {
			out = append(out, strings.ToLower(m))
		}
		slices.Sort(out)
		return slices.Compact(out)
	}
	redfish, inband := norm(bmc.MACs), norm(inv.MACs)
	var onlyBMC, onlyMachine []string
	for _, m := range redfish {
		if _, found := slices.BinarySearch(inband, m); !found {
			onlyBMC = append(onlyBMC, m)
		}
	}
	for _, m := range inband {
		if _, found := slices.BinarySearch(redfish, m); !found {
			onlyMachine = append(onlyMachine, m)
		}
	}
	if len(onlyBMC) > 0 || len(onlyMachine) > 0 {
		problems = append(problems, fmt.Sprintf("MACs: the BMC reports %s, the machine sees %s",
			strings.Join(redfish, ", "), strings.Join(inband, ", ")))
	}
	return strings.Join(problems, "; ")
}
