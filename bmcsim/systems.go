package bmcsim

import (
	"net/http"
	"slices"
	"sort"
	"time"
)

// Power states as Redfish reports them.
const (
	PowerOff         = "Off"
	PowerOn          = "On"
	PowerPoweringOn  = "PoweringOn"
	PowerPoweringOff = "PoweringOff"
)

// BootOverride is the one-time or persistent boot device the BMC will use.
type BootOverride struct {
	Target  string `json:"target"`  // None, Pxe, Hdd, Cd, UefiHttp, ...
	Enabled string `json:"enabled"` // Disabled, Once, Continuous
	Mode    string `json:"mode"`    // UEFI or Legacy
}

type bootOverride = BootOverride

func (b *BMC) renderSystem() map[string]any {
	doc := b.baseDoc(pathKey(b.m.system))
	power := b.hw.power()
	doc["PowerState"] = power
	doc["SerialNumber"] = b.serial
	doc["UUID"] = b.uuid
	boot := mapOf(doc["Boot"])
	if boot == nil {
		boot = map[string]any{}
		doc["Boot"] = boot
	}
	boot["BootSourceOverrideTarget"] = b.boot.Target
	boot["BootSourceOverrideEnabled"] = b.boot.Enabled
	boot["BootSourceOverrideMode"] = b.boot.Mode
	for k, v := range b.systemProps {
		doc[k] = v
	}
	doc["BootProgress"] = map[string]any{"LastState": b.bootProgress(power)}
	if b.m.quirks.vendor == VendorDell && b.bios.jobPending() {
		// iDRAC flags a system with staged BIOS changes.
		oem := mapOf(doc["Oem"])
		if oem == nil {
			oem = map[string]any{}
			doc["Oem"] = oem
		}
		dell := mapOf(oem["Dell"])
		if dell == nil {
			dell = map[string]any{}
			oem["Dell"] = dell
		}
		dell["PendingConfiguration"] = true
	}
	return doc
}

func (b *BMC) bootProgress(power string) string {
	switch {
	case power == PowerOff || power == PowerPoweringOff:
		return "None"
	case power == PowerPoweringOn:
		return "SystemHardwareInitializationComplete"
	case b.host.State == HostOSRunning:
		return "OSRunning"
	case b.host.State == HostNetbooting || b.host.State == HostInstalling:
		return "OSBootStarted"
	}
	return "SetupEntered"
}

func (b *BMC) renderChassis(key string, i int) map[string]any {
	doc := b.baseDoc(key)
	if i == 0 {
		// The first chassis is the server's; others are enclosures.
		doc["SerialNumber"] = b.serial
	}
	doc["PowerState"] = b.hw.power()
	return doc
}

func (b *BMC) renderNIC(key string, i int) map[string]any {
	doc := b.baseDoc(key)
	if i < len(b.macs) {
		doc["MACAddress"] = b.macs[i]
		doc["PermanentMACAddress"] = b.macs[i]
	}
	return doc
}

func (b *BMC) renderStorage(key string, _ int) map[string]any { return b.baseDoc(key) }

func writableSystemProps() []string {
	return []string{"AssetTag", "HostName", "IndicatorLED", "LocationIndicatorActive", "PowerRestorePolicy"}
}

func (b *BMC) patchSystem(body []byte) (*reply, *redfishError) {
	req, rerr := decodeBody(body)
	if rerr != nil {
		return nil, rerr
	}
	if len(req) == 0 {
		return nil, errorf(http.StatusBadRequest, "EmptyJSON", "The request body submitted contained an empty JSON object and the service is unable to process it.")
	}
	next := b.boot
	props := map[string]any{}
	for k, v := range req {
		switch {
		case k == "Boot":
			bm := mapOf(v)
			if bm == nil {
				return nil, errorf(http.StatusBadRequest, "PropertyValueTypeError", "The value for the property Boot is of a different type than the property can accept.", "Boot")
			}
			if err := b.applyBoot(&next, bm); err != nil {
				return nil, err
			}
		case slices.Contains(writableSystemProps(), k):
			props[k] = v
		case k == "@odata.etag" || k == "@odata.id" || k == "@odata.type":
		default:
			if _, ok := b.m.tree.get(b.m.system).body[k]; ok {
				return nil, errorf(http.StatusBadRequest, "PropertyNotWritable", "The property "+k+" is a read only property and cannot be assigned a value.", k)
			}
			return nil, errorf(http.StatusBadRequest, "PropertyUnknown", "The property "+k+" is not in the list of valid properties for the resource.", k)
		}
	}
	if next != b.boot {
		b.logEvent("OK", "Boot override set to "+next.Target+" ("+next.Enabled+", "+next.Mode+")")
	}
	b.boot = next
	for k, v := range props {
		b.systemProps[k] = v
	}
	return b.docReply(b.renderSystem()), nil
}

// applyBoot validates a Boot object as the service's AllowableValues say.
// Read-only members gofish echoes back (BootOrder, BootOptions, ...) are
// accepted and ignored, as real services do.
func (b *BMC) applyBoot(next *BootOverride, bm map[string]any) *redfishError {
	str := func(k string) (string, bool, *redfishError) {
		v, ok := bm[k]
		if !ok {
			return "", false, nil
		}
		s, isStr := v.(string)
		if !isStr {
			return "", false, errorf(http.StatusBadRequest, "PropertyValueTypeError", "The value for the property "+k+" is of a different type than the property can accept.", k)
		}
		return s, true, nil
	}
	target, hasTarget, err := str("BootSourceOverrideTarget")
	if err != nil {
		return err
	}
	enabled, hasEnabled, err := str("BootSourceOverrideEnabled")
	if err != nil {
		return err
	}
	mode, hasMode, err := str("BootSourceOverrideMode")
	if err != nil {
		return err
	}
	if hasTarget {
		if !slices.Contains(b.m.bootTargets, target) {
			return errPropertyValue("BootSourceOverrideTarget", target)
		}
		next.Target = target
		if !hasEnabled && next.Enabled == "Disabled" && target != "None" {
			next.Enabled = "Once"
		}
	}
	if hasEnabled {
		if !slices.Contains([]string{"Disabled", "Once", "Continuous"}, enabled) {
			return errPropertyValue("BootSourceOverrideEnabled", enabled)
		}
		next.Enabled = enabled
	}
	if hasMode {
		if !slices.Contains([]string{"UEFI", "Legacy"}, mode) {
			return errPropertyValue("BootSourceOverrideMode", mode)
		}
		next.Mode = mode
	}
	return nil
}

func (b *BMC) resetSystem(body []byte) (*reply, *redfishError) {
	const action = "ComputerSystem.Reset"
	req, rerr := decodeBody(body)
	if rerr != nil {
		return nil, rerr
	}
	raw, ok := req["ResetType"]
	if !ok {
		return nil, errActionParameterMissing(action, "ResetType")
	}
	rt, _ := raw.(string)
	if !b.m.acceptsReset(rt) {
		return nil, errActionValue(action, "ResetType", rt)
	}
	power := b.hw.power()
	off := power == PowerOff
	notInState := func() *redfishError {
		return errorf(http.StatusConflict, "OperationNotAllowed",
			"The requested reset "+rt+" cannot be performed while the system power state is "+power+".")
	}
	switch rt {
	case "On", "ForceOn":
		switch power {
		case PowerOn:
			return nil, notInState()
		case PowerPoweringOn:
			return &reply{status: http.StatusNoContent}, nil
		}
		b.hw.powerOn("power on")
	case "PushPowerButton":
		if off {
			b.hw.powerOn("power button")
		} else {
			b.hw.shutdown()
		}
	case "ForceOff":
		if off {
			return nil, notInState()
		}
		b.hw.forceOff("forced off")
	case "GracefulShutdown":
		if off {
			return nil, notInState()
		}
		if power != PowerPoweringOff {
			b.hw.shutdown()
		}
	case "ForceRestart", "GracefulRestart":
		if off {
			return nil, notInState()
		}
		b.hw.restart("restart")
	case "PowerCycle", "FullPowerCycle":
		b.hw.restart("power cycle")
	case "Nmi":
		if off {
			return nil, notInState()
		}
		b.logEvent("Critical", "An NMI was sent to the host")
	default:
		b.logEvent("OK", "Reset "+rt+" performed")
	}
	b.counters.Resets++
	return &reply{status: http.StatusNoContent}, nil
}

func (b *BMC) resetManager(body []byte) (*reply, *redfishError) {
	req, rerr := decodeBody(body)
	if rerr != nil {
		return nil, rerr
	}
	rt, _ := req["ResetType"].(string)
	if rt == "" {
		rt = "GracefulRestart"
	}
	if rt != "GracefulRestart" && rt != "ForceRestart" {
		return nil, errActionValue("Manager.Reset", "ResetType", rt)
	}
	// Answer first, then go away, as a BMC restarting its own firmware does.
	go func() {
		time.Sleep(100 * time.Millisecond)
		b.Reboot()
	}()
	return &reply{status: http.StatusNoContent}, nil
}

func sortStrings(s []string) { sort.Strings(s) }
