package activities

import (
	"go.temporal.io/sdk/activity"
)

// Registrar is the part of a Temporal worker that activities register on.
type Registrar interface {
	RegisterActivityWithOptions(a interface{}, options activity.RegisterOptions)
}

// Activity names are part of recorded histories: never rename them.
const (
	RackServerName      = "RackServer"
	ReleaseRackUnitName = "ReleaseRackUnit"
)

// Register registers the CMDB's activities under their stable names.
func (a *Inventory) Register(r Registrar) {
	r.RegisterActivityWithOptions(a.RackServer, activity.RegisterOptions{Name: RackServerName})
	r.RegisterActivityWithOptions(a.ReleaseRackUnit, activity.RegisterOptions{Name: ReleaseRackUnitName})
}
