package server

import (
	"context"
	"errors"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// simMachine is one simulated BMC reached over Redfish/HTTPS, as the
// activities reach real ones.
func simMachine(t *testing.T, vendor string) (hardware.Machine, *bmcsim.BMC) {
	t.Helper()
	f, err := bmcsim.Start(bmcsim.Config{
		Count: 1, Vendor: vendor,
		PostDelay: 100 * time.Millisecond, ShutdownDelay: 50 * time.Millisecond,
		TaskDuration: 100 * time.Millisecond, RebootDuration: 200 * time.Millisecond,
	})
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	b := f.BMCs()[0]
	user, pass := b.Credentials()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	m, err := hardware.Dial(ctx, hardware.Endpoint{Address: b.Address(), Username: user, Password: pass, CACertPEM: f.CACertPEM(), Timeout: 5 * time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m, b
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func attr(r *serverapi.BIOSReport, name string) serverapi.BIOSAttributeReport {
	for _, a := range r.Attributes {
		if a.Name == name {
			return a
		}
	}
	return serverapi.BIOSAttributeReport{}
}

// The report reads what the BMC shows: before a change is applied the
// attribute does not match, after the reset it does; an attribute the BMC
// lacks is missing, and a password-like one never shows its value.
func TestBIOSReportReadsTheBMC(t *testing.T) {
	ctx := testCtx(t)
	m, b := simMachine(t, bmcsim.VendorGeneric)
	want := map[string]string{
		"BootMode":      "Uefi",    // already so
		"SRIOV":         "Enabled", // to be applied
		"NoSuchSetting": "On",      // the BMC has none
		"AdminPassword": "hunter2", // a secret: never in the report
	}
	r := readBIOSReport(ctx, m, want)
	require.NotNil(t, r)
	names := make([]string, 0, len(r.Attributes))
	for _, a := range r.Attributes {
		names = append(names, a.Name)
	}
	require.True(t, sort.StringsAreSorted(names), "sorted by name: %v", names)
	require.Len(t, names, 4)
	require.Equal(t, serverapi.BIOSAttributeReport{Name: "BootMode", Desired: "Uefi", Actual: "Uefi", Match: true}, attr(r, "BootMode"))
	require.Equal(t, serverapi.BIOSAttributeReport{Name: "SRIOV", Desired: "Enabled", Actual: "Disabled"}, attr(r, "SRIOV"))
	require.Equal(t, serverapi.BIOSAttributeReport{Name: "NoSuchSetting", Desired: "On", Missing: true}, attr(r, "NoSuchSetting"))
	require.Equal(t, serverapi.BIOSAttributeReport{Name: "AdminPassword", Desired: serverapi.HiddenValue, Missing: true, Hidden: true}, attr(r, "AdminPassword"))

	require.NoError(t, m.SetBIOS(ctx, map[string]string{"SRIOV": "Enabled"}))
	require.Equal(t, "Disabled", attr(readBIOSReport(ctx, m, want), "SRIOV").Actual, "staged is not applied")
	require.NoError(t, m.SetPower(ctx, hardware.PowerOn), "the simulated host starts off; power-on applies staged settings")
	require.NoError(t, waitBIOS(ctx, m, map[string]string{"SRIOV": "Enabled"}, 50*time.Millisecond))
	require.Equal(t, "Enabled", b.State().BIOS["SRIOV"])
	require.Equal(t, serverapi.BIOSAttributeReport{Name: "SRIOV", Desired: "Enabled", Actual: "Enabled", Match: true}, attr(readBIOSReport(ctx, m, want), "SRIOV"))
}

func TestBIOSReportHidesSecretValues(t *testing.T) {
	r := buildBIOSReport(map[string]string{"SysPwd": "a", "SetupPassword": "b", "TpmSecret": "c", "NumLock": "On"},
		map[string]string{"SysPwd": "a", "SetupPassword": "x", "TpmSecret": "c", "NumLock": "Off"})
	require.Equal(t, []serverapi.BIOSAttributeReport{
		{Name: "NumLock", Desired: "On", Actual: "Off"},
		{Name: "SetupPassword", Desired: serverapi.HiddenValue, Actual: serverapi.HiddenValue, Hidden: true},
		{Name: "SysPwd", Desired: serverapi.HiddenValue, Actual: serverapi.HiddenValue, Match: true, Hidden: true},
		{Name: "TpmSecret", Desired: serverapi.HiddenValue, Actual: serverapi.HiddenValue, Match: true, Hidden: true},
	}, r.Attributes)
	require.Equal(t, map[string]string{"SysPwd": serverapi.HiddenValue, "NumLock": "On"}, redactBIOS(map[string]string{"SysPwd": "a", "NumLock": "On"}))
}

// Desired volumes against the volumes on the controller: the one
// ConfigureRAID would keep matches, a desired one nothing satisfies is
// missing, a volume no desired one accounts for is unexpected.
func TestRAIDReportReadsTheBMC(t *testing.T) {
	ctx := testCtx(t)
	m, _ := simMachine(t, bmcsim.VendorDell)
	ctrls, err := m.Storage(ctx)
	require.NoError(t, err)
	require.Len(t, ctrls, 1)
	d := ctrls[0].Drives
	require.Len(t, d, 4)
	disks := []profiles.LogicalDisk{
		{SizeGB: "MAX", RAIDLevel: "1", IsRootVolume: true},
		{SizeGB: "100", RAIDLevel: "1", PhysicalDisks: []string{d[2].ID, d[3].ID}},
	}

	r := readRAIDReport(ctx, m, disks)
	require.NotNil(t, r)
	require.Equal(t, ctrls[0].ID, r.Controller)
	require.Equal(t, []serverapi.RAIDVolumeReport{
		{Status: serverapi.RAIDMissing, Desired: &serverapi.RAIDVolume{Name: "metalflow-root", RAIDLevel: "RAID1"}},
		{Status: serverapi.RAIDMissing, Desired: &serverapi.RAIDVolume{Name: "metalflow-data", RAIDLevel: "RAID1", SizeBytes: 100_000_000_000, Drives: []string{d[2].ID, d[3].ID}}},
	}, r.Volumes, "an empty controller has none of them")

	root, err := m.CreateVolume(ctx, hardware.VolumeRequest{ControllerID: ctrls[0].ID, RAIDType: "RAID1", DriveIDs: []string{d[1].ID, d[0].ID}, Name: "metalflow-root"})
	require.NoError(t, err)
	stray, err := m.CreateVolume(ctx, hardware.VolumeRequest{ControllerID: ctrls[0].ID, RAIDType: "RAID0", DriveIDs: []string{d[2].ID}, Name: "leftover"})
	require.NoError(t, err)

	r = readRAIDReport(ctx, m, disks)
	require.NotNil(t, r)
	require.Len(t, r.Volumes, 3)
	require.Equal(t, serverapi.RAIDMatch, r.Volumes[0].Status)
	require.Equal(t, "metalflow-root", r.Volumes[0].Desired.Name)
	pair := []string{d[0].ID, d[1].ID}
	sort.Strings(pair)
	require.Equal(t, &serverapi.RAIDVolume{ID: root.ID, Name: "metalflow-root", RAIDLevel: "RAID1", SizeBytes: root.CapacityBytes, Drives: pair}, r.Volumes[0].Actual)
	require.Positive(t, r.Volumes[0].Actual.SizeBytes)
	require.Equal(t, serverapi.RAIDMissing, r.Volumes[1].Status, "the RAID0 on one of its drives is not the data mirror")
	require.Nil(t, r.Volumes[1].Actual)
	require.Equal(t, serverapi.RAIDUnexpected, r.Volumes[2].Status)
	require.Nil(t, r.Volumes[2].Desired)
	require.Equal(t, stray.ID, r.Volumes[2].Actual.ID)
	require.Equal(t, "RAID0", r.Volumes[2].Actual.RAIDLevel)
	require.Equal(t, []string{d[2].ID}, r.Volumes[2].Actual.Drives)
}

// A failure that asks a human carries the report to the workflow, through
// Temporal's failure encoding; a retryable one is left alone.
func TestReportTravelsInAttentionErrors(t *testing.T) {
	rep := &serverapi.BIOSReport{Attributes: []serverapi.BIOSAttributeReport{{Name: "SRIOV", Desired: "Enabled", Actual: "Disabled"}}}
	err := withReport(temporal.NewNonRetryableApplicationError("BIOS settings still not applied after the reset: SRIOV", stepapi.ErrTypeBIOSNotApplied, nil), rep)
	fc := temporal.GetDefaultFailureConverter()
	back := fc.FailureToError(fc.ErrorToFailure(err))
	var appErr *temporal.ApplicationError
	require.True(t, errors.As(back, &appErr))
	require.Equal(t, stepapi.ErrTypeBIOSNotApplied, appErr.Type())
	require.True(t, appErr.NonRetryable())
	require.Equal(t, "BIOS settings still not applied after the reset: SRIOV", appErr.Message())
	require.Equal(t, rep, reportIn[serverapi.BIOSReport](back))
	require.Equal(t, rep, reportIn[serverapi.BIOSReport](err), "in-process too")

	raid := &serverapi.RAIDReport{Controller: "c", Volumes: []serverapi.RAIDVolumeReport{{Status: serverapi.RAIDMissing, Desired: &serverapi.RAIDVolume{Name: "metalflow-root", RAIDLevel: "RAID1"}}}}
	err = withReport(temporal.NewNonRetryableApplicationError("needs 2 free drives", stepapi.ErrTypeRAIDImpossible, nil), raid)
	require.Equal(t, raid, reportIn[serverapi.RAIDReport](fc.FailureToError(fc.ErrorToFailure(err))))

	transient := errors.New("connection refused")
	require.Same(t, transient, withReport(transient, rep))
	retryable := temporal.NewApplicationError("busy", "x")
	require.Nil(t, reportIn[serverapi.BIOSReport](withReport(retryable, rep)))
	require.Nil(t, reportIn[serverapi.BIOSReport](withReport(temporal.NewNonRetryableApplicationError("x", "y", nil), (*serverapi.BIOSReport)(nil))))
}

// reportIn decodes a report from an activity error's details, as the
// lifecycle does when a step parks in attention.
func reportIn[T any](err error) *T {
	var appErr *temporal.ApplicationError
	var r T
	if !errors.As(err, &appErr) || !appErr.HasDetails() || appErr.Details(&r) != nil {
		return nil
	}
	return &r
}
