package bmcsim

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseTreeFaults(t *testing.T) {
	got, err := ParseTreeFaults(" dangling-drive,No-Serial,,dangling-drive ")
	require.NoError(t, err)
	assert.Equal(t, []string{FaultDanglingDrive, FaultNoSerial}, got)
	_, err = ParseTreeFaults("dangling-drive,dangling-disk")
	require.ErrorContains(t, err, `unknown fault "dangling-disk"`)
	assert.ErrorContains(t, err, FaultCountMismatch, "the error lists the faults there are")
}

// TestAdminTreeFaults sets a dangling drive on one BMC through the admin
// endpoint: its controller still lists the drive, whose link answers 404,
// the other BMC is untouched, and an unknown fault changes nothing.
func TestAdminTreeFaults(t *testing.T) {
	cfg := quickConfig(VendorHPE)
	cfg.Count = 2
	cfg.InsecureHTTP = true
	cfg.AdminAddr = "127.0.0.1:0"
	f := startFleet(t, cfg)
	admin := "http://" + f.AdminAddress()
	put := func(path, body string) int {
		req, _ := http.NewRequest(http.MethodPut, admin+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		return resp.StatusCode
	}
	get := func(b *BMC, path string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodGet, b.Address()+path, nil)
		req.SetBasicAuth(b.Credentials())
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var doc map[string]any
		_ = json.Unmarshal(raw, &doc)
		return resp.StatusCode, doc
	}
	lastDrive := func(b *BMC) string {
		_, sys := get(b, f.BMCs()[0].m.system)
		_, coll := get(b, linkOf(sys, "Storage"))
		_, st := get(b, memberLinks(coll)[0])
		drives := anySlice(st["Drives"])
		require.NotEmpty(t, drives)
		return mapOf(drives[len(drives)-1])["@odata.id"].(string)
	}
	one, two := f.BMCs()[0], f.BMCs()[1]
	drive := lastDrive(one)

	require.Equal(t, http.StatusOK, put("/bmcs/bmc-0001/faults", `{"tree":["dangling-drive"]}`))
	assert.Equal(t, drive, lastDrive(one), "the controller still lists the drive")
	status, _ := get(one, drive)
	assert.Equal(t, http.StatusNotFound, status)
	status, _ = get(two, drive)
	assert.Equal(t, http.StatusOK, status, "tree faults set on one BMC stay there")

	assert.Equal(t, http.StatusBadRequest, put("/bmcs/bmc-0001/faults", `{"tree":["dangling-disk"]}`))
	assert.Equal(t, []string{FaultDanglingDrive}, one.Faults().Tree, "bad input changes nothing")
	_, err := Start(Config{Count: 1, Faults: Faults{Tree: []string{"dangling-disk"}}})
	assert.ErrorContains(t, err, "dangling-disk")
}
