package hardware

import (
	"context"
	"errors"
	"fmt"
)

// BootBIOSSetup enters firmware setup on the next boot; an operator's
// choice, never the lifecycle's, so it is not among the Machine's devices.
const BootBIOSSetup = "bios"

// OperatorMachine is what a Machine from Dial offers beyond the lifecycle's
// needs, for the `metalflow bmc` tool: a legacy-mode boot override and the
// virtual CD. Type-assert a Machine to it.
type OperatorMachine interface {
	Machine
	// SetBootDeviceMode is SetBootDevice with the firmware mode chosen:
	// uefi=false asks for a legacy BIOS boot. It also takes BootBIOSSetup.
	SetBootDeviceMode(ctx context.Context, device string, once, uefi bool) error
	// InsertMedia mounts an image URL on the virtual CD.
	InsertMedia(ctx context.Context, imageURL string) error
	// EjectMedia empties the virtual CD.
	EjectMedia(ctx context.Context) error
}

// SetBootDeviceMode sets the override through bmclib, in UEFI or legacy mode.
func (s *session) SetBootDeviceMode(ctx context.Context, device string, once, uefi bool) error {
	if _, ok := bootTarget(device); !ok && device != BootBIOSSetup {
		return &Error{Kind: Rejected, Op: "set boot device", Err: fmt.Errorf("unknown boot device %q", device)}
	}
	return s.run(ctx, "set boot device "+device, func() error {
		_, err := s.bmclib().BootDeviceSet(ctx, device, !once, uefi)
		return err
	})
}

// InsertMedia mounts imageURL on the virtual CD through bmclib.
func (s *session) InsertMedia(ctx context.Context, imageURL string) error {
	if imageURL == "" {
		return &Error{Kind: Rejected, Op: "insert media", Err: errors.New("no image URL")}
	}
	return s.run(ctx, "insert media", func() error {
		_, err := s.bmclib().SetVirtualMedia(ctx, "CD", imageURL)
		return err
	})
}

// EjectMedia empties the virtual CD through bmclib.
func (s *session) EjectMedia(ctx context.Context) error {
	return s.run(ctx, "eject media", func() error {
		_, err := s.bmclib().SetVirtualMedia(ctx, "CD", "")
		return err
	})
}
