// Package agentapi is the contract between the deploy agent (`metalflow
// agent`, running from the agent initramfs on the server being installed)
// and the boot service that serves it. Standard library only: the boot
// service, the lifecycle and the agent all import it.
//
// # Conversation
//
// The server netboots the agent kernel and initramfs with
//
//	console=ttyS0 metalflow.url=<boot service base URL> metalflow.token=<attempt token>
//
// The token is the install attempt's one-time boot token; every request
// carries it as "Authorization: Bearer <token>" and the boot service binds
// every answer to that attempt. The agent then, in order:
//
//  1. POST [PathInventory] an [Inventory] read from /sys and /proc.
//     2xx: accepted. The lifecycle holds it against the Redfish inspection.
//  2. GET [PathPlan]. 200: a [Plan]. 202: not decided yet (e.g. the
//     inventory is still being compared); the agent asks again after the
//     Retry-After header's seconds (default [DefaultRetryAfter]). Any other
//     status ends the run: 401/403/404 mean the token is not (or no longer)
//     an active attempt, 409 that the lifecycle refuses to deploy (body: an
//     [Error]); the agent then stops without a result, since the attempt it
//     would report on is gone or refused.
//  3. POST [PathProgress] a [Progress] every few seconds while it works.
//     The answer is ignored; a failed progress report never fails the
//     install.
//  4. POST [PathResult] exactly one [Result], success or a failure with a
//     [FailureClass], retried until the boot service answers 2xx or the
//     agent gives up. Then the agent powers the machine off: the lifecycle
//     sets the boot device to the disk and powers on over Redfish.
//
// Request bodies are JSON (Content-Type application/json), at most
// [MaxBodyBytes]. Errors from the boot service are JSON [Error] bodies.
package agentapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// The paths, relative to metalflow.url (the boot service's base URL).
const (
	PathPlan      = "/boot/agent/plan"
	PathInventory = "/boot/agent/inventory"
	PathProgress  = "/boot/agent/progress"
	PathResult    = "/boot/agent/result"
)

// The kernel command-line parameters the agent reads.
const (
	ParamURL   = "metalflow.url"
	ParamToken = "metalflow.token"
)

// MaxBodyBytes bounds what the boot service needs to accept: an inventory of
// a server with hundreds of disks and NICs stays well under it.
const MaxBodyBytes = 1 << 20

// DefaultRetryAfter is how long the agent waits after a 202 on PathPlan that
// carries no Retry-After header.
const DefaultRetryAfter = 5 * time.Second

// BearerToken is the token a request carries, for the boot service side.
func BearerToken(r *http.Request) (string, bool) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return token, ok && token != ""
}

// SetBearerToken authorises a request as the attempt's agent.
func SetBearerToken(r *http.Request, token string) {
	r.Header.Set("Authorization", "Bearer "+token)
}

// Error is the body of a non-2xx answer.
type Error struct {
	Message string `json:"message"`
}

// Inventory is what the agent sees of the machine from inside, in-band.
// Sizes are bytes; names are the kernel's.
type Inventory struct {
	CPU    CPU    `json:"cpu"`
	System System `json:"system"`
	// MemoryBytes is the physical memory the kernel manages: online memory
	// blocks times their size, which is closer to the installed DIMMs than
	// MemTotal (MemTotal as a fallback where memory blocks are not exposed).
	MemoryBytes int64  `json:"memory_bytes"`
	Disks       []Disk `json:"disks"`
	NICs        []NIC  `json:"nics"`
	// BootSeconds is the kernel's uptime when the inventory was taken: how
	// long the agent took from kernel start to its first report.
	BootSeconds float64 `json:"boot_seconds"`
}

// CPU is the processors the kernel brought online.
type CPU struct {
	// Count is logical CPUs (threads), as /proc/cpuinfo lists them.
	Count int    `json:"count"`
	Model string `json:"model"`
}

// System is the DMI identity (/sys/class/dmi/id), to match the BMC's.
type System struct {
	Vendor  string `json:"vendor,omitempty"`
	Product string `json:"product,omitempty"`
	Serial  string `json:"serial,omitempty"`
	UUID    string `json:"uuid,omitempty"`
}

// Disk is a whole block device backed by hardware: partitions, loop, ram,
// device-mapper, md and optical drives are left out.
type Disk struct {
	// Name is the kernel name, e.g. "sda", "nvme0n1", "vda".
	Name   string `json:"name"`
	Size   int64  `json:"size"`
	Model  string `json:"model,omitempty"`
	Vendor string `json:"vendor,omitempty"`
	Serial string `json:"serial,omitempty"`
	// WWN is the World Wide Name as udev's ID_WWN spells it ("0x5000c500..."
	// for NAA names, the eui./t10. identifier otherwise); WWNWithExtension
	// and WWNVendorExtension as ID_WWN_WITH_EXTENSION and
	// ID_WWN_VENDOR_EXTENSION, for 16-byte NAA names.
	WWN                string `json:"wwn,omitempty"`
	WWNWithExtension   string `json:"wwn_with_extension,omitempty"`
	WWNVendorExtension string `json:"wwn_vendor_extension,omitempty"`
	Rotational         bool   `json:"rotational"`
	// HCTL is the SCSI address (host:channel:target:lun) of SCSI, SATA and
	// SAS disks.
	HCTL string `json:"hctl,omitempty"`
	// ByPath is the /dev/disk/by-path name udev would give it, e.g.
	// "/dev/disk/by-path/pci-0000:00:04.0", computed from sysfs since the
	// initramfs has no udev.
	ByPath    string `json:"by_path,omitempty"`
	Removable bool   `json:"removable,omitempty"`
}

// NIC is a network interface backed by hardware.
type NIC struct {
	Name string `json:"name"`
	MAC  string `json:"mac"`
	// Link is true when the interface has carrier.
	Link bool `json:"link"`
	// SpeedMbps is the negotiated speed, 0 when unknown or down.
	SpeedMbps int `json:"speed_mbps,omitempty"`
	// Driver is the kernel module bound to it, e.g. "virtio_net", "ixgbe".
	Driver string `json:"driver,omitempty"`
	// IPv4 is the address the agent's DHCP got, if any, in CIDR form.
	IPv4 string `json:"ipv4,omitempty"`
}

// ImageFormat is how the image's bytes are laid out at its URL.
type ImageFormat string

// The formats the agent streams.
const (
	// FormatRaw is the disk's bytes as they are.
	FormatRaw ImageFormat = "raw"
	// FormatRawGzip and FormatRawZstd are a raw image compressed whole.
	FormatRawGzip ImageFormat = "raw+gzip"
	FormatRawZstd ImageFormat = "raw+zstd"
	// FormatQCOW2 is a QEMU copy-on-write v2 or v3 image without a backing
	// file or encryption; compressed clusters (deflate or zstd) are fine.
	FormatQCOW2 ImageFormat = "qcow2"
)

// Image is what to write.
type Image struct {
	// URL is fetched with plain GETs, with Range requests to resume and,
	// for qcow2, to read the image's tables before the data. HTTP(S).
	URL string `json:"url"`
	// SHA256 is the hex digest of the bytes at URL (the compressed or
	// qcow2 file, not the disk contents it expands to).
	SHA256 string      `json:"sha256"`
	Format ImageFormat `json:"format"`
	// Size is the bytes the image occupies on the disk once expanded.
	// Optional: the agent learns it from the qcow2 header or, for raw,
	// Content-Length. Without it for a compressed image, the agent picks a
	// disk without knowing whether the image fits and a too-small disk is
	// found while writing.
	Size int64 `json:"size,omitempty"`
}

// Seed is the first-boot configuration the agent writes for the installed
// OS: a NoCloud data source (a partition labelled "cidata").
type Seed struct {
	InstanceID string `json:"instance_id"`
	Hostname   string `json:"hostname"`
	// SSHAuthorizedKeys go to the default user's authorized_keys.
	SSHAuthorizedKeys []string `json:"ssh_authorized_keys,omitempty"`
	// UserData is extra #cloud-config YAML merged at the top level of the
	// generated user-data (without the "#cloud-config" line). Keys the agent
	// writes itself (hostname, ssh_authorized_keys, phone_home) must not
	// appear in it.
	UserData string `json:"user_data,omitempty"`
	// PhoneHomeURL is where the installed OS's cloud-init posts when it is
	// up, token included (e.g. .../api/v1/boot/phone-home?token=...).
	PhoneHomeURL string `json:"phone_home_url"`
	// MAC selects the NIC the network-config configures with DHCP.
	// Empty: the NIC through which the agent reaches the boot service.
	MAC string `json:"mac,omitempty"`
}

// Plan is what the agent is told to do.
type Plan struct {
	Image      Image           `json:"image"`
	RootDevice RootDeviceHints `json:"root_device"`
	Seed       Seed            `json:"seed"`
	// DiskBenchmarkMiB, when positive, has the agent write that many MiB
	// of zeros to the start of the chosen disk, the same way it writes the
	// image, before writing the image: the disk's sequential write rate,
	// against which the image's write rate is judged (Result.Stats).
	DiskBenchmarkMiB int `json:"disk_benchmark_mib,omitempty"`
}

// RootDeviceHints choose the disk to install to, in Ironic's vocabulary and
// semantics (its "root device hints"): a disk must match every hint given.
//
// String hints are compared case-insensitively, by default for equality;
// an expression may start with an operator: "s==", "s!=", "s>=", "s>",
// "s<=", "s<" (string comparison), "<in>" (substring), or list alternatives
// with "<or>" ("<or> a <or> b"). Name and ByPath may be given with or
// without their "/dev/" and "/dev/disk/by-path/" prefixes.
//
// Size is in GiB (the disk's size divided by 2^30, not rounded): a number
// means equality; an expression may use "==", "!=", ">=", ">", "<=", "<",
// "=" (which, as in Ironic, means ">=") or "<or>".
//
// Several disks matching: the first by kernel name (sda before sdb, sdz
// before sdaa). No hints at all: the smallest disk the image (and the seed
// partition) fits on, so a small boot disk is preferred to large data disks;
// ties go to the first by name. Removable and read-only disks are never
// chosen.
type RootDeviceHints struct {
	Name               string   `json:"name,omitempty"`
	Model              string   `json:"model,omitempty"`
	Vendor             string   `json:"vendor,omitempty"`
	Serial             string   `json:"serial,omitempty"`
	WWN                string   `json:"wwn,omitempty"`
	WWNWithExtension   string   `json:"wwn_with_extension,omitempty"`
	WWNVendorExtension string   `json:"wwn_vendor_extension,omitempty"`
	HCTL               string   `json:"hctl,omitempty"`
	ByPath             string   `json:"by_path,omitempty"`
	Size               SizeHint `json:"size,omitempty"`
	Rotational         *bool    `json:"rotational,omitempty"`
}

// IsZero tells whether no hint is given.
func (h RootDeviceHints) IsZero() bool {
	return h == RootDeviceHints{}
}

// SizeHint is a size expression in GiB. It accepts a JSON number (60) or a
// string with an operator (">= 60"), as Ironic does.
type SizeHint string

// UnmarshalJSON accepts a number or a string.
func (s *SizeHint) UnmarshalJSON(b []byte) error {
	var n json.Number
	if err := json.Unmarshal(b, &n); err == nil {
		if _, err := strconv.ParseInt(n.String(), 10, 64); err != nil {
			return fmt.Errorf("size hint %s: want whole GiB", n)
		}
		*s = SizeHint(n.String())
		return nil
	}
	var str string
	if err := json.Unmarshal(b, &str); err != nil {
		return fmt.Errorf("size hint: want a number or a string, got %s", b)
	}
	*s = SizeHint(str)
	return nil
}

// Phase is what the agent is doing.
type Phase string

// The phases, in order. Progress reports start once the plan is fetched.
const (
	// PhasePlan: probing the image and choosing the disk.
	PhasePlan Phase = "plan"
	// PhaseWipe: erasing the old partition tables and superblocks.
	PhaseWipe Phase = "wipe"
	// PhaseBenchmark: Plan.DiskBenchmarkMiB of zeros to the disk.
	PhaseBenchmark Phase = "benchmark"
	PhaseWrite     Phase = "write"
	// PhaseSeed: moving the backup GPT, adding and filling cidata.
	PhaseSeed Phase = "seed"
)

// Progress is a report while the agent works.
type Progress struct {
	Phase Phase `json:"phase"`
	// Disk is the chosen disk's kernel name, once chosen.
	Disk string `json:"disk,omitempty"`
	// BytesWritten is the image bytes written to the disk so far;
	// BytesDownloaded the bytes fetched from the image URL (they differ
	// for compressed images); BytesTotal the image's expanded size, if
	// known.
	BytesWritten    int64 `json:"bytes_written"`
	BytesDownloaded int64 `json:"bytes_downloaded"`
	BytesTotal      int64 `json:"bytes_total,omitempty"`
	// Message is a line for the operator, e.g. a retry after a dropped
	// connection.
	Message string `json:"message,omitempty"`
}

// FailureClass says why an install failed, for the lifecycle to decide
// between retrying and parking the server for a person.
type FailureClass string

// The classes.
const (
	// ClassChecksum: the image's SHA-256 differs from the plan's.
	ClassChecksum FailureClass = "checksum"
	// ClassNoDisk: no disk matches the root device hints (or there is no
	// disk at all).
	ClassNoDisk FailureClass = "no-disk"
	// ClassDiskTooSmall: the chosen disk cannot hold the image and the
	// seed partition.
	ClassDiskTooSmall FailureClass = "disk-too-small"
	// ClassImageUnreachable: the image URL answered 4xx, or 5xx / dropped
	// connections past the agent's retries.
	ClassImageUnreachable FailureClass = "image-unreachable"
	// ClassImageInvalid: the bytes are not the declared format (bad
	// compression, an unsupported qcow2 feature such as a backing file,
	// no partition table to add the seed to).
	ClassImageInvalid FailureClass = "image-invalid"
	// ClassWriteFailed: the disk refused a write or a flush.
	ClassWriteFailed FailureClass = "write-failed"
	// ClassPlanInvalid: the plan is malformed (unknown format, bad hint
	// expression, missing checksum).
	ClassPlanInvalid FailureClass = "plan-invalid"
	// ClassInternal: anything else, e.g. the agent cannot read /sys.
	ClassInternal FailureClass = "internal"
)

// Result is the agent's last word on the attempt.
type Result struct {
	Succeeded bool `json:"succeeded"`
	// Class and Reason say why it failed; empty on success.
	Class  FailureClass `json:"class,omitempty"`
	Reason string       `json:"reason,omitempty"`
	// Disk is the disk chosen (absent if none was).
	Disk *Disk `json:"disk,omitempty"`
	// DiskWiped is true when, after a failure past the start of writing,
	// the agent erased the disk's boot signatures again so that it cannot
	// boot a half-written image. Succeeded is false whenever it is set.
	DiskWiped bool  `json:"disk_wiped,omitempty"`
	Stats     Stats `json:"stats"`
}

// Stats measure the install.
type Stats struct {
	// ImageBytes is the bytes written to the disk for the image (expanded),
	// DownloadedBytes the bytes fetched (after retries, without repeats).
	ImageBytes      int64 `json:"image_bytes"`
	DownloadedBytes int64 `json:"downloaded_bytes"`
	// Resumes is how many times the download was resumed with a Range
	// request after a 5xx or a dropped connection.
	Resumes int `json:"resumes"`
	// WriteSeconds is from the first image byte requested to the image
	// flushed to the disk; ImageMiBps = ImageBytes / WriteSeconds.
	WriteSeconds float64 `json:"write_seconds"`
	ImageMiBps   float64 `json:"image_mib_s"`
	// DiskMiBps is the plan's disk benchmark (0 when not asked): plain
	// sequential writes, through the same writer, flushed.
	DiskMiBps float64 `json:"disk_mib_s,omitempty"`
	// TotalSeconds is from the agent's start to the result.
	TotalSeconds float64 `json:"total_seconds"`
}
