package serverapi

import "time"

// HiddenValue stands in for the value of a password-like BIOS attribute.
const HiddenValue = "(hidden)"

// BIOSReport is each desired BIOS attribute as the BMC reports it.
type BIOSReport struct {
	Attributes []BIOSAttributeReport `json:"attributes"`
}

// BIOSAttributeReport is one desired attribute, applied or not.
type BIOSAttributeReport struct {
	Name    string `json:"name"`
	Desired string `json:"desired"`
	// Actual is "" when the BMC has no such attribute (Missing).
	Actual  string `json:"actual"`
	Match   bool   `json:"match"`
	Missing bool   `json:"missing,omitempty"`
	// Hidden: Desired and Actual are HiddenValue, not the values.
	Hidden bool `json:"hidden,omitempty"`
}

// RAID report statuses.
const (
	RAIDMatch      = "match"
	RAIDMissing    = "missing"
	RAIDUnexpected = "unexpected"
)

// RAIDReport is the profile's volumes against the volumes found on the
// controller ConfigureRAID uses.
type RAIDReport struct {
	Controller string             `json:"controller,omitempty"`
	Volumes    []RAIDVolumeReport `json:"volumes"`
}

// RAIDVolumeReport is one desired volume and the volume satisfying it
// (match), a desired volume nothing satisfies (missing), or a volume no
// desired one accounts for (unexpected).
type RAIDVolumeReport struct {
	Status  string      `json:"status"`
	Desired *RAIDVolume `json:"desired,omitempty"`
	Actual  *RAIDVolume `json:"actual,omitempty"`
}

// RAIDVolume describes a volume, desired or found.
type RAIDVolume struct {
	ID        string `json:"id,omitempty"`
	Name      string `json:"name,omitempty"`
	RAIDLevel string `json:"raidLevel"`
	// SizeBytes 0 in a desired volume means all the drives offer.
	SizeBytes int64 `json:"sizeBytes"`
	// Drives is empty in a desired volume that takes any free drives.
	Drives []string `json:"drives,omitempty"`
}

// RegisterAssetInput creates the server's CMDB record.
type RegisterAssetInput struct {
	Serial     string `json:"serial"`
	BMCAddress string `json:"bmcAddress"`
	Actor      string `json:"actor"`
}

// SetAssetStateInput moves the asset to a lifecycle state.
type SetAssetStateInput struct {
	Serial string `json:"serial"`
	State  string `json:"state"`
	Detail string `json:"detail,omitempty"`
	Actor  string `json:"actor"`
}

// RegisterMonitoringInput is what Prometheus needs to find the BMC.
type RegisterMonitoringInput struct {
	Serial     string `json:"serial"`
	BMCAddress string `json:"bmcAddress"`
	Site       string `json:"site"`
	Rack       string `json:"rack"`
	Role       string `json:"role"`
}

// CancelServerInput says where a cancelled lifecycle stopped.
type CancelServerInput struct {
	Serial string `json:"serial"`
	// Step is the step that was running or waiting ("" before any).
	Step string `json:"step,omitempty"`
}

// AbortServerInput undoes what the lifecycle claimed.
type AbortServerInput struct {
	Serial string `json:"serial"`
	Reason string `json:"reason"`
	Actor  string `json:"actor"`
}

// ConfigureBIOSInput applies the profile's BIOS settings.
type ConfigureBIOSInput struct {
	Serial  string `json:"serial"`
	BMC     BMCRef `json:"bmc"`
	Profile string `json:"profile"`
	Vendor  string `json:"vendor"`
	// Generation changes when staff retry the step, allowing one more
	// reset than the last run made.
	Generation int `json:"generation"`
	// PollInterval is how often to read the BIOS back while waiting.
	PollInterval time.Duration `json:"pollInterval"`
	// ApplyTimeout is how long the settings may take to show after the
	// reset before a human is asked; it must be shorter than the
	// activity's StartToClose so the verdict reaches the workflow.
	ApplyTimeout time.Duration `json:"applyTimeout"`
}

// ConfigureBIOSResult says what was changed.
type ConfigureBIOSResult struct {
	Changed map[string]string `json:"changed,omitempty"`
	Reset   bool              `json:"reset"`
	// Report is the BIOS read back after applying; a failure that needs a
	// human carries it as its error details instead.
	Report *BIOSReport `json:"report,omitempty"`
}

// Notes the cloud steps leave on a step they skip because of the worker's
// configuration: never a step faked as done.
const (
	NoteNoIronic = "no Ironic configured (--ironic-url): cloud registration is off"
	NoteNoNova   = "no Nova configured (--nova-url): aggregate membership is off"
	// NoteNoTenant is not about configuration: the server was ordered
	// without a tenant.
	NoteNoTenant = "no tenant given when the server was ordered: the node stays in the shared pool"
)

// CloudStepResult says what a cloud step did.
type CloudStepResult struct {
	// Skipped is set when the worker has no Ironic (or Nova) configured;
	// Note says so.
	Skipped        bool   `json:"skipped,omitempty"`
	Note           string `json:"note,omitempty"`
	NodeUUID       string `json:"nodeUUID,omitempty"`
	ProvisionState string `json:"provisionState,omitempty"`
	PowerState     string `json:"powerState,omitempty"`
}

// RegisterCloudInput is what Ironic needs to know about an installed
// server. The BMC travels by reference; the password is resolved here.
type RegisterCloudInput struct {
	Serial        string   `json:"serial"`
	BMC           BMCRef   `json:"bmc"`
	CPUs          int      `json:"cpus"`
	MemoryMiB     int      `json:"memoryMiB"`
	LocalGB       int      `json:"localGB"`
	CPUArch       string   `json:"cpuArch,omitempty"`
	ResourceClass string   `json:"resourceClass,omitempty"`
	MACs          []string `json:"macs"`
	Site          string   `json:"site"`
	Room          string   `json:"room,omitempty"`
	Rack          string   `json:"rack"`
	Actor         string   `json:"actor"`
}

// JoinAggregateInput puts a hypervisor into its failure domain's aggregate.
type JoinAggregateInput struct {
	Serial string `json:"serial"`
	// Host is the name nova-compute registers under: the hostname the
	// installer reported.
	Host  string `json:"host"`
	Site  string `json:"site"`
	Room  string `json:"room,omitempty"`
	Rack  string `json:"rack"`
	Actor string `json:"actor"`
}

// AssignTenantInput hands the node to the project that ordered it.
type AssignTenantInput struct {
	Serial string `json:"serial"`
	Tenant string `json:"tenant"`
	Actor  string `json:"actor"`
}

// Activity names of the decommission; part of recorded histories.
const (
	LeaveAggregateName    = "LeaveAggregate"
	DeleteCloudNodeName   = "DeleteCloudNode"
	WipeServerName        = "WipeServer"
	ResetBIOSDefaultsName = "ResetBIOSDefaults"
	PowerOffServerName    = "PowerOffServer"
	RetireAssetName       = "RetireAsset"
)

// DecommissionStepInput is what every decommission step needs. Key makes
// the asset-history line of the step unique per run and retry, so a
// repeated activity does not write it twice.
type DecommissionStepInput struct {
	Serial string `json:"serial"`
	BMC    BMCRef `json:"bmc"`
	Host   string `json:"host,omitempty"`
	Site   string `json:"site,omitempty"`
	Room   string `json:"room,omitempty"`
	Rack   string `json:"rack,omitempty"`
	Key    string `json:"key"`
	Actor  string `json:"actor"`
}

// DecommissionStepResult says what a step did; Skipped with a Note when the
// worker's configuration leaves it nothing to do.
type DecommissionStepResult struct {
	Skipped bool   `json:"skipped,omitempty"`
	Note    string `json:"note,omitempty"`
}

// InspectServerInput asks for the server's inventory and its profile.
type InspectServerInput struct {
	Serial string `json:"serial"`
	BMC    BMCRef `json:"bmc"`
	// Profile is the profile the server was registered with ("" = match).
	Profile string `json:"profile,omitempty"`
	Actor   string `json:"actor"`
}

// InspectServerResult is what later steps need from inspection.
type InspectServerResult struct {
	Vendor        string   `json:"vendor"`
	Model         string   `json:"model"`
	MACs          []string `json:"macs"`
	Profile       string   `json:"profile"`
	Role          string   `json:"role"`
	ResourceClass string   `json:"resourceClass"`
	CPUs          int      `json:"cpus"`
	MemoryMiB     int      `json:"memoryMiB"`
	LocalGB       int      `json:"localGB"`
	CPUArch       string   `json:"cpuArch,omitempty"`
	Drives        int      `json:"drives"`
	// InstallTimeout and InstallAttempts come from the profile.
	InstallTimeout  time.Duration `json:"installTimeout"`
	InstallAttempts int           `json:"installAttempts"`
	// SystemSerial is the serial the BMC reports for the system, which the
	// deploy agent's in-band DMI serial must match.
	SystemSerial string `json:"systemSerial,omitempty"`
	// From the profile, for a deploy by metalflow: the default image,
	// root-device hints, and what the installed OS's cloud-init gets.
	Image             string            `json:"image,omitempty"`
	RootDevice        map[string]string `json:"rootDevice,omitempty"`
	SSHAuthorizedKeys []string          `json:"sshAuthorizedKeys,omitempty"`
	UserData          string            `json:"userData,omitempty"`
	// Warnings name the parts of the inventory the BMC would not give,
	// none of which the profile needed.
	Warnings []InventoryWarning `json:"warnings,omitempty"`
}

// InventoryWarning is a part of the inventory that could not be read: the
// Redfish path and what went wrong there.
type InventoryWarning struct {
	Path  string `json:"path"`
	Error string `json:"error"`
}

// StartInstallInput starts install attempt Attempt.
type StartInstallInput struct {
	Serial  string   `json:"serial"`
	BMC     BMCRef   `json:"bmc"`
	Attempt int      `json:"attempt"`
	MACs    []string `json:"macs"`
	// TTL is how long the boot service offers this attempt.
	TTL time.Duration `json:"ttl"`
	// Deploy, when set, has the server netboot metalflow's deploy agent to
	// write this plan, rather than the installer.
	Deploy *DeployPlan `json:"deploy,omitempty"`
}

// DeployPlan is what the deploy agent of an install is to write: the
// boot service turns it into the agent's plan (image URL and checksum from
// the catalog, the phone-home URL with the attempt's token).
type DeployPlan struct {
	// Image names the catalog's image.
	Image string `json:"image"`
	// RootDevice are Ironic-style root-device hints (name, model, vendor,
	// serial, wwn, by_path, size in GiB with operators, rotational).
	RootDevice map[string]string `json:"rootDevice,omitempty"`
	Hostname   string            `json:"hostname"`
	// SSHAuthorizedKeys and UserData go to the installed OS's cloud-init.
	SSHAuthorizedKeys []string `json:"sshAuthorizedKeys,omitempty"`
	UserData          string   `json:"userData,omitempty"`
	// MAC is the NIC the installed OS configures with DHCP.
	MAC string `json:"mac,omitempty"`
}

// FinishInstallInput closes a successful install.
type FinishInstallInput struct {
	Serial string `json:"serial"`
	BMC    BMCRef `json:"bmc"`
	Actor  string `json:"actor"`
}

// RackServerInput is where a technician put a server.
type RackServerInput struct {
	Serial  string `json:"serial"`
	Site    string `json:"site"`
	Room    string `json:"room,omitempty"`
	Rack    string `json:"rack"`
	Unit    int    `json:"unit"`
	Face    string `json:"face"`
	HeightU int    `json:"heightU"`
	// Actor is who reported it, for the asset history.
	Actor string `json:"actor"`
}

// ReleaseRackUnitInput frees a server's units.
type ReleaseRackUnitInput struct {
	Serial string `json:"serial"`
	Actor  string `json:"actor"`
	Reason string `json:"reason"`
}

// Activities that make a server a backend of a VIP and take it out again.
// They run on the lifecycle worker with a Temporal client (package
// workers), because they talk to the VIP's workflow by update.
const (
	JoinLoadBalancerName  = "JoinLoadBalancer"
	LeaveLoadBalancerName = "LeaveLoadBalancer"
)

// LoadBalancerMembershipInput names a server and one VIP.
type LoadBalancerMembershipInput struct {
	Serial string `json:"serial"`
	VIP    string `json:"vip"`
	Actor  string `json:"actor,omitempty"`
}

// BMCRef names a server's BMC and the credential to use, by reference:
// this is what workflow history holds, never the password.
type BMCRef struct {
	Address       string `json:"address"`
	CredentialRef string `json:"credentialRef"`
}

// ConfigureRAIDInput applies the profile's target RAID configuration.
type ConfigureRAIDInput struct {
	Serial  string `json:"serial"`
	BMC     BMCRef `json:"bmc"`
	Profile string `json:"profile"`
	Vendor  string `json:"vendor"`
}

// ConfigureRAIDResult says what changed.
type ConfigureRAIDResult struct {
	Kept    []string `json:"kept,omitempty"`
	Created []string `json:"created,omitempty"`
	Deleted []string `json:"deleted,omitempty"`
	// Report is the volumes read back after the changes; a failure that
	// needs a human carries it as its error details instead.
	Report *RAIDReport `json:"report,omitempty"`
}

// Activity names are part of recorded histories: never rename them.
const (
	RackServerName         = "RackServer"
	ReleaseRackUnitName    = "ReleaseRackUnit"
	RegisterAssetName      = "RegisterAsset"
	SetAssetStateName      = "SetAssetState"
	InspectServerName      = "InspectServer"
	RegisterMonitoringName = "RegisterMonitoring"
	ConfigureBIOSName      = "ConfigureBIOS"
	ConfigureRAIDName      = "ConfigureRAID"
	StartInstallName       = "StartInstall"
	FinishInstallName      = "FinishInstall"
	AbortServerName        = "AbortServer"
	CancelServerName       = "CancelServer"
	RegisterCloudName      = "RegisterCloud"
	JoinAggregateName      = "JoinAggregate"
	AssignTenantName       = "AssignTenant"
)
