package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// ConfigureBIOS diffs the wanted attributes against the current ones,
// stages only the difference, resets the server once (see resetOnce), and
// waits until the BIOS reports the new values. Nothing to change means no
// reset.
func (p *Provisioning) ConfigureBIOS(ctx context.Context, in serverapi.ConfigureBIOSInput) (serverapi.ConfigureBIOSResult, error) {
	prof, err := p.Profiles.Select(in.Profile, in.Vendor, "")
	if err != nil {
		return serverapi.ConfigureBIOSResult{}, temporal.NewNonRetryableApplicationError(err.Error(), stepapi.ErrTypeUnknownProfile, nil)
	}
	want := prof.DesiredBIOS(in.Vendor)
	var res serverapi.ConfigureBIOSResult
	err = p.withMachine(ctx, in.BMC, func(m hardware.Machine) error {
		err := p.applyBIOS(ctx, m, in, prof.Name, want, &res)
		// The apply's own deadline may have passed; the read-back gets
		// what is left of the activity's.
		res.Report = readBIOSReport(ctx, m, want)
		return err
	})
	return res, withReport(err, res.Report)
}

// applyBIOS stages the difference, resets once and waits for it to show.
func (p *Provisioning) applyBIOS(ctx context.Context, m hardware.Machine, in serverapi.ConfigureBIOSInput, profile string, want map[string]string, res *serverapi.ConfigureBIOSResult) error {
	cur, err := m.BIOS(ctx)
	if err != nil {
		return err
	}
	diff := biosDiff(want, cur)
	if len(diff) == 0 {
		return nil
	}
	res.Changed = redactBIOS(diff)
	var unknown []string
	for k := range diff {
		if _, ok := cur[k]; !ok {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) > 0 {
		sort.Strings(unknown)
		return mismatch("BIOS has no attribute %s (profile %q, vendor %s)", strings.Join(unknown, ", "), profile, in.Vendor)
	}
	if err := p.stageBIOS(ctx, m, diff); err != nil {
		return err
	}
	// One reset per generation and change set, even if this activity
	// runs twice or died anywhere in the middle.
	reset, err := p.resetOnce(ctx, m, in.Serial, fmt.Sprintf("bios-reset/%d/%s", in.Generation, digest(diff)))
	if err != nil {
		return err
	}
	res.Reset = reset
	applyTimeout := in.ApplyTimeout
	if applyTimeout <= 0 {
		applyTimeout = 10 * time.Minute
	}
	wctx, cancel := context.WithTimeout(ctx, applyTimeout)
	defer cancel()
	return waitBIOS(wctx, m, diff, in.PollInterval)
}

// stageBIOS writes the difference unless it is staged already; a BMC that
// refuses a second write while a job is pending (iDRAC) is fine when the
// pending values are the ones wanted.
func (p *Provisioning) stageBIOS(ctx context.Context, m hardware.Machine, diff map[string]string) error {
	if pending, err := m.PendingBIOS(ctx); err == nil && len(biosDiff(diff, pending)) == 0 {
		return nil
	}
	err := m.SetBIOS(ctx, diff)
	if err == nil {
		return nil
	}
	if pending, perr := m.PendingBIOS(ctx); perr == nil && len(biosDiff(diff, pending)) == 0 {
		return nil
	}
	return err
}

// resetOnce makes staged settings apply and boot overrides take effect
// with one reset per key, however often the calling activity runs and
// wherever a dying worker cut a run short. The reset is an off and an on
// (not a cycle) so that it can be recorded in between, while the host is
// off: a later run that finds the record and the host running knows the
// reset happened; one that finds it off owes the power-on. (Recording
// before a cycle could not tell a host that was cycled from one that never
// was, when the host was running to begin with.) It says whether this run
// turned the host on.
func (p *Provisioning) resetOnce(ctx context.Context, m hardware.Machine, serial, key string) (bool, error) {
	done, err := p.Inventory.Recorded(ctx, serial, key)
	if err != nil {
		return false, err
	}
	state, err := m.PowerState(ctx)
	if err != nil {
		return false, err
	}
	if state != hardware.PowerOff {
		if done {
			return false, nil
		}
		if err := m.SetPower(ctx, hardware.PowerOff); err != nil {
			return false, err
		}
		if err := waitPowerOff(ctx, m); err != nil {
			return false, err
		}
	}
	if _, err := p.Inventory.RecordOnce(ctx, serial, key); err != nil {
		return false, err
	}
	return true, m.SetPower(ctx, hardware.PowerOn)
}

// waitPowerOff waits until the BMC reports the host off: a BMC still
// showing "On" just after a forced off would make the following "on" a
// no-op in bmclib (already on) and leave the host off.
func waitPowerOff(ctx context.Context, m hardware.Machine) error {
	for {
		state, err := m.PowerState(ctx)
		if err != nil || state == hardware.PowerOff {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func waitBIOS(ctx context.Context, m hardware.Machine, want map[string]string, every time.Duration) error {
	if every <= 0 {
		every = 2 * time.Second
	}
	for {
		cur, err := m.BIOS(ctx)
		if err == nil && len(biosDiff(want, cur)) == 0 {
			return nil
		}
		activity.RecordHeartbeat(ctx, "waiting for BIOS settings to apply")
		select {
		case <-ctx.Done():
			left := want
			if cur != nil {
				left = biosDiff(want, cur)
			}
			// Names only: values may be secrets, and the message goes into
			// workflow history (the report shows them, hidden where needed).
			names := make([]string, 0, len(left))
			for k := range left {
				names = append(names, k)
			}
			sort.Strings(names)
			return temporal.NewNonRetryableApplicationError(
				"BIOS settings still not applied after the reset: "+strings.Join(names, ", "), stepapi.ErrTypeBIOSNotApplied, nil)
		case <-time.After(every):
		}
	}
}

// biosDiff is what of want cur does not already have.
func biosDiff(want, cur map[string]string) map[string]string {
	out := map[string]string{}
	for k, v := range want {
		if cur[k] != v {
			out[k] = v
		}
	}
	return out
}

// redactBIOS is a change set fit for workflow history.
func redactBIOS(m map[string]string) map[string]string {
	out := make(map[string]string, len(m))
	for k, v := range m {
		if secretAttribute(k) {
			v = serverapi.HiddenValue
		}
		out[k] = v
	}
	return out
}

func digest(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s;", k, m[k])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}
