// Package hardware is metalflow's one way of talking to a server's BMC:
// power, boot override, BIOS, inventory and RAID volumes over Redfish, with
// bmclib for what it covers and gofish for volumes. Activities and the
// `metalflow bmc` operator tool both use it; tests run it against the
// simulated fleet in package bmcsim.
package hardware

import (
	"context"
	"time"
)

// Endpoint is one BMC and the credential to log in with. The password is
// resolved from the credential store by the caller at call time; it never
// enters workflow history.
type Endpoint struct {
	// Address is https://host[:port] (http:// for plain-HTTP BMCs).
	Address  string
	Username string
	Password string
	// InsecureTLS skips certificate verification (self-signed BMCs).
	InsecureTLS bool
	// CACertPEM, when set, is the CA that signed the BMC's certificate.
	CACertPEM []byte
	// Timeout bounds each HTTP request to the BMC.
	Timeout time.Duration
}

// Power states and actions, as Redfish names them in lower case.
const (
	PowerOn    = "on"
	PowerOff   = "off"
	PowerCycle = "cycle"
	PowerSoft  = "soft"
)

// Boot devices.
const (
	BootPXE      = "pxe"
	BootDisk     = "disk"
	BootCD       = "cdrom"
	BootUEFIHTTP = "uefi_http"
)

// Machine is an open session with one BMC. Close it when done.
type Machine interface {
	// PowerState is "on", "off", "poweringon" or "poweringoff".
	PowerState(ctx context.Context) (string, error)
	// SetPower performs on, off, cycle or soft.
	SetPower(ctx context.Context, action string) error
	// SetBootDevice sets the boot override; once=true for the next boot only.
	SetBootDevice(ctx context.Context, device string, once bool) error
	// BootOverride is the current override (device "" when none) and whether it is once.
	BootOverride(ctx context.Context) (device string, once bool, err error)
	// BIOS returns the current BIOS attributes as strings.
	BIOS(ctx context.Context) (map[string]string, error)
	// PendingBIOS returns attribute values staged for the next reset.
	PendingBIOS(ctx context.Context) (map[string]string, error)
	// SetBIOS stages attribute values; they apply at the next reset.
	SetBIOS(ctx context.Context, attrs map[string]string) error
	// ResetBIOS stages the defaults; they apply at the next reset.
	ResetBIOS(ctx context.Context) error
	// Inventory reads what the server is made of.
	Inventory(ctx context.Context) (Inventory, error)
	// Storage lists controllers with their drives and volumes.
	Storage(ctx context.Context) ([]StorageController, error)
	// CreateVolume builds a RAID volume and waits for the BMC's task.
	CreateVolume(ctx context.Context, req VolumeRequest) (Volume, error)
	// DeleteVolume removes a volume and waits for the BMC's task.
	DeleteVolume(ctx context.Context, volumeID string) error
	// SecureErase erases a drive (Drive.SecureErase) and waits for the task.
	SecureErase(ctx context.Context, driveID string) error
	Close(ctx context.Context) error
}

// Dialer opens a session with a BMC; activities receive one so tests and
// other transports can stand in.
type Dialer func(ctx context.Context, ep Endpoint) (Machine, error)

// Inventory is what inspection records on the asset.
type Inventory struct {
	Vendor       string     `json:"vendor"`
	Model        string     `json:"model"`
	Serial       string     `json:"serial"`
	BIOSVersion  string     `json:"biosVersion,omitempty"`
	BMCFirmware  string     `json:"bmcFirmware,omitempty"`
	CPUs         []CPU      `json:"cpus"`
	MemoryGiB    int        `json:"memoryGiB"`
	Drives       []Drive    `json:"drives"`
	NICs         []NIC      `json:"nics"`
	Firmware     []Firmware `json:"firmware,omitempty"`
	CPUArch      string     `json:"cpuArch,omitempty"`
	TotalCores   int        `json:"totalCores"`
	TotalThreads int        `json:"totalThreads"`
	// Warnings are the parts the BMC would not give: a link that answered
	// an error, a property left out, a collection at odds with itself.
	// The rest of the inventory is what could be read.
	Warnings []InventoryWarning `json:"warnings,omitempty"`
}

// InventoryWarning is one part of the inventory that could not be read.
type InventoryWarning struct {
	// Path is the Redfish resource, as the BMC links it.
	Path  string `json:"path"`
	Error string `json:"error"`
	// Part is what the warning leaves uncertain: PartCPUs, PartMemory,
	// PartDrives, PartNICs, or "" for what no profile requires.
	Part string `json:"part,omitempty"`
}

// The parts of a server a profile sets minimums for.
const (
	PartCPUs   = "cpus"
	PartMemory = "memory"
	PartDrives = "drives"
	PartNICs   = "nics"
)

// CPU is one processor package.
type CPU struct {
	Model   string `json:"model"`
	Cores   int    `json:"cores"`
	Threads int    `json:"threads"`
}

// Drive is one physical disk.
type Drive struct {
	ID            string `json:"id"`
	Model         string `json:"model,omitempty"`
	CapacityBytes int64  `json:"capacityBytes"`
	MediaType     string `json:"mediaType,omitempty"`
	Protocol      string `json:"protocol,omitempty"`
}

// NIC is one network port with its MAC.
type NIC struct {
	ID  string `json:"id"`
	MAC string `json:"mac"`
}

// Firmware is one component's firmware version.
type Firmware struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// StorageController is a Redfish Storage resource.
type StorageController struct {
	ID      string   `json:"id"`
	Drives  []Drive  `json:"drives"`
	Volumes []Volume `json:"volumes"`
	// SupportedRAID lists the levels the controller accepts (e.g. "RAID1").
	SupportedRAID []string `json:"supportedRaid,omitempty"`
}

// Volume is a RAID volume.
type Volume struct {
	ID            string   `json:"id"`
	Name          string   `json:"name,omitempty"`
	RAIDType      string   `json:"raidType"`
	CapacityBytes int64    `json:"capacityBytes"`
	DriveIDs      []string `json:"driveIds"`
}

// VolumeRequest asks for a RAID volume.
type VolumeRequest struct {
	ControllerID string
	// RAIDType is "RAID0", "RAID1", "RAID5", "RAID10".
	RAIDType string
	DriveIDs []string
	Name     string
	// CapacityBytes 0 means all the drives offer (Ironic's "MAX").
	CapacityBytes int64
}

// ErrorKind is what a caller can do about a BMC failure.
type ErrorKind int

const (
	// Transient failures (5xx, timeouts, connection refused, lost session,
	// 412 from a resource that changed under the request) go away by
	// themselves: retry with backoff.
	Transient ErrorKind = iota
	// AuthFailed (401/403) needs a human with the right credential.
	AuthFailed
	// Unsupported means this BMC lacks the feature; retrying cannot help.
	Unsupported
	// Rejected means the BMC refused the request as invalid (400/409).
	Rejected
)

// Error is a BMC failure with its kind.
type Error struct {
	Kind ErrorKind
	Op   string
	Err  error
}

func (e *Error) Error() string { return e.Op + ": " + e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }
