// Package bmcsim simulates a fleet of Redfish BMCs and the servers behind
// them, well enough that real Redfish clients (bmclib, gofish) cannot tell
// them from hardware: every BMC listens on its own socket, keeps sessions,
// ETags, power, boot override, BIOS, RAID volumes, virtual media, tasks and
// logs, and shows the quirks of Dell iDRAC, HPE iLO, Supermicro or a
// generic AMI-style service. A recorded DMTF mockup tree can replace the
// built-in resource tree of a flavour.
//
// # Flavours
//
// Each built-in flavour uses the IDs bmclib recognises and the quirks its
// clients meet on the real hardware:
//
//	dell        Systems/System.Embedded.1, Managers/iDRAC.Embedded.1; BIOS
//	            changes with an apply time become a configuration job
//	            (JID_...) that runs at the next reset, and a second PATCH
//	            while it waits is refused (SYS011); PowerCycle allowed;
//	            virtual media under the system; volume create/delete and
//	            firmware pushes answer 202 with a job; firmware with
//	            OnReset waits (Scheduled) for a host reset.
//	hpe         Systems/1; BIOS at /redfish/v1/systems/1/bios/ and
//	            .../bios/settings/ (lower case, trailing slash); weak ETags,
//	            repeated as @odata.etag; no PowerCycle; volumes created at
//	            once (201); firmware push on /cgi-bin/uploadFile.
//	supermicro  Systems/1; BIOS settings at Bios/SD; ResetType advertised
//	            as the merged "GracefulShutdownGracefulRestart", so gofish
//	            refuses a graceful shutdown the service would accept;
//	            firmware push answers Supermicro's {"Accepted": ...} body.
//	generic     AMI-style Systems/Self, Managers/Self, Chassis/Self with
//	            every standard ResetType and Immediate BIOS apply.
//
// Config.Mockup replaces the resources with a recorded DMTF mockup tree;
// paths match regardless of case and trailing slash, the vendor's quirks
// are guessed from the tree, SessionService, TaskService and
// AccountService are added where the recording lacks them, and RenameIDs
// turns fictional IDs into ones bmclib knows.
//
// # Hosts and netboot
//
// After a power-on with a Pxe or UefiHttp boot override, the host behind a
// BMC fetches Config.BootURL, in which ${mac}, ${mac:hexhyp}, ${serial},
// ${uuid} and ${bmc} are replaced. The script is read as iPXE reads it:
//
//	#!ipxe
//	set base http://10.0.0.1/images
//	kernel ${base}/vmlinuz ip=dhcp cloud-config-url=http://10.0.0.1/config/${mac}
//	initrd ${base}/initrd.img
//	boot
//
// kernel, initrd, imgfetch, module and chain take URLs (relative ones are
// resolved against the script), set defines variables, boot ends the
// script, exit and sanboot boot from the local disk, anything else is
// ignored. Every URL must answer 200 or the boot fails visibly
// (HostInfo.State BootFailed, LastError, a log entry).
//
// The install config is named by a kernel argument, as cloud-init takes it:
// cloud-config-url=URL, or ds=nocloud-net;s=URL/ (then URL/user-data is
// fetched). It is a #cloud-config YAML document; the simulator reads only
// cloud-init's phone_home module:
//
//	#cloud-config
//	phone_home:
//	  url: http://10.0.0.1/phone-home/$INSTANCE_ID
//
// After Config.InstallDelay the host POSTs a form (instance_id, hostname,
// fqdn, mac, uuid; $INSTANCE_ID in the URL is the serial) to that URL, the
// OS counts as installed and later boots from disk reach OSRunning.
//
// # Hosts backed by qemu
//
// Config.QEMU puts a real qemu-system-x86_64 VM (package qemuhost) behind
// the first QEMU.Hosts BMCs. The Redfish surface is unchanged; what it
// drives is real:
//
//	Reset On/ForceOn       start qemu with the boot override of now
//	ForceOff               QMP quit (SIGKILL if qemu does not go)
//	GracefulShutdown       ACPI power button; power cut after
//	                       QEMU.ShutdownTimeout if the guest ignores it
//	ForceRestart,          stop, then start again (a Once override is
//	GracefulRestart,       used up by that boot)
//	PowerCycle
//	PowerState             the VM: no process is Off
//	BootSourceOverride     bootindex order, strict: Pxe = NIC then disk,
//	                       Hdd = disk then CD, Cd = CD then disk
//	BootSourceOverrideMode Legacy = SeaBIOS + iPXE NIC ROM, UEFI = OVMF
//	                       with a per-VM copy of the variable store
//	VirtualMedia (CD)      downloaded over HTTP(S), then put in the VM's
//	                       CD drive (QMP blockdev-change-medium / eject)
//
// A guest reboot ends qemu (-no-reboot) and the BMC boots it again at
// once, so a Once override lasts exactly one boot whichever firmware
// runs. NICs carry the MACs Redfish reports, on qemu's user network or
// on taps enslaved to QEMU.Bridge; the disk is a sparse file kept across
// power cycles (and across runs with QEMU.KeepDisks). The serial console,
// disk, QMP socket and accelerator are in HostInfo.VM (admin endpoint:
// GET /bmcs/{id}). With QEMU.Accel auto, a throw-away VM tries KVM first
// and TCG is used when it fails.
//
// # Faults
//
// Faults (latency, error rate, hang, task exceptions) are set per BMC or
// fleet-wide through Config, SetFaults or the admin endpoint; Reboot and
// DropSessions act once.
package bmcsim
