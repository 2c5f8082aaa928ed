package server

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strings"

	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// What the BMC shows after ConfigureBIOS / ConfigureRAID, against what the
// profile asked for: the operator's answer to "did it take?", on success and
// when the step waits for a human. Reports travel in activity results and
// error details, i.e. in workflow history, so secret values never go in.

// secretAttribute says whether a BIOS attribute holds a secret by its name
// (AdminPassword, SysPwd, …): vendors have no common marker for it.
func secretAttribute(name string) bool {
	n := strings.ToLower(name)
	for _, s := range []string{"password", "passwd", "pwd", "secret", "passphrase"} {
		if strings.Contains(n, s) {
			return true
		}
	}
	return false
}

// buildBIOSReport compares want with what the BMC reports, sorted by name.
func buildBIOSReport(want, cur map[string]string) *serverapi.BIOSReport {
	r := &serverapi.BIOSReport{Attributes: make([]serverapi.BIOSAttributeReport, 0, len(want))}
	for name, desired := range want {
		actual, ok := cur[name]
		a := serverapi.BIOSAttributeReport{Name: name, Desired: desired, Actual: actual, Match: ok && actual == desired, Missing: !ok}
		if secretAttribute(name) {
			a.Desired, a.Hidden = serverapi.HiddenValue, true
			if ok {
				a.Actual = serverapi.HiddenValue
			}
		}
		r.Attributes = append(r.Attributes, a)
	}
	sort.Slice(r.Attributes, func(i, j int) bool { return r.Attributes[i].Name < r.Attributes[j].Name })
	return r
}

// readBIOSReport reads the BIOS back; nil when the BMC cannot say (the
// step's own error is what matters then).
func readBIOSReport(ctx context.Context, m hardware.Machine, want map[string]string) *serverapi.BIOSReport {
	if len(want) == 0 {
		return &serverapi.BIOSReport{Attributes: []serverapi.BIOSAttributeReport{}}
	}
	cur, err := m.BIOS(ctx)
	if err != nil {
		return nil
	}
	return buildBIOSReport(want, cur)
}

// desiredVolume is a logical disk of the profile as ConfigureRAID would
// create it.
func desiredVolume(d profiles.LogicalDisk) serverapi.RAIDVolume {
	name := "metalflow-data"
	if d.IsRootVolume {
		name = "metalflow-root"
	}
	// A size the profile check would refuse reads as MAX here; the step
	// itself fails on it with the reason.
	size, _ := d.SizeBytes()
	return serverapi.RAIDVolume{Name: name, RAIDLevel: profiles.RedfishRAIDType(d.RAIDLevel), SizeBytes: size, Drives: slices.Clone(d.PhysicalDisks)}
}

func foundVolume(v hardware.Volume) *serverapi.RAIDVolume {
	drives := slices.Clone(v.DriveIDs)
	sort.Strings(drives)
	return &serverapi.RAIDVolume{ID: v.ID, Name: v.Name, RAIDLevel: v.RAIDType, SizeBytes: v.CapacityBytes, Drives: drives}
}

// buildRAIDReport pairs volumes with desired disks by the rule ConfigureRAID
// keeps volumes by (volumeSatisfies), so "match" means "the step would
// leave it alone".
func buildRAIDReport(ctrl hardware.StorageController, disks []profiles.LogicalDisk) *serverapi.RAIDReport {
	r := &serverapi.RAIDReport{Controller: ctrl.ID, Volumes: []serverapi.RAIDVolumeReport{}}
	used := make([]bool, len(ctrl.Volumes))
	for _, d := range disks {
		want := desiredVolume(d)
		entry := serverapi.RAIDVolumeReport{Status: serverapi.RAIDMissing, Desired: &want}
		for i, v := range ctrl.Volumes {
			if used[i] || !volumeSatisfies(v, d) {
				continue
			}
			used[i] = true
			entry.Status, entry.Actual = serverapi.RAIDMatch, foundVolume(v)
			break
		}
		r.Volumes = append(r.Volumes, entry)
	}
	for i, v := range ctrl.Volumes {
		if !used[i] {
			r.Volumes = append(r.Volumes, serverapi.RAIDVolumeReport{Status: serverapi.RAIDUnexpected, Actual: foundVolume(v)})
		}
	}
	return r
}

// readRAIDReport reads the controllers back; nil when the BMC cannot say.
func readRAIDReport(ctx context.Context, m hardware.Machine, disks []profiles.LogicalDisk) *serverapi.RAIDReport {
	ctrls, err := m.Storage(ctx)
	if err != nil {
		return nil
	}
	if len(ctrls) == 0 {
		r := &serverapi.RAIDReport{Volumes: []serverapi.RAIDVolumeReport{}}
		for _, d := range disks {
			want := desiredVolume(d)
			r.Volumes = append(r.Volumes, serverapi.RAIDVolumeReport{Status: serverapi.RAIDMissing, Desired: &want})
		}
		return r
	}
	ctrl, err := pickController(ctrls, disks)
	if err != nil {
		return nil
	}
	return buildRAIDReport(ctrl, disks)
}

// withReport puts report into a failure that asks for a human (a
// non-retryable application error) as its details, so the workflow can
// show what the BMC has while the server waits. Other errors are retried
// and pass unchanged.
func withReport[R any](err error, report *R) error {
	var appErr *temporal.ApplicationError
	if err == nil || report == nil || !errors.As(err, &appErr) || !appErr.NonRetryable() || appErr.HasDetails() {
		return err
	}
	return temporal.NewApplicationErrorWithOptions(appErr.Message(), appErr.Type(), temporal.ApplicationErrorOptions{
		NonRetryable: true, Cause: appErr.Unwrap(), Details: []any{*report},
	})
}
