package serverapi

import "time"

// metalflow deploys an OS itself when the install names an image (the
// server's, or its profile's default): the server netboots metalflow's
// deploy agent, which reports what it finds and writes the image; the boot
// service forwards each report to the lifecycle. Without an image the
// install is the installer's own, as before, and only its phone-home
// counts.

// SignalDeployReport carries a deploy agent's report, forwarded by the
// boot service (DeployReport).
const SignalDeployReport = "deploy-report"

// Activities of a deploy. Part of recorded histories: never rename them.
const (
	// DecideDeployName releases the deploy plan to the agent, or refuses
	// it with the reason (the agent then stops).
	DecideDeployName = "DecideDeploy"
	// BootFromDiskName makes the disk the boot device for good and powers
	// the server on (the agent powered it off once the image was written).
	BootFromDiskName = "BootFromDisk"
)

// Phases of a deploy, in order: the power-on that netboots the agent, then
// those of the agent's reports.
const (
	// DeployPowerOn: the server was powered on to netboot the agent.
	DeployPowerOn = "power-on"
	// DeployInventory: the agent is up and reports what it sees in-band.
	DeployInventory = "inventory"
	// DeployProgress: bytes written so far.
	DeployProgress = "progress"
	// DeployWritten: the image and the first-boot seed are on the disk.
	DeployWritten = "written"
	// DeployFailed: the agent stopped; FailureClass says why.
	DeployFailed = "failed"
	// DeployBooted: the installed OS booted from the disk and phoned home.
	DeployBooted = "booted"
)

// Failure classes an agent reports. Transient ones (the image server
// down, a dropped connection) the agent retries itself; what reaches the
// lifecycle needs a human.
const (
	FailureChecksum         = "checksum"
	FailureNoDisk           = "no-disk"
	FailureDiskTooSmall     = "disk-too-small"
	FailureImageUnreachable = "image-unreachable"
	// FailureImageInvalid: the bytes are not the format the catalog says.
	FailureImageInvalid = "image-invalid"
	FailureWriteFailed  = "write-failed"
	// FailurePlanInvalid: the plan could not be built or followed (an
	// image gone from the catalog, hints that do not parse).
	FailurePlanInvalid = "plan-invalid"
	// FailureInternal: the boot service or the agent itself failed (e.g.
	// no deploy agent configured).
	FailureInternal = "internal"
)

// DeployReport is one report of the deploy agent of install Attempt.
type DeployReport struct {
	Attempt int    `json:"attempt"`
	Phase   string `json:"phase"`
	// At is when the boot service received it (its clock).
	At time.Time `json:"at"`
	// Inventory is set on DeployInventory.
	Inventory *AgentInventory `json:"inventory,omitempty"`
	// BytesWritten and BytesTotal are the image's progress on the disk.
	BytesWritten int64 `json:"bytesWritten,omitempty"`
	BytesTotal   int64 `json:"bytesTotal,omitempty"`
	// Disk is the disk the root-device hints chose.
	Disk string `json:"disk,omitempty"`
	// ImageMiBPerSecond is the image's write rate; DiskLimitMiBPerSecond a
	// plain sequential write to the same disk in the same run.
	ImageMiBPerSecond     float64 `json:"imageMiBPerSecond,omitempty"`
	DiskLimitMiBPerSecond float64 `json:"diskLimitMiBPerSecond,omitempty"`
	// FailureClass and Failure say why a DeployFailed stopped.
	FailureClass string `json:"failureClass,omitempty"`
	Failure      string `json:"failure,omitempty"`
}

// AgentInventory is what the lifecycle holds against the Redfish
// inspection: the machine as the agent sees it from inside.
type AgentInventory struct {
	// SystemSerial is the DMI serial (/sys/class/dmi/id/product_serial).
	SystemSerial string      `json:"systemSerial,omitempty"`
	MACs         []string    `json:"macs"`
	CPUs         int         `json:"cpus"`
	MemoryBytes  int64       `json:"memoryBytes"`
	Disks        []AgentDisk `json:"disks"`
	// BootSeconds is how long the agent's kernel took to its first report.
	BootSeconds float64 `json:"bootSeconds,omitempty"`
}

// AgentDisk is one disk the agent found.
type AgentDisk struct {
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Model  string `json:"model,omitempty"`
	Serial string `json:"serial,omitempty"`
}

// DecideDeployInput releases install Attempt's plan to its agent, or
// refuses it with Reason (a mismatch staff must look at).
type DecideDeployInput struct {
	Serial  string `json:"serial"`
	Attempt int    `json:"attempt"`
	Release bool   `json:"release"`
	Reason  string `json:"reason,omitempty"`
}

// BootFromDiskInput boots the installed disk.
type BootFromDiskInput struct {
	Serial string `json:"serial"`
	BMC    BMCRef `json:"bmc"`
}

// DeployStatus is the deploy as the status shows it: each phase with its
// time, and the image's progress while it is written.
type DeployStatus struct {
	Attempt int    `json:"attempt"`
	Image   string `json:"image"`
	Phase   string `json:"phase"`
	// PowerOnAt is when the install powered the server on to netboot.
	PowerOnAt   *time.Time `json:"powerOnAt,omitempty"`
	AgentUpAt   *time.Time `json:"agentUpAt,omitempty"`
	WrittenAt   *time.Time `json:"writtenAt,omitempty"`
	RebootAt    *time.Time `json:"rebootAt,omitempty"`
	PhoneHomeAt *time.Time `json:"phoneHomeAt,omitempty"`
	Disk        string     `json:"disk,omitempty"`
	// BytesWritten of BytesTotal, and the write rate once written.
	BytesWritten          int64   `json:"bytesWritten,omitempty"`
	BytesTotal            int64   `json:"bytesTotal,omitempty"`
	ImageMiBPerSecond     float64 `json:"imageMiBPerSecond,omitempty"`
	DiskLimitMiBPerSecond float64 `json:"diskLimitMiBPerSecond,omitempty"`
}
