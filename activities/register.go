package activities

import (
	"go.temporal.io/sdk/activity"
)

// Registrar is the part of a Temporal worker that activities register on.
type Registrar interface {
	RegisterActivityWithOptions(a interface{}, options activity.RegisterOptions)
}

// Register registers the CMDB's activities under their stable names.
func (a *Inventory) Register(r Registrar) {
	r.RegisterActivityWithOptions(a.RackServer, activity.RegisterOptions{Name: RackServerName})
	r.RegisterActivityWithOptions(a.ReleaseRackUnit, activity.RegisterOptions{Name: ReleaseRackUnitName})
}

// Register registers the hardware steps' activities under their stable names.
func (p *Provisioning) Register(r Registrar) {
	for name, fn := range map[string]any{
		RegisterAssetName:      p.RegisterAsset,
		SetAssetStateName:      p.SetAssetState,
		InspectServerName:      p.InspectServer,
		RegisterMonitoringName: p.RegisterMonitoring,
		ConfigureBIOSName:      p.ConfigureBIOS,
		ConfigureRAIDName:      p.ConfigureRAID,
		StartInstallName:       p.StartInstall,
		FinishInstallName:      p.FinishInstall,
		AbortServerName:        p.AbortServer,
		CancelServerName:       p.CancelServer,
		WipeServerName:         p.WipeServer,
		ResetBIOSDefaultsName:  p.ResetBIOSDefaults,
		PowerOffServerName:     p.PowerOffServer,
		RetireAssetName:        p.RetireAsset,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}

// Register registers the cloud steps' activities under their stable names.
// They are registered even without Ironic: they then report the step
// skipped, which a workflow needs to hear from the worker that runs it.
func (c *Cloud) Register(r Registrar) {
	for name, fn := range map[string]any{
		RegisterCloudName:   c.RegisterCloud,
		JoinAggregateName:   c.JoinAggregate,
		AssignTenantName:    c.AssignTenant,
		LeaveAggregateName:  c.LeaveAggregate,
		DeleteCloudNodeName: c.DeleteCloudNode,
	} {
		r.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name})
	}
}
