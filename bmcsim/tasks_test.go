package bmcsim

import (
	"bytes"
	"context"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/bmc-toolbox/bmclib/v2/constants"
	"github.com/bmc-toolbox/bmclib/v2/providers/dell"
	"github.com/go-logr/logr"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dellFirmware drives bmclib's iDRAC provider: upload, then poll the job.
// The provider is used directly because bmclib v2.3.5's Client has no
// option for the iDRAC provider's port (it always dials 443).
func dellFirmware(t *testing.T, b *BMC) (*dell.Conn, context.Context, string) {
	t.Helper()
	u, _ := url.Parse(b.Address())
	cl := dell.New(u.Hostname(), b.username, b.password, logr.Discard(), dell.WithPort(u.Port()))
	// bmclib's iDRAC upload insists on ten minutes of deadline.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	t.Cleanup(cancel)
	require.NoError(t, cl.Open(ctx))
	t.Cleanup(func() { _ = cl.Close(context.Background()) })
	img := filepath.Join(t.TempDir(), "BIOS_1.14.0.EXE")
	require.NoError(t, os.WriteFile(img, bytes.Repeat([]byte("firmware"), 4096), 0o600))
	f, err := os.Open(img)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	taskID, err := cl.FirmwareInstallUploadAndInitiate(ctx, "bios", f)
	require.NoError(t, err)
	require.NotEmpty(t, taskID)
	return cl, ctx, taskID
}

func TestDellFirmwareJobWaitsForHostReset(t *testing.T) {
	b := startFleet(t, quickConfig(VendorDell)).BMCs()[0]
	cl, ctx, taskID := dellFirmware(t, b)
	status := func() constants.TaskState {
		st, _, err := cl.FirmwareTaskStatus(ctx, constants.FirmwareInstallStepUploadInitiateInstall, "bios", taskID, "1.14.0")
		require.NoError(t, err)
		return st
	}
	assert.Equal(t, constants.PowerCycleHost, status(), "an OnReset job is Scheduled until the host resets")
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, constants.PowerCycleHost, status(), "time alone does not run it")

	_, err := cl.PowerSet(ctx, "on")
	require.NoError(t, err)
	waitFor(t, "firmware job", func() bool { return status() == constants.Complete })
	assert.Equal(t, 1, b.Counters().FirmwareUpdates)
}

func TestTaskExceptionFault(t *testing.T) {
	cfg := quickConfig(VendorDell)
	cfg.Faults.TaskException = true
	b := startFleet(t, cfg).BMCs()[0]
	cl, ctx, taskID := dellFirmware(t, b)
	_, err := cl.PowerSet(ctx, "on")
	require.NoError(t, err)
	var info string
	waitFor(t, "job failure", func() bool {
		st, i, err := cl.FirmwareTaskStatus(ctx, constants.FirmwareInstallStepUploadInitiateInstall, "bios", taskID, "1.14.0")
		info = i
		return err == nil && st == constants.Failed
	})
	assert.Contains(t, info, "Failed")
	c := b.Counters()
	assert.Equal(t, 0, c.FirmwareUpdates, "a failed job changes nothing")
	assert.Equal(t, 1, c.TasksFailed)
}

// TestFirmwarePushAnswers202WithTask: bmclib treats anything but 202 with
// a task location as a failed upload; Supermicro adds its Accepted body.
func TestFirmwarePushAnswers202WithTask(t *testing.T) {
	for _, vendor := range []string{VendorGeneric, VendorSupermicro, VendorHPE} {
		t.Run(vendor, func(t *testing.T) {
			b := startFleet(t, quickConfig(vendor)).BMCs()[0]
			c := newRawClient(t, b)
			us := c.do("GET", "/redfish/v1/UpdateService", nil).body
			push, _ := us["MultipartHttpPushUri"].(string)
			var body bytes.Buffer
			ctype := "application/octet-stream"
			if push != "" {
				mw := multipart.NewWriter(&body)
				pw, _ := mw.CreateFormField("UpdateParameters")
				_, _ = pw.Write([]byte(`{"Targets":[],"@Redfish.OperationApplyTime":"Immediate"}`))
				fw, _ := mw.CreateFormFile("UpdateFile", "bmc.bin")
				_, _ = fw.Write([]byte("image"))
				require.NoError(t, mw.Close())
				ctype = mw.FormDataContentType()
			} else {
				push, _ = us["HttpPushUri"].(string)
				body.WriteString("image")
			}
			require.NotEmpty(t, push)
			req, _ := http.NewRequest("POST", b.Address()+push, &body)
			req.Header.Set("Content-Type", ctype)
			req.SetBasicAuth(b.username, b.password)
			resp, err := c.http.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, http.StatusAccepted, resp.StatusCode)
			loc := resp.Header.Get("Location")
			assert.Contains(t, loc, "/TaskService/Tasks/")
			states := map[string]bool{}
			waitFor(t, "task completion", func() bool {
				s, _ := c.do("GET", loc, nil).body["TaskState"].(string)
				states[s] = true
				return s == "Completed"
			})
			assert.True(t, states["Starting"] || states["Running"], "tasks progress over time: %v", states)
			tasks := c.do("GET", "/redfish/v1/TaskService/Tasks", nil)
			assert.Contains(t, memberLinks(tasks.body), loc)
			assert.Equal(t, 1, b.Counters().FirmwareUpdates)
		})
	}
}
