package bmcsim

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"testing"
	"time"
)

// FuzzRequests feeds the handler arbitrary methods, paths and bodies: every
// answer must be a client error or success with a JSON body, never a 5xx
// or a panic.
func FuzzRequests(f *testing.F) {
	const sys = "/redfish/v1/Systems/Self"
	seeds := []struct {
		method byte
		path   string
		body   string
	}{
		{0, "/redfish/v1/", ""},
		{2, sys, `{"Boot":{"BootSourceOverrideTarget":"Pxe","BootSourceOverrideEnabled":"Continuous"}}`},
		{2, sys, `{"Boot":null}`},
		{1, sys + "/Actions/ComputerSystem.Reset", `{"ResetType":"On"}`},
		{1, sys + "/Actions/ComputerSystem.Reset", `{"ResetType":null}`},
		{1, sys + "/Storage/1/Volumes", `{"RAIDType":"RAID1","Links":{"Drives":[{"@odata.id":"/redfish/v1/Systems/Self/Storage/1/Drives/0"},{}]}}`},
		{1, sys + "/Storage/1/Volumes", `{"RAIDType":"RAID0","Links":{"Drives":"x"},"CapacityBytes":"big"}`},
		{3, sys + "/Storage/1/Volumes/1", ""},
		{2, sys + "/Bios/Settings", `{"Attributes":{"BootMode":["x"]},"@Redfish.SettingsApplyTime":{"ApplyTime":7}}`},
		{1, sys + "/Bios/Actions/Bios.ResetBios", `[]`},
		{1, "/redfish/v1/Managers/Self/VirtualMedia/CD1/Actions/VirtualMedia.InsertMedia", `{"Image":"http://h/x.iso","WriteProtected":"yes"}`},
		{2, "/redfish/v1/Managers/Self/VirtualMedia/CD1", `{"Image":null,"Inserted":1}`},
		{1, "/redfish/v1/SessionService/Sessions", `{"UserName":1,"Password":{}}`},
		{3, "/redfish/v1/SessionService/Sessions/", ""},
		{2, "/redfish/v1/AccountService/Accounts/3", `{"UserName":"x","Password":"pppppp","Enabled":true,"RoleId":"Operator"}`},
		{1, "/redfish/v1/UpdateService/upload", "--x\r\nContent-Disposition: form-data; name=\"UpdateFile\"\r\n\r\nimg\r\n--x--\r\n"},
		{1, "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate", `{"ImageURI":"http://h/fw.bin"}`},
		{0, "/redfish/v1/TaskService/Tasks/1", ""},
		{4, "/redfish/v1/../../etc/passwd", ""},
		{0, "//redfish//v1//Systems//Self//", ""},
	}
	for _, s := range seeds {
		f.Add(s.method, s.path, s.body)
	}
	cfg := quickConfig(VendorGeneric)
	cfg.InsecureHTTP = true
	fleet, err := Start(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = fleet.Close() })
	b := fleet.BMCs()[0]
	methods := []string{"GET", "POST", "PATCH", "DELETE", "PUT", "HEAD"}

	f.Fuzz(func(t *testing.T, m byte, path, body string) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req, err := http.NewRequest(methods[int(m)%len(methods)], "http://bmc"+path, strings.NewReader(body))
		if err != nil {
			t.Skip()
		}
		if strings.Contains(body, "--x") {
			req.Header.Set("Content-Type", "multipart/form-data; boundary=x")
		}
		req.SetBasicAuth(b.username, b.password)
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.ServeHTTP(rec, req)
		}()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("%s %s %q hangs:\n%s", req.Method, path, body, buf[:runtime.Stack(buf, true)])
		}
		if rec.Code >= 500 {
			t.Fatalf("%s %s %q: %d %s", req.Method, path, body, rec.Code, rec.Body.String())
		}
		if rec.Body.Len() > 0 && req.Method != http.MethodHead && !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%s %s: body is not JSON: %s", req.Method, path, rec.Body.String())
		}
	})
}
