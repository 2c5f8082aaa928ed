package hardware

import (
	"context"
	"errors"
	"fmt"
	"strings"

	gfredfish "github.com/stmcginnis/gofish/redfish"
)

// bootTarget maps metalflow's boot devices to Redfish override targets;
// bmclib's device names are the same words as ours.
func bootTarget(device string) (gfredfish.BootSourceOverrideTarget, bool) {
	switch device {
	case BootPXE:
		return gfredfish.PxeBootSourceOverrideTarget, true
	case BootDisk:
		return gfredfish.HddBootSourceOverrideTarget, true
	case BootCD:
		return gfredfish.CdBootSourceOverrideTarget, true
	case BootUEFIHTTP:
		return gfredfish.UefiHTTPBootSourceOverrideTarget, true
	}
	return "", false
}

// bootDevice is bootTarget backwards; targets metalflow has no name for
// come back as Redfish spells them, in lower case.
func bootDevice(target gfredfish.BootSourceOverrideTarget) string {
	for _, d := range []string{BootPXE, BootDisk, BootCD, BootUEFIHTTP} {
		if t, _ := bootTarget(d); t == target {
			return d
		}
	}
	return strings.ToLower(string(target))
}

// PowerState reads the host's power state in lower case.
func (s *session) PowerState(ctx context.Context) (string, error) {
	var state string
	err := s.run(ctx, "power state", func() error {
		st, err := s.bmclib().PowerStateGet(ctx)
		state = strings.ToLower(st)
		return err
	})
	return state, err
}

// SetPower performs on, off (forced), cycle (forced restart) or soft
// (graceful shutdown). A cycle of a host that is off is Rejected, as
// bmclib refuses it: the caller decides whether "on" is what it meant.
func (s *session) SetPower(ctx context.Context, action string) error {
	switch action {
	case PowerOn, PowerOff, PowerCycle, PowerSoft:
	default:
		return &Error{Kind: Rejected, Op: "set power", Err: fmt.Errorf("unknown power action %q", action)}
	}
	return s.run(ctx, "set power "+action, func() error {
		ok, err := s.bmclib().PowerSet(ctx, action)
		if err != nil && strings.Contains(err.Error(), "is not supported by this service") {
			// gofish checks the advertised AllowableValues first, and
			// Supermicro X12 advertises "GracefulShutdownGracefulRestart" as
			// one word while it performs either; ask the BMC itself.
			return s.resetDirect(ctx, action)
		}
		if err != nil {
			return err
		}
		// bmclib answers ok=false for a graceful shutdown it did request.
		if !ok && action != PowerSoft {
			return errors.New("the BMC did not accept the power change")
		}
		return nil
	})
}

// SetBootDevice sets the boot override through bmclib in the firmware mode
// the system is set to boot in: UEFI, unless its override says Legacy.
// Forcing UEFI switched a server its owner runs in legacy BIOS mode to
// UEFI at the lifecycle's first netboot.
func (s *session) SetBootDevice(ctx context.Context, device string, once bool) error {
	if _, ok := bootTarget(device); !ok {
		return &Error{Kind: Rejected, Op: "set boot device", Err: fmt.Errorf("unknown boot device %q", device)}
	}
	uefi := true
	if err := s.run(ctx, "boot mode", func() error {
		sys, err := s.system(ctx)
		if err != nil {
			return err
		}
		uefi = sys.Boot.BootSourceOverrideMode != gfredfish.LegacyBootSourceOverrideMode
		return nil
	}); err != nil {
		return err
	}
	return s.SetBootDeviceMode(ctx, device, once, uefi)
}

// BootOverride reads Boot back through gofish: bmclib's read-back cannot
// tell a disabled override from a one-time one.
func (s *session) BootOverride(ctx context.Context) (string, bool, error) {
	var (
		device string
		once   bool
	)
	err := s.run(ctx, "boot override", func() error {
		sys, err := s.system(ctx)
		if err != nil {
			return err
		}
		device, once = "", false
		b := sys.Boot
		if b.BootSourceOverrideEnabled == gfredfish.DisabledBootSourceOverrideEnabled || b.BootSourceOverrideEnabled == "" ||
			b.BootSourceOverrideTarget == gfredfish.NoneBootSourceOverrideTarget || b.BootSourceOverrideTarget == "" {
			return nil
		}
		device = bootDevice(b.BootSourceOverrideTarget)
		once = b.BootSourceOverrideEnabled == gfredfish.OnceBootSourceOverrideEnabled
		return nil
	})
	return device, once, err
}

// resetType is the ComputerSystem.Reset a power action performs, the same
// choice bmclib makes.
func resetType(action string) string {
	switch action {
	case PowerOn:
		return "On"
	case PowerOff:
		return "ForceOff"
	case PowerCycle:
		return "ForceRestart"
	}
	return "GracefulShutdown"
}

// resetDirect posts ComputerSystem.Reset without gofish's AllowableValues
// check; the BMC's answer decides.
func (s *session) resetDirect(ctx context.Context, action string) error {
	sys, err := s.system(ctx)
	if err != nil {
		return err
	}
	api, err := s.gofishAPI(ctx)
	if err != nil {
		return err
	}
	var doc struct {
		Actions struct {
			Reset struct {
				Target string `json:"target"`
			} `json:"#ComputerSystem.Reset"`
		} `json:"Actions"`
	}
	if err := getJSON(api, sys.ODataID, &doc); err != nil {
		return err
	}
	if doc.Actions.Reset.Target == "" {
		return &Error{Kind: Unsupported, Op: "reset", Err: errors.New("the system offers no ComputerSystem.Reset")}
	}
	resp, err := api.Post(doc.Actions.Reset.Target, map[string]string{"ResetType": resetType(action)})
	if err != nil {
		return err
	}
	return resp.Body.Close()
}
