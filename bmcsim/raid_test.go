package bmcsim

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stmcginnis/gofish"
	"github.com/stmcginnis/gofish/common"
	gfredfish "github.com/stmcginnis/gofish/redfish"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// gofishStorage logs in with gofish (bmclib has no volume API) and
// returns the client and the system's first storage controller.
func gofishStorage(t *testing.T, b *BMC) (*gofish.APIClient, *gfredfish.Storage) {
	t.Helper()
	c, err := gofish.Connect(gofish.ClientConfig{Endpoint: b.Address(), Username: b.username, Password: b.password, Insecure: true})
	require.NoError(t, err)
	t.Cleanup(c.Logout)
	systems, err := c.Service.Systems()
	require.NoError(t, err)
	require.Len(t, systems, 1)
	storage, err := systems[0].Storage()
	require.NoError(t, err)
	require.NotEmpty(t, storage)
	return c, storage[0]
}

// createVolume POSTs to the Volumes collection and, where the controller
// answers 202, follows the task to its end as an operator tool must.
func createVolume(t *testing.T, c *gofish.APIClient, st *gfredfish.Storage, level string, drives []*gfredfish.Drive) error {
	t.Helper()
	var links []any
	for _, d := range drives {
		links = append(links, map[string]string{"@odata.id": d.ODataID})
	}
	resp, err := c.Post(st.ODataID+"/Volumes", map[string]any{"RAIDType": level, "DisplayName": "os-" + level, "Links": map[string]any{"Drives": links}})
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	return followTask(t, c, resp)
}

func followTask(t *testing.T, c *gofish.APIClient, resp *http.Response) error {
	t.Helper()
	if resp.StatusCode != http.StatusAccepted {
		return nil
	}
	loc := resp.Header.Get("Location")
	require.NotEmpty(t, loc)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		task, err := gfredfish.GetTask(c, loc)
		require.NoError(t, err)
		switch task.TaskState {
		case gfredfish.CompletedTaskState:
			return nil
		case gfredfish.ExceptionTaskState, gfredfish.KilledTaskState, gfredfish.CancelledTaskState:
			return &common.Error{Message: "task " + task.ID + " ended " + string(task.TaskState)}
		}
		time.Sleep(30 * time.Millisecond)
	}
	t.Fatalf("task %s did not finish", loc)
	return nil
}

func TestRAIDVolumesThroughGofish(t *testing.T) {
	for _, vendor := range []string{VendorDell, VendorHPE, VendorSupermicro, VendorGeneric} {
		t.Run(vendor, func(t *testing.T) {
			b := startFleet(t, quickConfig(vendor)).BMCs()[0]
			c, st := gofishStorage(t, b)
			drives, err := st.Drives()
			require.NoError(t, err)
			require.Len(t, drives, 4)
			byID := map[string]*gfredfish.Drive{}
			for _, d := range drives {
				byID[d.ODataID] = d
			}
			ordered := make([]*gfredfish.Drive, 0, 4)
			for _, id := range b.m.storages[0].drives {
				ordered = append(ordered, byID[id])
			}
			size := profileFor(vendor).driveBytes

			volumes, err := st.Volumes()
			require.NoError(t, err)
			assert.Empty(t, volumes)

			require.NoError(t, createVolume(t, c, st, "RAID1", ordered[:2]))
			volumes, err = st.Volumes()
			require.NoError(t, err)
			require.Len(t, volumes, 1)
			assert.Equal(t, gfredfish.RAID1RAIDType, volumes[0].RAIDType)
			assert.EqualValues(t, size, volumes[0].CapacityBytes, "a mirror holds one drive")
			vd, err := volumes[0].Drives()
			require.NoError(t, err)
			assert.Len(t, vd, 2)

			err = createVolume(t, c, st, "RAID0", ordered[1:3])
			var rfErr *common.Error
			require.ErrorAs(t, err, &rfErr)
			assert.Equal(t, http.StatusConflict, rfErr.HTTPReturnedStatusCode, "a drive belongs to one volume")
			err = createVolume(t, c, st, "RAID5", ordered[2:])
			require.ErrorAs(t, err, &rfErr)
			assert.Equal(t, http.StatusBadRequest, rfErr.HTTPReturnedStatusCode, "RAID5 needs three drives")

			resp, err := c.Delete(volumes[0].ODataID)
			require.NoError(t, err)
			require.NoError(t, followTask(t, c, resp))
			resp.Body.Close()
			volumes, err = st.Volumes()
			require.NoError(t, err)
			assert.Empty(t, volumes)

			require.NoError(t, createVolume(t, c, st, "RAID10", ordered))
			volumes, err = st.Volumes()
			require.NoError(t, err)
			require.Len(t, volumes, 1)
			assert.EqualValues(t, 2*size, volumes[0].CapacityBytes)
			assert.Equal(t, gfredfish.RAID10RAIDType, volumes[0].RAIDType)

			cnt := b.Counters()
			assert.Equal(t, 2, cnt.VolumesCreated)
			assert.Equal(t, 1, cnt.VolumesDeleted)
			require.Len(t, b.State().Volumes, 1)
			assert.Equal(t, "RAID10", b.State().Volumes[0].RAIDType)
			wantID := map[string]string{VendorDell: "Disk.Virtual.0:RAID.Integrated.1-1"}[vendor]
			if wantID == "" {
				wantID = "1"
			}
			assert.Equal(t, wantID, b.State().Volumes[0].ID, "the freed number is handed out again")
		})
	}
}

// TestVolumeCreateIsAsyncWhereTheVendorIs: iDRAC and Supermicro answer a
// volume POST with 202 and a task; the volume exists when the task ends.
func TestVolumeCreateIsAsyncWhereTheVendorIs(t *testing.T) {
	for _, tc := range []struct {
		vendor string
		status int
	}{{VendorDell, 202}, {VendorSupermicro, 202}, {VendorHPE, 201}, {VendorGeneric, 201}} {
		t.Run(tc.vendor, func(t *testing.T) {
			cfg := quickConfig(tc.vendor)
			cfg.TaskDuration = 300 * time.Millisecond
			b := startFleet(t, cfg).BMCs()[0]
			c := newRawClient(t, b)
			st := b.m.storages[0]
			r := c.do("POST", st.volumes, map[string]any{"RAIDType": "RAID0",
				"Links": map[string]any{"Drives": []any{map[string]any{"@odata.id": st.drives[0]}}}})
			require.Equal(t, tc.status, r.status)
			loc := r.header.Get("Location")
			require.NotEmpty(t, loc)
			if tc.status == http.StatusCreated {
				assert.Equal(t, "RAID0", c.do("GET", loc, nil).body["RAIDType"])
				return
			}
			assert.Contains(t, loc, "/TaskService/Tasks/")
			assert.Empty(t, memberLinks(c.do("GET", st.volumes, nil).body), "not listed while the controller builds it")
			assert.True(t, b.State().Volumes[0].Building)
			waitFor(t, "task", func() bool { return c.do("GET", loc, nil).body["TaskState"] == "Completed" })
			assert.Len(t, memberLinks(c.do("GET", st.volumes, nil).body), 1)
			if tc.vendor == VendorDell {
				task := c.do("GET", loc, nil)
				job := mapOf(mapOf(task.body["Oem"])["Dell"])
				assert.Equal(t, "Completed", job["JobState"])
				raw, _ := json.Marshal(task.body["Id"])
				assert.Contains(t, string(raw), "JID_")
			}
		})
	}
}
