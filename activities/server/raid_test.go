package server

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

func ctrl(volumes ...hardware.Volume) hardware.StorageController {
	return hardware.StorageController{
		ID:            "RAID.1",
		Drives:        []hardware.Drive{{ID: "d3"}, {ID: "d1"}, {ID: "d0"}, {ID: "d2"}},
		Volumes:       volumes,
		SupportedRAID: []string{"RAID0", "RAID1", "RAID5", "RAID10"},
	}
}

func TestPlanRAID(t *testing.T) {
	root := profiles.LogicalDisk{SizeGB: "MAX", RAIDLevel: "1", IsRootVolume: true}
	cases := []struct {
		name    string
		ctrl    hardware.StorageController
		disks   []profiles.LogicalDisk
		keep    []string
		remove  []string
		create  [][]string // drives of each volume to create
		errType string
	}{
		{name: "empty controller gets the mirror on the first two drives",
			ctrl: ctrl(), disks: []profiles.LogicalDisk{root}, create: [][]string{{"d0", "d1"}}},
		{name: "a matching volume is kept: running twice builds nothing",
			ctrl:  ctrl(hardware.Volume{ID: "v1", RAIDType: "RAID1", DriveIDs: []string{"d0", "d1"}}),
			disks: []profiles.LogicalDisk{root}, keep: []string{"v1"}},
		{name: "a leftover volume of another level is removed and its drives reused",
			ctrl:  ctrl(hardware.Volume{ID: "old", RAIDType: "RAID0", DriveIDs: []string{"d0"}}),
			disks: []profiles.LogicalDisk{root}, remove: []string{"old"}, create: [][]string{{"d0", "d1"}}},
		{name: "kept volume's drives are not reused",
			ctrl:  ctrl(hardware.Volume{ID: "v1", RAIDType: "RAID1", DriveIDs: []string{"d0", "d1"}}),
			disks: []profiles.LogicalDisk{root, {SizeGB: "100", RAIDLevel: "1"}},
			keep:  []string{"v1"}, create: [][]string{{"d2", "d3"}}},
		{name: "named drives are used as named",
			ctrl:   ctrl(),
			disks:  []profiles.LogicalDisk{{RAIDLevel: "1", PhysicalDisks: []string{"d3", "d2"}}},
			create: [][]string{{"d3", "d2"}}},
		{name: "too few drives", ctrl: ctrl(),
			disks: []profiles.LogicalDisk{root, root, root}, errType: stepapi.ErrTypeRAIDImpossible},
		{name: "named drive that does not exist", ctrl: ctrl(),
			disks: []profiles.LogicalDisk{{RAIDLevel: "1", PhysicalDisks: []string{"d0", "d9"}}}, errType: stepapi.ErrTypeRAIDImpossible},
		{name: "level the controller does not offer", ctrl: ctrl(),
			disks: []profiles.LogicalDisk{{RAIDLevel: "6"}}, errType: stepapi.ErrTypeRAIDImpossible},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			plan, err := planRAID(c.ctrl, c.disks)
			if c.errType != "" {
				var ae *temporal.ApplicationError
				require.True(t, errors.As(err, &ae), "got %v", err)
				require.Equal(t, c.errType, ae.Type())
				require.True(t, ae.NonRetryable())
				return
			}
			require.NoError(t, err)
			require.Equal(t, c.keep, plan.keep)
			require.Equal(t, c.remove, plan.remove)
			var got [][]string
			for _, v := range plan.create {
				got = append(got, v.DriveIDs)
				require.Equal(t, "RAID.1", v.ControllerID)
			}
			require.Equal(t, c.create, got)
		})
	}
}

func TestBIOSDiff(t *testing.T) {
	want := map[string]string{"A": "1", "B": "2", "C": "3"}
	require.Empty(t, biosDiff(want, map[string]string{"A": "1", "B": "2", "C": "3", "D": "x"}), "already set: nothing to change, no reset")
	require.Equal(t, map[string]string{"B": "2", "C": "3"}, biosDiff(want, map[string]string{"A": "1", "B": "9"}))
	require.Equal(t, digest(map[string]string{"B": "2", "C": "3"}), digest(map[string]string{"C": "3", "B": "2"}), "the reset key does not depend on map order")
	require.NotEqual(t, digest(map[string]string{"B": "2"}), digest(map[string]string{"B": "3"}))
}
