package serverapi

import "github.com/metalflow/metalflow/workflows/stepapi"

// Names of the decommission workflow and what reaches it. Part of the API
// contract and of recorded histories: never rename them.
const (
	DecommissionName = "Decommission"
	UpdateUnracked   = "unracked"
	// QueryMachine asks a lifecycle for what the decommission needs and
	// the status does not show: the BMC (by credential reference) and the
	// hostname nova-compute registered under.
	QueryMachine = "machine"
	// SignalDecommissioning tells a lifecycle about to be cancelled which
	// decommission to report its end to (Decommissioning).
	SignalDecommissioning = "decommissioning"
	// SignalLifecycleEnded is the cancelled lifecycle's answer to the
	// decommission: how far it had got (LifecycleEnd).
	SignalLifecycleEnded = "lifecycle-ended"
)

// Decommissioning names the decommission a cancelled lifecycle reports to.
type Decommissioning struct {
	WorkflowID string `json:"workflowId"`
}

// Decommission states.
const (
	StateDecommissioning = "decommissioning"
	StateWaitingUnrack   = "waiting-unrack"
	StateDecommissioned  = "decommissioned"
)

// ServerState is the state a server is in, from its lifecycle's state and
// its decommission's ("" for none). Once a lifecycle has handed the server
// over (installed, ready, or cancelled by the decommission) the server is
// where its decommission is; a decommission aborted or failed gave it back.
// The status of one server and the fleet list both answer with it, so they
// cannot disagree.
func ServerState(lifecycle, decommission string) string {
	if !HandedOver(lifecycle) {
		return lifecycle
	}
	switch decommission {
	case StateDecommissioning, StateAttention:
		// Staff answer a decommission's attention on its own routes; the
		// server is on its way out either way.
		return StateDecommissioning
	case StateWaitingUnrack, StateDecommissioned:
		return decommission
	}
	return lifecycle
}

// HandedOver says a lifecycle in this state has ended in a way a
// decommission takes over from: only then does the decommission's state
// become the server's.
func HandedOver(lifecycle string) bool {
	switch lifecycle {
	case StateInstalled, StateReady, StateCancelled:
		return true
	}
	return false
}

// DecommissionStatesShownAs lists the decommission states that make a
// server's state serverState (see ServerState); nil for a state only a
// lifecycle gives.
func DecommissionStatesShownAs(serverState string) []string {
	switch serverState {
	case StateDecommissioning:
		return []string{StateDecommissioning, StateAttention}
	case StateWaitingUnrack, StateDecommissioned:
		return []string{serverState}
	}
	return nil
}

// Decommission steps, in order.
const (
	// StepCancelProvisioning runs first when the server was still being
	// provisioned: its lifecycle is cancelled and its compensation awaited.
	StepCancelProvisioning = "CancelProvisioning"
	// StepLeaveLoadBalancer takes the server out of its VIPs' backends
	// first, so no client is sent to a server about to be wiped.
	StepLeaveLoadBalancer = "LeaveLoadBalancer"
	StepLeaveAggregate    = "LeaveAggregate"
	StepDeleteCloudNode   = "DeleteCloudNode"
	StepSecureWipe        = "SecureWipe"
	StepResetBIOS         = "ResetBIOS"
	StepPowerOff          = "PowerOff"
	StepRetireAsset       = "RetireAsset"
	StepUnrack            = "Unrack"
)

// DecommissionWorkflowID is the one decommission a server can have at a time.
func DecommissionWorkflowID(serial string) string { return "decommission/" + serial }

// MachineFacts answers QueryMachine.
type MachineFacts struct {
	BMC  *BMCRef `json:"bmc,omitempty"`
	Host string  `json:"host,omitempty"`
}

// DecommissionInput is what the API learnt from the server's lifecycle.
type DecommissionInput struct {
	Serial   string    `json:"serial"`
	BMC      *BMCRef   `json:"bmc,omitempty"`
	Location *Location `json:"location,omitempty"`
	// Role decides whether the host leaves a Nova aggregate.
	Role string `json:"role,omitempty"`
	// Host is the name nova-compute registered under; "" means the serial.
	Host  string `json:"host,omitempty"`
	Actor string `json:"actor,omitempty"`
	// CancelLifecycle is set when the server's lifecycle is still running:
	// the decommission cancels it first and waits for it to end.
	CancelLifecycle bool `json:"cancelLifecycle,omitempty"`
	// Pools are the VIPs the server is a backend of.
	Pools []string `json:"pools,omitempty"`
}

// AwaitLifecycleEndName is the activity that waits for a cancelled
// lifecycle to close and reports how far it had got. Decommissions that
// hear it from the lifecycle (SignalLifecycleEnded) call it only when the
// lifecycle had ended before it could be told, and for lifecycles started
// before lifecycles reported their end.
const AwaitLifecycleEndName = "AwaitLifecycleEnd"

// AwaitLifecycleEndInput names the server whose lifecycle is awaited.
type AwaitLifecycleEndInput struct {
	Serial string `json:"serial"`
}

// LifecycleEnd is how far a cancelled lifecycle had got: what the
// decommission has to undo.
type LifecycleEnd struct {
	State string `json:"state"`
	// Touched: BIOS, RAID or the install had started writing to the
	// server, so it must be wiped and reset.
	Touched bool `json:"touched"`
	// Racked: the server holds a rack unit a technician must free.
	Racked bool `json:"racked"`
}

// LifecycleEndOf reads a lifecycle's final status.
func LifecycleEndOf(st ServerStatus) LifecycleEnd {
	end := LifecycleEnd{State: st.State, Racked: st.Location != nil}
	for _, s := range st.Steps {
		switch s.Name {
		case StepConfigureBIOS, StepConfigureRAID, StepInstallOS:
			if s.StartedAt != nil {
				end.Touched = true
			}
		}
	}
	return end
}

// UnrackedInput is the technician's report that the server left its rack.
type UnrackedInput struct {
	By string `json:"by,omitempty"`
}

// UnrackedResult answers the unracked update.
type UnrackedResult struct {
	Serial   string    `json:"serial"`
	Location *Location `json:"location,omitempty"`
}

// DecommissionStatus answers the decommission's status query.
type DecommissionStatus struct {
	Serial    string               `json:"serial"`
	RunID     string               `json:"runId"`
	State     string               `json:"state"`
	Step      string               `json:"step"`
	Steps     []stepapi.StepStatus `json:"steps"`
	Location  *Location            `json:"location,omitempty"`
	Attention *stepapi.Attention   `json:"attention,omitempty"`
}
