package serverapi

import (
	"time"

	"github.com/metalflow/metalflow/workflows/stepapi"
)

// States lists every state a server can be in, as its status shows it and
// the API filters by it: its lifecycle's, then its decommission's (see
// ServerState).
func States() []string {
	return []string{StateWaitingRack, StateProvisioning, StateAttention, StateInstalled, StateReady, StateFailed, StateAborted, StateCancelled,
		StateDecommissioning, StateWaitingUnrack, StateDecommissioned}
}

// TaskQueue is where the lifecycle workflows and their activities run.
const TaskQueue = "metalflow-lifecycle"

// Names that clients use to reach a running lifecycle. They are part of the
// API contract and of recorded histories: never rename them.
const (
	ServerLifecycleName = "ServerLifecycle"
	UpdateRacked        = "racked"
	SignalPhoneHome     = "phone-home"
)

// Server states as the API and the operator UI show them.
const (
	StateWaitingRack  = "waiting-rack"
	StateProvisioning = "provisioning"
	StateAttention    = stepapi.StateAttention
	StateInstalled    = "installed"
	// StateReady: the server's Ironic node is available and assigned to
	// its tenant; the cloud can schedule it.
	StateReady   = "ready"
	StateAborted = "aborted"
	StateFailed  = "failed"
	// StateCancelled: provisioning was cancelled (a decommission of a
	// server still being provisioned); the decommission takes it from here.
	StateCancelled = "cancelled"
)

// Step names, in the operator's words.
const (
	StepRack               = "Rack"
	StepRegisterAsset      = "RegisterAsset"
	StepInspect            = "Inspect"
	StepRegisterMonitoring = "RegisterMonitoring"
	StepConfigureBIOS      = "ConfigureBIOS"
	StepConfigureRAID      = "ConfigureRAID"
	StepInstallOS          = "InstallOS"
	StepRegisterCloud      = "RegisterCloud"
	StepJoinAggregate      = "JoinAggregate"
	StepAssignTenant       = "AssignTenant"
	// StepJoinLoadBalancer adds the server to the backends of the VIPs it
	// was ordered for (its pools), once it is ready.
	StepJoinLoadBalancer = "JoinLoadBalancer"
)

// ServerLifecycleInput starts the lifecycle of one server.
type ServerLifecycleInput struct {
	Serial string `json:"serial"`
	// BMC is where to reach the server's BMC; the credential is a
	// reference into the credential store, never the password.
	BMC *BMCRef `json:"bmc,omitempty"`
	// Profile names the hardware profile; "" picks by vendor and model.
	Profile string `json:"profile,omitempty"`
	// Actor is who registered the server, for the asset history.
	Actor string `json:"actor,omitempty"`
	// Location is set when the server is registered already racked; the
	// lifecycle then does not wait for the technician.
	Location *Location `json:"location,omitempty"`
	// Tenant is the cloud project that ordered the server: AssignTenant
	// makes it the Ironic node's owner and lessee. Empty leaves the node
	// in the shared pool.
	Tenant string `json:"tenant,omitempty"`
	// Pools are the VIPs (by name) whose backends the server joins once it
	// is ready; decommissioning takes it out of them first.
	Pools []string `json:"pools,omitempty"`
	// Image names the catalog image to install instead of the profile's
	// default; "" installs the profile's.
	Image string `json:"image,omitempty"`
	// SSHAuthorizedKeys and UserData go to the installed OS's cloud-init
	// when metalflow deploys the image (with the profile's).
	SSHAuthorizedKeys []string `json:"sshAuthorizedKeys,omitempty"`
	UserData          string   `json:"userData,omitempty"`
	// Batch is the workflow ID of the rack batch that started this
	// lifecycle: the lifecycle reports its state to it and takes its power
	// slots from it. Empty for a server registered on its own.
	Batch string `json:"batch,omitempty"`
}

// Location is where a technician put the server.
type Location struct {
	Site string `json:"site"`
	Room string `json:"room,omitempty"`
	Rack string `json:"rack"`
	Unit int    `json:"unit"`
	Face string `json:"face"`
}

// RackedInput is the racked update: the location, and who reports it.
type RackedInput struct {
	Location
	By string `json:"by,omitempty"`
}

// RackedResult answers the racked update.
type RackedResult struct {
	Serial   string   `json:"serial"`
	Location Location `json:"location"`
}

// ServerStatus answers the status query.
type ServerStatus struct {
	Serial string `json:"serial"`
	// RunID lets the API link the exact run in the Temporal Web UI.
	RunID string `json:"runId"`
	State string `json:"state"`
	Step  string `json:"step"`
	// StepStartedAt is when the current step (or the final state) began;
	// a retried step starts again.
	StepStartedAt *time.Time           `json:"stepStartedAt,omitempty"`
	Steps         []stepapi.StepStatus `json:"steps"`
	Location      *Location            `json:"location,omitempty"`
	Attention     *stepapi.Attention   `json:"attention,omitempty"`
	Hardware      *Hardware            `json:"hardware,omitempty"`
	// InstallAttempt is the current or last OS install attempt.
	InstallAttempt int `json:"installAttempt,omitempty"`
	// Deploy is metalflow's deploy of an image in the current or last
	// install attempt: each phase with its time, progress while writing.
	Deploy *DeployStatus `json:"deploy,omitempty"`
	// RackReminders counts the daily nudges sent while nobody racked it.
	RackReminders int `json:"rackReminders,omitempty"`
	// Tenant is the project the server was ordered for.
	Tenant string `json:"tenant,omitempty"`
	// Pools are the VIPs the server serves behind, once joined.
	Pools []string `json:"pools,omitempty"`
	// Cloud is the server's Ironic node once RegisterCloud has run.
	Cloud *CloudNode `json:"cloud,omitempty"`
	// BIOS and RAID are what the BMC showed after the last ConfigureBIOS /
	// ConfigureRAID, against the profile: applied versus desired.
	BIOS *BIOSReport `json:"bios,omitempty"`
	RAID *RAIDReport `json:"raid,omitempty"`
}

// CloudNode is the server's Ironic node as the lifecycle last saw it.
type CloudNode struct {
	NodeUUID       string `json:"nodeUUID"`
	ProvisionState string `json:"provisionState"`
	PowerState     string `json:"powerState,omitempty"`
}

// Hardware is what inspection found, as far as the status shows it.
type Hardware struct {
	Vendor  string   `json:"vendor"`
	Model   string   `json:"model"`
	Profile string   `json:"profile"`
	Role    string   `json:"role"`
	MACs    []string `json:"macs"`
	// Warnings are the parts of the inventory the BMC would not give,
	// none of which the profile needed.
	Warnings []InventoryWarning `json:"warnings,omitempty"`
}

// RetryInput answers an attention with "try the step again", optionally
// with corrected input.
type RetryInput struct {
	// BMC replaces the BMC address and/or credential reference.
	BMC *BMCRef `json:"bmc,omitempty"`
	// Profile replaces the hardware profile.
	Profile string `json:"profile,omitempty"`
	By      string `json:"by,omitempty"`
}

// SkipInput answers an attention with "go on without this step".
type SkipInput struct {
	By string `json:"by,omitempty"`
}

// PhoneHome is the installer's call back, forwarded by the boot service.
type PhoneHome struct {
	Attempt    int    `json:"attempt"`
	Hostname   string `json:"hostname,omitempty"`
	InstanceID string `json:"instanceId,omitempty"`
}
