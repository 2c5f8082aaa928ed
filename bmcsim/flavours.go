package bmcsim

import (
	"strings"
)

// quirks are the behaviours in which vendors' Redfish services differ and
// which clients trip over; they apply to built-in and mockup trees alike.
type quirks struct {
	vendor         string
	dellJobs       bool   // BIOS changes and long operations are iDRAC jobs (JID_...)
	weakETag       bool   // iLO hands out W/"..." tags and @odata.etag in bodies
	volumeAsync    bool   // volume create/delete answer 202 + task
	acceptedBody   bool   // firmware push answers Supermicro's {"Accepted":...} body
	mergedSettings bool   // the BIOS settings object shows every attribute, not only pending ones
	taskPrefix     string // "JID_" for iDRAC
	volumeIDs      string // "dell" for Disk.Virtual.N:<controller>, else numbers
	// resetAccepted is what the service really performs when it advertises
	// something else (Supermicro's merged AllowableValues string).
	resetAccepted []string
}

func quirksFor(vendor string) quirks {
	switch vendor {
	case VendorDell:
		return quirks{vendor: vendor, dellJobs: true, volumeAsync: true, taskPrefix: "JID_", volumeIDs: "dell"}
	case VendorHPE:
		return quirks{vendor: vendor, weakETag: true, mergedSettings: true}
	case VendorSupermicro:
		return quirks{vendor: vendor, volumeAsync: true, acceptedBody: true,
			resetAccepted: []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn"}}
	}
	return quirks{vendor: VendorGeneric}
}

// profile is the shape of a built-in flavour: the IDs bmclib recognises,
// where each vendor puts things, and what it allows.
type profile struct {
	manufacturer, model, product, rootVendor string
	systemID, managerID, chassisID           string
	biosPath, settingsPath                   string
	applyTimes                               []string
	resetTypes                               []string
	bootTargets                              []string
	storageID                                string
	driveIDs                                 []string
	driveBytes                               int64
	raidTypes                                []string
	mediaUnder                               string // "Managers" or "Systems"
	mediaSlots                               [][2]string
	logService                               string
	multipartPush, httpPush                  string
	bmcFirmware, biosFirmware                string
	biosAttributes                           map[string]any
	// secureErase advertises Drive.SecureErase on every drive; one
	// flavour goes without so clients' missing-action path is exercised.
	secureErase bool
}

func profileFor(vendor string) profile {
	switch vendor {
	case VendorDell:
		ctl := "RAID.Integrated.1-1"
		var drives []string
		for _, n := range []string{"0", "1", "2", "3"} {
			drives = append(drives, "Disk.Bay."+n+":Enclosure.Internal.0-1:"+ctl)
		}
		return profile{
			manufacturer: "Dell Inc.", model: "PowerEdge R650", product: "Integrated Dell Remote Access Controller", rootVendor: "Dell",
			systemID: "System.Embedded.1", managerID: "iDRAC.Embedded.1", chassisID: "System.Embedded.1",
			biosPath:     "/redfish/v1/Systems/System.Embedded.1/Bios",
			settingsPath: "/redfish/v1/Systems/System.Embedded.1/Bios/Settings",
			applyTimes:   []string{"OnReset", "AtMaintenanceWindowStart", "InMaintenanceWindowOnReset"},
			resetTypes:   []string{"On", "ForceOff", "ForceRestart", "GracefulRestart", "GracefulShutdown", "PushPowerButton", "Nmi", "PowerCycle"},
			bootTargets:  []string{"None", "Pxe", "Floppy", "Cd", "Hdd", "BiosSetup", "Utilities", "UefiTarget", "SDCard", "UefiHttp"},
			storageID:    ctl, driveIDs: drives, driveBytes: 479559942144,
			raidTypes: []string{"RAID0", "RAID1", "RAID5", "RAID6", "RAID10", "RAID50", "RAID60"}, secureErase: true,
			mediaUnder: "Systems", mediaSlots: [][2]string{{"1", "CD,DVD"}, {"2", "USBStick,Floppy"}},
			logService: "Sel", multipartPush: "/redfish/v1/UpdateService/MultipartUpload", httpPush: "/redfish/v1/UpdateService/FirmwareInventory",
			bmcFirmware: "6.10.30.00", biosFirmware: "1.13.2",
			biosAttributes: map[string]any{
				"BootMode": "Uefi", "LogicalProc": "Enabled", "ProcVirtualization": "Enabled", "SriovGlobalEnable": "Disabled",
				"SysProfile": "PerfPerWattOptimizedDapc", "PxeDev1EnDis": "Enabled", "PxeDev1Interface": "NIC.Integrated.1-1-1",
				"HttpDev1EnDis": "Disabled", "SecureBoot": "Disabled", "NumLock": "On", "EmbSata": "AhciMode", "MemTest": "Disabled",
				"ProcCStates": "Enabled", "BootSeqRetry": "Enabled", "SerialComm": "OnConRedir", "AcPwrRcvryUserDelay": json60(),
			},
		}
	case VendorHPE:
		return profile{
			manufacturer: "HPE", model: "ProLiant DL360 Gen10 Plus", product: "ProLiant DL360 Gen10 Plus", rootVendor: "HPE",
			systemID: "1", managerID: "1", chassisID: "1",
			biosPath:     "/redfish/v1/systems/1/bios/",
			settingsPath: "/redfish/v1/systems/1/bios/settings/",
			resetTypes:   []string{"On", "ForceOff", "GracefulShutdown", "ForceRestart", "Nmi", "PushPowerButton", "GracefulRestart"},
			bootTargets:  []string{"None", "Cd", "Hdd", "Usb", "SDCard", "Utilities", "Diags", "BiosSetup", "Pxe", "UefiShell", "UefiHttp", "UefiTarget"},
			storageID:    "DE00A000", driveIDs: []string{"0", "1", "2", "3"}, driveBytes: 480103981056,
			raidTypes: []string{"None", "RAID0", "RAID1", "RAID10", "RAID5", "RAID50", "RAID6", "RAID60"}, secureErase: true,
			mediaUnder: "Managers", mediaSlots: [][2]string{{"1", "Floppy,USBStick"}, {"2", "CD,DVD"}},
			logService: "IEL", httpPush: "/cgi-bin/uploadFile",
			bmcFirmware: "iLO 5 v3.11", biosFirmware: "U46 v1.80 (03/14/2024)",
			biosAttributes: map[string]any{
				"BootMode": "Uefi", "ProcHyperthreading": "Enabled", "ProcVirtualization": "Enabled", "Sriov": "Enabled",
				"WorkloadProfile": "GeneralPowerEfficientCompute", "NetworkBootRetry": "Enabled", "PowerRegulator": "DynamicPowerSavings",
				"SecureBootStatus": "Disabled", "UefiOptimizedBoot": "Enabled", "PreBootNetwork": "Auto", "IntelligentProvisioning": "Enabled",
				"NetworkBootRetryCount": json20(),
			},
		}
	case VendorSupermicro:
		return profile{
			manufacturer: "Supermicro", model: "X12DPU-6", product: "", rootVendor: "Supermicro",
			systemID: "1", managerID: "1", chassisID: "1",
			biosPath:     "/redfish/v1/Systems/1/Bios",
			settingsPath: "/redfish/v1/Systems/1/Bios/SD",
			// The merged string is what X12 firmware really advertises.
			resetTypes:  []string{"On", "ForceOff", "GracefulShutdownGracefulRestart", "ForceRestart", "Nmi", "ForceOn"},
			bootTargets: []string{"None", "Pxe", "Floppy", "Cd", "Usb", "Hdd", "BiosSetup", "UsbCd", "UefiBootNext", "UefiHttp"},
			storageID:   "HA-RAID", driveIDs: []string{"Disk.Bay.0", "Disk.Bay.1", "Disk.Bay.2", "Disk.Bay.3"}, driveBytes: 960197124096,
			raidTypes:  []string{"RAID0", "RAID1", "RAID5", "RAID6", "RAID10"},
			mediaUnder: "Managers", mediaSlots: [][2]string{{"CD1", "CD,DVD"}, {"USB1", "USBStick"}},
			logService: "Log1", multipartPush: "/redfish/v1/UpdateService/upload",
			bmcFirmware: "01.01.10", biosFirmware: "1.4a",
			biosAttributes: map[string]any{
				"BootModeSelect": "UEFI", "Hyper-Threading": "Enable", "IntelVirtualizationTechnology": "Enable", "SR-IOVSupport": "Enable",
				"QuietBoot": "Enable", "IPv4PXESupport": "Enable", "IPv4HTTPSupport": "Disable", "WatchDogFunction": "Disable",
				"PowerTechnology": "Energy Efficient", "RestoreOnACPowerLoss": "Last State",
			},
		}
	}
	return profile{
		manufacturer: "Metalflow", model: "Simulated Server", product: "Metalflow BMC", rootVendor: "Metalflow",
		systemID: "Self", managerID: "Self", chassisID: "Self",
		biosPath:     "/redfish/v1/Systems/Self/Bios",
		settingsPath: "/redfish/v1/Systems/Self/Bios/Settings",
		applyTimes:   []string{"Immediate", "OnReset"},
		resetTypes:   []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn", "PushPowerButton", "PowerCycle"},
		bootTargets:  []string{"None", "Pxe", "Cd", "Usb", "Hdd", "BiosSetup", "Diags", "UefiShell", "UefiHttp"},
		storageID:    "1", driveIDs: []string{"0", "1", "2", "3"}, driveBytes: 1000204886016,
		raidTypes: []string{"RAID0", "RAID1", "RAID5", "RAID10"}, secureErase: true,
		mediaUnder: "Managers", mediaSlots: [][2]string{{"CD1", "CD,DVD"}, {"USB1", "USBStick,Floppy"}},
		logService: "Log", multipartPush: "/redfish/v1/UpdateService/upload",
		bmcFirmware: "2.1.0", biosFirmware: "1.0.0",
		biosAttributes: map[string]any{
			"BootMode": "Uefi", "Hyperthreading": "Enabled", "Virtualization": "Enabled", "SRIOV": "Disabled",
			"PxeRetry": "Enabled", "SecureBoot": "Disabled", "PowerProfile": "Balanced", "HttpBoot": "Disabled",
		},
	}
}

func json60() any { return numberValue(60) }
func json20() any { return numberValue(20) }

// builtinTree generates a flavour's resource tree. It is the project's own
// model of each vendor's layout, written from the quirks the vendor trees
// show, and is built once per flavour and shared by all its BMCs.
func builtinTree(vendor string) *tree {
	p := profileFor(vendor)
	t := newTree()
	const root = "/redfish/v1"
	sys := root + "/Systems/" + p.systemID
	mgr := root + "/Managers/" + p.managerID
	chs := root + "/Chassis/" + p.chassisID
	stor := sys + "/Storage/" + p.storageID

	t.put("/redfish", map[string]any{"v1": "/redfish/v1/"})
	svc := map[string]any{
		"@odata.type": "#ServiceRoot.v1_11_0.ServiceRoot", "Id": "RootService", "Name": "Root Service",
		"RedfishVersion": "1.13.0", "UUID": "00000000-0000-0000-0000-000000000000",
		"Vendor": p.rootVendor, "Product": p.product,
		"Systems": link(root + "/Systems"), "Managers": link(root + "/Managers"), "Chassis": link(root + "/Chassis"),
		"SessionService": link(root + "/SessionService"), "TaskService": link(root + "/TaskService"),
		"UpdateService": link(root + "/UpdateService"), "AccountService": link(root + "/AccountService"),
		"Links": map[string]any{"Sessions": link(root + "/SessionService/Sessions")},
	}
	if vendor == VendorDell {
		svc["Oem"] = map[string]any{"Dell": map[string]any{"@odata.type": "#DellServiceRoot.v1_0_0.DellServiceRoot", "IsBranded": 0, "ManagerMACAddress": ""}}
	}
	t.put(root, svc)
	t.put(root+"/odata", map[string]any{"@odata.context": "/redfish/v1/$metadata", "value": []any{}})
	collection(t, root+"/Systems", "ComputerSystemCollection", "Computer System Collection", sys)
	collection(t, root+"/Managers", "ManagerCollection", "Manager Collection", mgr)
	collection(t, root+"/Chassis", "ChassisCollection", "Chassis Collection", chs)

	boot := map[string]any{
		"BootSourceOverrideEnabled": "Disabled", "BootSourceOverrideMode": "UEFI", "BootSourceOverrideTarget": "None",
		"BootSourceOverrideTarget@Redfish.AllowableValues":  anyStrings(p.bootTargets),
		"BootSourceOverrideEnabled@Redfish.AllowableValues": anyStrings([]string{"Disabled", "Once", "Continuous"}),
		"BootSourceOverrideMode@Redfish.AllowableValues":    anyStrings([]string{"UEFI", "Legacy"}),
		"BootOrder":   anyStrings([]string{"Boot0001", "Boot0002", "Boot0003"}),
		"BootOptions": link(sys + "/BootOptions"),
	}
	system := map[string]any{
		"@odata.type": "#ComputerSystem.v1_16_0.ComputerSystem", "Id": p.systemID, "Name": "System",
		"SystemType": "Physical", "Manufacturer": p.manufacturer, "Model": p.model, "SKU": "",
		"BiosVersion": p.biosFirmware, "PowerState": "Off", "IndicatorLED": "Off", "HostName": "",
		"Status":           map[string]any{"State": "Enabled", "Health": "OK"},
		"ProcessorSummary": map[string]any{"Count": numberValue(2), "Model": "Intel(R) Xeon(R) Gold 6330 CPU @ 2.00GHz"},
		"MemorySummary":    map[string]any{"TotalSystemMemoryGiB": numberValue(256)},
		"Boot":             boot,
		"Bios":             link(p.biosPath), "Processors": link(sys + "/Processors"), "Memory": link(sys + "/Memory"),
		"Storage": link(sys + "/Storage"), "EthernetInterfaces": link(sys + "/EthernetInterfaces"),
		"NetworkInterfaces": link(sys + "/NetworkInterfaces"),
		"SecureBoot":        link(sys + "/SecureBoot"), "LogServices": link(sys + "/LogServices"),
		"Links": map[string]any{"Chassis": []any{link(chs)}, "ManagedBy": []any{link(mgr)}},
		"Actions": map[string]any{"#ComputerSystem.Reset": map[string]any{
			"target": sys + "/Actions/ComputerSystem.Reset", "ResetType@Redfish.AllowableValues": anyStrings(p.resetTypes)}},
	}
	if p.mediaUnder == "Systems" {
		system["VirtualMedia"] = link(sys + "/VirtualMedia")
	}
	t.put(sys, system)
	collection(t, sys+"/BootOptions", "BootOptionCollection", "Boot Options")
	t.put(sys+"/SecureBoot", map[string]any{"@odata.type": "#SecureBoot.v1_1_0.SecureBoot", "Id": "SecureBoot", "Name": "UEFI Secure Boot",
		"SecureBootEnable": false, "SecureBootCurrentBoot": "Disabled", "SecureBootMode": "SetupMode"})
	collection(t, sys+"/LogServices", "LogServiceCollection", "Log Services")

	var cpus, dimms []string
	for _, n := range []string{"1", "2"} {
		id := sys + "/Processors/CPU" + n
		cpus = append(cpus, id)
		t.put(id, map[string]any{"@odata.type": "#Processor.v1_11_0.Processor", "Id": "CPU" + n, "Name": "Processor " + n,
			"ProcessorType": "CPU", "ProcessorArchitecture": "x86", "InstructionSet": "x86-64", "Manufacturer": "Intel(R) Corporation",
			"Model": "Intel(R) Xeon(R) Gold 6330 CPU @ 2.00GHz", "MaxSpeedMHz": numberValue(3100), "TotalCores": numberValue(28),
			"TotalThreads": numberValue(56), "Socket": "CPU " + n, "Status": map[string]any{"State": "Enabled", "Health": "OK"}})
	}
	for _, n := range []string{"A1", "A2", "B1", "B2"} {
		id := sys + "/Memory/DIMM" + n
		dimms = append(dimms, id)
		t.put(id, map[string]any{"@odata.type": "#Memory.v1_11_0.Memory", "Id": "DIMM" + n, "Name": "DIMM " + n,
			"MemoryDeviceType": "DDR4", "CapacityMiB": numberValue(65536), "OperatingSpeedMhz": numberValue(3200),
			"Manufacturer": "Samsung", "PartNumber": "M393A8G40AB2-CWE", "DeviceLocator": "DIMM " + n,
			"Status": map[string]any{"State": "Enabled", "Health": "OK"}})
	}
	collection(t, sys+"/Processors", "ProcessorCollection", "Processors", cpus...)
	collection(t, sys+"/Memory", "MemoryCollection", "Memory", dimms...)
	// bmclib pairs NetworkPorts with EthernetInterfaces by Id prefix
	// (NIC.Integrated.1-1 / NIC.Integrated.1-1-1), as iDRAC names them.
	adapter := chs + "/NetworkAdapters/NIC.Integrated.1"
	var nics, ports []string
	for _, n := range []string{"1", "2"} {
		id := sys + "/EthernetInterfaces/NIC.Integrated.1-" + n + "-1"
		port := adapter + "/NetworkPorts/NIC.Integrated.1-" + n
		ports = append(ports, port)
		t.put(port, map[string]any{"@odata.type": "#NetworkPort.v1_2_1.NetworkPort", "Id": "NIC.Integrated.1-" + n, "Name": "Port " + n,
			"PhysicalPortNumber": n, "ActiveLinkTechnology": "Ethernet", "LinkStatus": "Up", "CurrentLinkSpeedMbps": numberValue(25000),
			"AssociatedNetworkAddresses": []any{}, "Status": map[string]any{"State": "Enabled", "Health": "OK"}})
		nics = append(nics, id)
		t.put(id, map[string]any{"@odata.type": "#EthernetInterface.v1_6_0.EthernetInterface", "Id": lastSegment(id), "Name": "System Ethernet Interface",
			"MACAddress": "", "PermanentMACAddress": "", "SpeedMbps": numberValue(25000), "LinkStatus": "LinkUp",
			"Status": map[string]any{"State": "Enabled", "Health": "OK"}})
	}
	collection(t, sys+"/EthernetInterfaces", "EthernetInterfaceCollection", "Ethernet Interfaces", nics...)
	collection(t, adapter+"/NetworkPorts", "NetworkPortCollection", "Network Ports", ports...)
	t.put(adapter, map[string]any{"@odata.type": "#NetworkAdapter.v1_5_0.NetworkAdapter", "Id": "NIC.Integrated.1", "Name": "Network Adapter",
		"Manufacturer": "Broadcom Inc. and subsidiaries", "Model": "BCM57414 NetXtreme-E 10Gb/25Gb RDMA Ethernet Controller",
		"SerialNumber": "", "PartNumber": "0GP50Y", "NetworkPorts": link(adapter + "/NetworkPorts"),
		"Controllers": []any{map[string]any{"FirmwarePackageVersion": "22.31.6", "ControllerCapabilities": map[string]any{"NetworkPortCount": numberValue(2)}}},
		"Status":      map[string]any{"State": "Enabled", "Health": "OK"}})
	collection(t, chs+"/NetworkAdapters", "NetworkAdapterCollection", "Network Adapters", adapter)
	collection(t, sys+"/NetworkInterfaces", "NetworkInterfaceCollection", "Network Interfaces", sys+"/NetworkInterfaces/NIC.Integrated.1")
	t.put(sys+"/NetworkInterfaces/NIC.Integrated.1", map[string]any{"@odata.type": "#NetworkInterface.v1_2_0.NetworkInterface",
		"Id": "NIC.Integrated.1", "Name": "Network Interface", "Status": map[string]any{"State": "Enabled", "Health": "OK"},
		"Links": map[string]any{"NetworkAdapter": link(adapter)}, "NetworkPorts": link(adapter + "/NetworkPorts")})

	// BIOS: current attributes and a separate settings object for pending ones.
	bios := map[string]any{
		"@odata.type": "#Bios.v1_2_0.Bios", "Id": "Bios", "Name": "BIOS Configuration Current Settings",
		"AttributeRegistry": "BiosAttributeRegistry.v1_0_0", "Attributes": p.biosAttributes,
		"Actions": map[string]any{
			"#Bios.ResetBios":      map[string]any{"target": strings.TrimRight(p.biosPath, "/") + "/Actions/Bios.ResetBios"},
			"#Bios.ChangePassword": map[string]any{"target": strings.TrimRight(p.biosPath, "/") + "/Actions/Bios.ChangePassword"},
		},
		"@Redfish.Settings": map[string]any{"@odata.type": "#Settings.v1_3_0.Settings", "SettingsObject": link(p.settingsPath)},
	}
	if len(p.applyTimes) > 0 {
		mapOf(bios["@Redfish.Settings"])["SupportedApplyTimes"] = anyStrings(p.applyTimes)
	}
	t.put(p.biosPath, bios)
	t.put(p.settingsPath, map[string]any{"@odata.type": "#Bios.v1_2_0.Bios", "Id": "Settings", "Name": "BIOS Configuration Pending Settings",
		"AttributeRegistry": "BiosAttributeRegistry.v1_0_0", "Attributes": map[string]any{}})

	// Storage with drives and a volume collection that can create RAID sets.
	var driveLinks []string
	for i, d := range p.driveIDs {
		id := stor + "/Drives/" + d
		driveLinks = append(driveLinks, id)
		drive := map[string]any{"@odata.type": "#Drive.v1_12_0.Drive", "Id": d, "Name": "Physical Disk " + itoa(i),
			"CapacityBytes": numberValue(p.driveBytes), "MediaType": "SSD", "Protocol": "SAS", "Manufacturer": "TOSHIBA",
			"Model": "KPM6XRUG480G", "SerialNumber": "", "Revision": "B028", "BlockSizeBytes": numberValue(512),
			"Status": map[string]any{"State": "Enabled", "Health": "OK"}}
		if p.secureErase {
			drive["Actions"] = map[string]any{"#Drive.SecureErase": map[string]any{"target": id + "/Actions/Drive.SecureErase"}}
		}
		t.put(id, drive)
	}
	collection(t, sys+"/Storage", "StorageCollection", "Storage Collection", stor)
	storage := map[string]any{"@odata.type": "#Storage.v1_9_0.Storage", "Id": p.storageID, "Name": "RAID Controller",
		"Drives": linkList(driveLinks), "Drives@odata.count": numberValue(len(driveLinks)),
		"Volumes": link(stor + "/Volumes"), "Status": map[string]any{"State": "Enabled", "Health": "OK"},
		"StorageControllers": []any{map[string]any{"@odata.id": stor + "#/StorageControllers/0", "MemberId": "0", "Name": "RAID Controller",
			"Manufacturer": p.manufacturer, "Model": "RAID Controller 12Gb/s", "FirmwareVersion": "52.16.1-4405",
			"SupportedRAIDTypes": anyStrings(p.raidTypes), "SupportedControllerProtocols": anyStrings([]string{"PCIe"}),
			"SupportedDeviceProtocols": anyStrings([]string{"SAS", "SATA"}), "Status": map[string]any{"State": "Enabled", "Health": "OK"}}},
	}
	t.put(stor, storage)
	vols := map[string]any{"@odata.type": "#VolumeCollection.VolumeCollection", "Name": "Volume Collection", "Members": []any{},
		"Members@odata.count": numberValue(0),
		"@Redfish.CollectionCapabilities": map[string]any{"@odata.type": "#CollectionCapabilities.v1_2_0.CollectionCapabilities",
			"Capabilities": []any{map[string]any{"CapabilitiesObject": link(stor + "/Volumes/Capabilities"), "UseCase": "VolumeCreation",
				"Links": map[string]any{"TargetCollection": link(stor + "/Volumes")}}}},
	}
	t.put(stor+"/Volumes", vols)
	t.put(stor+"/Volumes/Capabilities", map[string]any{"@odata.type": "#Volume.v1_9_0.Volume", "Id": "Capabilities", "Name": "Capabilities for the volume collection",
		"RAIDType@Redfish.RequiredOnCreate": true, "RAIDType@Redfish.AllowableValues": anyStrings(p.raidTypes),
		"Links": map[string]any{"Drives@Redfish.RequiredOnCreate": true}, "DisplayName@Redfish.OptionalOnCreate": true,
		"CapacityBytes@Redfish.OptionalOnCreate": true})

	// Manager with its log service and, where the vendor puts it, virtual media.
	manager := map[string]any{"@odata.type": "#Manager.v1_10_0.Manager", "Id": p.managerID, "Name": "Manager",
		"ManagerType": "BMC", "Description": "Baseboard Management Controller", "FirmwareVersion": p.bmcFirmware,
		"Model": p.product, "PowerState": "On", "Status": map[string]any{"State": "Enabled", "Health": "OK"},
		"EthernetInterfaces": link(mgr + "/EthernetInterfaces"), "LogServices": link(mgr + "/LogServices"),
		"Links": map[string]any{"ManagerForServers": []any{link(sys)}, "ManagerForChassis": []any{link(chs)}},
		"Actions": map[string]any{"#Manager.Reset": map[string]any{"target": mgr + "/Actions/Manager.Reset",
			"ResetType@Redfish.AllowableValues": anyStrings([]string{"GracefulRestart", "ForceRestart"})}},
	}
	if p.mediaUnder == "Managers" {
		manager["VirtualMedia"] = link(mgr + "/VirtualMedia")
	}
	t.put(mgr, manager)
	collection(t, mgr+"/EthernetInterfaces", "EthernetInterfaceCollection", "Manager Ethernet Interfaces", mgr+"/EthernetInterfaces/1")
	t.put(mgr+"/EthernetInterfaces/1", map[string]any{"@odata.type": "#EthernetInterface.v1_6_0.EthernetInterface", "Id": "1", "Name": "Manager Ethernet Interface",
		"MACAddress": "", "SpeedMbps": numberValue(1000), "Status": map[string]any{"State": "Enabled", "Health": "OK"}})
	logSvc := mgr + "/LogServices/" + p.logService
	collection(t, mgr+"/LogServices", "LogServiceCollection", "Log Service Collection", logSvc)
	t.put(logSvc, map[string]any{"@odata.type": "#LogService.v1_1_3.LogService", "Id": p.logService, "Name": "Event Log",
		"ServiceEnabled": true, "MaxNumberOfRecords": numberValue(1024), "OverWritePolicy": "WrapsWhenFull",
		"Entries": link(logSvc + "/Entries"),
		"Actions": map[string]any{"#LogService.ClearLog": map[string]any{"target": logSvc + "/Actions/LogService.ClearLog"}}})
	collection(t, logSvc+"/Entries", "LogEntryCollection", "Log Entries")
	// The SEL is the chassis' log too: bmclib clears it through the chassis.
	collection(t, chs+"/LogServices", "LogServiceCollection", "Log Service Collection", logSvc)
	mediaRoot := root + "/" + p.mediaUnder + "/" + map[string]string{"Managers": p.managerID, "Systems": p.systemID}[p.mediaUnder] + "/VirtualMedia"
	var slots []string
	for _, s := range p.mediaSlots {
		id := mediaRoot + "/" + s[0]
		slots = append(slots, id)
		t.put(id, map[string]any{"@odata.type": "#VirtualMedia.v1_3_0.VirtualMedia", "Id": s[0], "Name": "Virtual Media " + s[0],
			"MediaTypes": anyStrings(strings.Split(s[1], ",")), "Image": nil, "ImageName": "", "Inserted": false, "WriteProtected": true,
			"ConnectedVia": "NotConnected", "TransferProtocolType": nil,
			"Actions": map[string]any{
				"#VirtualMedia.InsertMedia": map[string]any{"target": id + "/Actions/VirtualMedia.InsertMedia"},
				"#VirtualMedia.EjectMedia":  map[string]any{"target": id + "/Actions/VirtualMedia.EjectMedia"},
			}})
	}
	collection(t, mediaRoot, "VirtualMediaCollection", "Virtual Media Services", slots...)

	t.put(chs, map[string]any{"@odata.type": "#Chassis.v1_14_0.Chassis", "Id": p.chassisID, "Name": "Computer System Chassis",
		"ChassisType": "RackMount", "Manufacturer": p.manufacturer, "Model": p.model, "SerialNumber": "", "PartNumber": "",
		"PowerState": "Off", "Status": map[string]any{"State": "Enabled", "Health": "OK"},
		"Power": link(chs + "/Power"), "Thermal": link(chs + "/Thermal"), "NetworkAdapters": link(chs + "/NetworkAdapters"), "LogServices": link(chs + "/LogServices"),
		"Links": map[string]any{"ComputerSystems": []any{link(sys)}, "ManagedBy": []any{link(mgr)}}})
	var psus []any
	for _, n := range []string{"0", "1"} {
		psus = append(psus, map[string]any{"@odata.id": chs + "/Power#/PowerSupplies/" + n, "MemberId": n, "Name": "PS" + n,
			"Manufacturer": p.manufacturer, "Model": "PWR SPLY,800W,RDNT", "PowerCapacityWatts": numberValue(800), "PowerSupplyType": "AC",
			"SerialNumber": "PS" + n + "SIM", "FirmwareVersion": "00.1D.7D", "Status": map[string]any{"State": "Enabled", "Health": "OK"}})
	}
	t.put(chs+"/Power", map[string]any{"@odata.type": "#Power.v1_5_0.Power", "Id": "Power", "Name": "Power", "PowerSupplies": psus})
	t.put(chs+"/Thermal", map[string]any{"@odata.type": "#Thermal.v1_5_0.Thermal", "Id": "Thermal", "Name": "Thermal", "Fans": []any{}, "Temperatures": []any{}})

	t.put(root+"/SessionService", map[string]any{"@odata.type": "#SessionService.v1_1_8.SessionService", "Id": "SessionService",
		"Name": "Session Service", "ServiceEnabled": true, "SessionTimeout": numberValue(1800), "Sessions": link(root + "/SessionService/Sessions")})
	collection(t, root+"/SessionService/Sessions", "SessionCollection", "Session Collection")
	t.put(root+"/TaskService", map[string]any{"@odata.type": "#TaskService.v1_1_4.TaskService", "Id": "TaskService", "Name": "Task Service",
		"ServiceEnabled": true, "CompletedTaskOverWritePolicy": "Oldest", "LifeCycleEventOnTaskStateChange": true,
		"Tasks": link(root + "/TaskService/Tasks")})
	collection(t, root+"/TaskService/Tasks", "TaskCollection", "Task Collection")
	t.put(root+"/AccountService", map[string]any{"@odata.type": "#AccountService.v1_5_0.AccountService", "Id": "AccountService",
		"Name": "Account Service", "ServiceEnabled": true, "Accounts": link(root + "/AccountService/Accounts"),
		"Roles": link(root + "/AccountService/Roles"), "MinPasswordLength": numberValue(4), "MaxPasswordLength": numberValue(127)})
	collection(t, root+"/AccountService/Accounts", "ManagerAccountCollection", "Accounts")
	var roles []string
	for _, r := range []string{"Administrator", "Operator", "ReadOnly"} {
		id := root + "/AccountService/Roles/" + r
		roles = append(roles, id)
		t.put(id, map[string]any{"@odata.type": "#Role.v1_3_1.Role", "Id": r, "Name": r + " Role", "RoleId": r, "IsPredefined": true})
	}
	collection(t, root+"/AccountService/Roles", "RoleCollection", "Roles", roles...)

	upd := map[string]any{"@odata.type": "#UpdateService.v1_8_0.UpdateService", "Id": "UpdateService", "Name": "Update Service",
		"ServiceEnabled": true, "FirmwareInventory": link(root + "/UpdateService/FirmwareInventory"),
		"Actions": map[string]any{"#UpdateService.SimpleUpdate": map[string]any{"target": root + "/UpdateService/Actions/UpdateService.SimpleUpdate",
			"TransferProtocol@Redfish.AllowableValues": anyStrings([]string{"HTTP", "HTTPS"})}}}
	if p.multipartPush != "" {
		upd["MultipartHttpPushUri"] = p.multipartPush
	}
	if p.httpPush != "" {
		upd["HttpPushUri"] = p.httpPush
	}
	t.put(root+"/UpdateService", upd)
	fw := [][3]string{{"BIOS", "BIOS", p.biosFirmware}, {"BMC", "BMC Firmware", p.bmcFirmware}}
	if vendor == VendorDell {
		fw = [][3]string{{"Installed-159-" + p.biosFirmware + "__BIOS.Setup.1-1", "BIOS", p.biosFirmware},
			{"Installed-25227-" + p.bmcFirmware + "__iDRAC.Embedded.1-1", "Integrated Dell Remote Access Controller", p.bmcFirmware}}
	}
	var fwLinks []string
	for _, f := range fw {
		id := root + "/UpdateService/FirmwareInventory/" + f[0]
		fwLinks = append(fwLinks, id)
		t.put(id, map[string]any{"@odata.type": "#SoftwareInventory.v1_4_0.SoftwareInventory", "Id": f[0], "Name": f[1],
			"Version": f[2], "Updateable": true, "Status": map[string]any{"State": "Enabled", "Health": "OK"}})
	}
	collection(t, root+"/UpdateService/FirmwareInventory", "SoftwareInventoryCollection", "Firmware Inventory", fwLinks...)

	if vendor == VendorDell {
		collection(t, mgr+"/Jobs", "DellJobCollection", "JobQueue")
		collection(t, mgr+"/Oem/Dell/Jobs", "DellJobCollection", "JobQueue")
	}
	return t
}

func collection(t *tree, id, typ, name string, members ...string) {
	t.put(id, map[string]any{"@odata.type": "#" + typ + "." + typ, "Name": name,
		"Members": linkList(members), "Members@odata.count": numberValue(len(members))})
}

func anyStrings(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func lastSegment(p string) string {
	p = strings.TrimRight(p, "/")
	return p[strings.LastIndex(p, "/")+1:]
}
