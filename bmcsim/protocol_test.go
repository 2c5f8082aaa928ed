package bmcsim

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCrawl walks every link of every built-in flavour: each resource must
// answer 200 with an ETag and describe itself at the URI it was linked by.
func TestCrawl(t *testing.T) {
	for _, vendor := range []string{VendorDell, VendorHPE, VendorSupermicro, VendorGeneric} {
		t.Run(vendor, func(t *testing.T) {
			b := startFleet(t, quickConfig(vendor)).BMCs()[0]
			c := newRawClient(t, b)
			seen := map[string]bool{}
			queue := []string{"/redfish/v1/"}
			for len(queue) > 0 {
				p := queue[0]
				queue = queue[1:]
				if seen[pathKey(p)] {
					continue
				}
				seen[pathKey(p)] = true
				r := c.do("GET", p, nil)
				require.Equal(t, http.StatusOK, r.status, p)
				etag := r.header.Get("ETag")
				assert.NotEmpty(t, etag, "ETag on %s", p)
				if vendor == VendorHPE {
					assert.True(t, strings.HasPrefix(etag, `W/"`), "iLO tags are weak: %s", etag)
				}
				if id, ok := r.body["@odata.id"].(string); ok {
					assert.Equal(t, pathKey(p), pathKey(id), "self link of %s", p)
				}
				walkLinks(r.body, func(l string) {
					if strings.HasPrefix(l, "/redfish/v1") && !strings.Contains(l, "#") {
						queue = append(queue, l)
					}
				})
			}
			assert.Greater(t, len(seen), 40, "the tree is a whole server, not a stub")
		})
	}
}

func walkLinks(v any, visit func(string)) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if s, ok := e.(string); ok && k == "@odata.id" {
				visit(s)
				continue
			}
			walkLinks(e, visit)
		}
	case []any:
		for _, e := range x {
			walkLinks(e, visit)
		}
	}
}

func TestETagIfMatch(t *testing.T) {
	for _, vendor := range []string{VendorDell, VendorHPE, VendorSupermicro, VendorGeneric} {
		t.Run(vendor, func(t *testing.T) {
			b := startFleet(t, quickConfig(vendor)).BMCs()[0]
			c := newRawClient(t, b)
			sys := b.m.system
			first := c.do("GET", sys, nil)
			tag := first.header.Get("ETag")
			require.NotEmpty(t, tag)
			if vendor == VendorHPE {
				assert.Equal(t, tag, first.body["@odata.etag"], "iLO repeats the tag in the body")
			}
			assert.Equal(t, tag, c.do("GET", sys, nil).header.Get("ETag"), "an unchanged resource keeps its tag")

			patch := map[string]any{"AssetTag": "rack-7-u12"}
			stale := c.do("PATCH", sys, patch, "If-Match", `W/"00000000"`)
			assert.Equal(t, http.StatusPreconditionFailed, stale.status)
			assert.Contains(t, stale.errorCode(), "PreconditionFailed")

			ok := c.do("PATCH", sys, patch, "If-Match", tag)
			require.Equal(t, http.StatusOK, ok.status)
			newTag := ok.header.Get("ETag")
			assert.NotEqual(t, tag, newTag, "a change makes a new tag")
			assert.Equal(t, "rack-7-u12", c.do("GET", sys, nil).body["AssetTag"])
			assert.Equal(t, http.StatusPreconditionFailed, c.do("PATCH", sys, patch, "If-Match", tag).status, "the old tag is now stale")
			assert.Equal(t, http.StatusOK, c.do("PATCH", sys, patch, "If-Match", "*").status)
			weak := strings.TrimPrefix(newTag, "W/")
			assert.Equal(t, http.StatusOK, c.do("PATCH", sys, patch, "If-Match", "W/"+weak).status, "weak and strong forms of one tag match")

			settings := b.m.settings
			st := c.do("GET", settings, nil)
			attr := ""
			for k := range b.State().BIOS {
				attr = k
				break
			}
			bad := c.do("PATCH", settings, map[string]any{"Attributes": map[string]any{attr: b.State().BIOS[attr]}}, "If-Match", `"nope"`)
			assert.Equal(t, http.StatusPreconditionFailed, bad.status)
			assert.NotEmpty(t, st.header.Get("ETag"))
		})
	}
}

// TestBadInput: every refusal is a Redfish error body with the status a
// real service gives, never a panic or an empty 500.
func TestBadInput(t *testing.T) {
	b := startFleet(t, quickConfig(VendorGeneric)).BMCs()[0]
	const (
		sys      = "/redfish/v1/Systems/Self"
		reset    = sys + "/Actions/ComputerSystem.Reset"
		settings = sys + "/Bios/Settings"
		vols     = sys + "/Storage/1/Volumes"
		drives   = sys + "/Storage/1/Drives/"
		cd       = "/redfish/v1/Managers/Self/VirtualMedia/CD1"
	)
	drive := func(ids ...string) map[string]any {
		var out []any
		for _, id := range ids {
			out = append(out, map[string]any{"@odata.id": drives + id})
		}
		return map[string]any{"Drives": out}
	}
	cases := []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"malformed JSON", "PATCH", sys, "{", 400, "MalformedJSON"},
		{"empty PATCH", "PATCH", sys, "{}", 400, "EmptyJSON"},
		{"unknown property", "PATCH", sys, map[string]any{"Foo": 1}, 400, "PropertyUnknown"},
		{"read-only property", "PATCH", sys, map[string]any{"Manufacturer": "x"}, 400, "PropertyNotWritable"},
		{"boot target not allowed", "PATCH", sys, map[string]any{"Boot": map[string]any{"BootSourceOverrideTarget": "Floppy"}}, 400, "PropertyValueNotInList"},
		{"boot enabled unknown", "PATCH", sys, map[string]any{"Boot": map[string]any{"BootSourceOverrideEnabled": "Twice"}}, 400, "PropertyValueNotInList"},
		{"boot wrong type", "PATCH", sys, map[string]any{"Boot": map[string]any{"BootSourceOverrideTarget": 5}}, 400, "PropertyValueTypeError"},
		{"Boot not an object", "PATCH", sys, map[string]any{"Boot": "Pxe"}, 400, "PropertyValueTypeError"},
		{"reset without type", "POST", reset, map[string]any{}, 400, "ActionParameterMissing"},
		{"reset type unknown", "POST", reset, map[string]any{"ResetType": "Explode"}, 400, "ActionParameterValueNotInList"},
		{"force off when off", "POST", reset, map[string]any{"ResetType": "ForceOff"}, 409, "OperationNotAllowed"},
		{"restart when off", "POST", reset, map[string]any{"ResetType": "ForceRestart"}, 409, "OperationNotAllowed"},
		{"unknown resource", "GET", "/redfish/v1/Nope", nil, 404, "ResourceMissingAtURI"},
		{"outside redfish", "GET", "/index.html", nil, 404, "ResourceMissingAtURI"},
		{"unknown action", "POST", sys + "/Actions/ComputerSystem.Explode", map[string]any{}, 404, "ActionNotSupported"},
		{"PATCH a read-only resource", "PATCH", "/redfish/v1/Chassis/Self/Power", map[string]any{"x": 1}, 405, "OperationNotAllowed"},
		{"DELETE the system", "DELETE", sys, nil, 405, "OperationNotAllowed"},
		{"PUT", "PUT", sys, map[string]any{}, 405, "OperationNotAllowed"},
		{"POST to a resource", "POST", sys, map[string]any{}, 405, "OperationNotAllowed"},
		{"BIOS attribute unknown", "PATCH", settings, map[string]any{"Attributes": map[string]any{"Nope": "x"}}, 400, "PropertyUnknown"},
		{"BIOS attribute wrong type", "PATCH", settings, map[string]any{"Attributes": map[string]any{"Hyperthreading": 1}}, 400, "PropertyValueTypeError"},
		{"BIOS without Attributes", "PATCH", settings, map[string]any{"Foo": 1}, 400, "PropertyMissing"},
		{"BIOS apply time unsupported", "PATCH", settings, map[string]any{"Attributes": map[string]any{"Hyperthreading": "Disabled"},
			"@Redfish.SettingsApplyTime": map[string]any{"ApplyTime": "AtMaintenanceWindowStart"}}, 400, "PropertyValueNotInList"},
		{"BIOS current values are read-only", "PATCH", sys + "/Bios", map[string]any{"Attributes": map[string]any{}}, 405, "PropertyNotWritable"},
		{"insert without image", "POST", cd + "/Actions/VirtualMedia.InsertMedia", map[string]any{}, 400, "ActionParameterMissing"},
		{"insert a non-URL", "POST", cd + "/Actions/VirtualMedia.InsertMedia", map[string]any{"Image": "not a url"}, 400, "ActionParameterValueFormatError"},
		{"eject an empty slot", "POST", cd + "/Actions/VirtualMedia.EjectMedia", map[string]any{}, 409, "ResourceInUse"},
		{"volume without level", "POST", vols, map[string]any{"Links": drive("0", "1")}, 400, "PropertyMissing"},
		{"volume level unsupported", "POST", vols, map[string]any{"RAIDType": "RAID6", "Links": drive("0", "1", "2", "3")}, 400, "PropertyValueNotInList"},
		{"RAID1 of three drives", "POST", vols, map[string]any{"RAIDType": "RAID1", "Links": drive("0", "1", "2")}, 400, "PropertyValueIncorrect"},
		{"RAID5 of two drives", "POST", vols, map[string]any{"RAIDType": "RAID5", "Links": drive("0", "1")}, 400, "PropertyValueIncorrect"},
		{"RAID10 of three drives", "POST", vols, map[string]any{"RAIDType": "RAID10", "Links": drive("0", "1", "2")}, 400, "PropertyValueIncorrect"},
		{"volume without drives", "POST", vols, map[string]any{"RAIDType": "RAID0"}, 400, "PropertyMissing"},
		{"volume on a foreign drive", "POST", vols, map[string]any{"RAIDType": "RAID0", "Links": drive("9")}, 400, "ResourceNotFound"},
		{"volume with a drive twice", "POST", vols, map[string]any{"RAIDType": "RAID1", "Links": drive("0", "0")}, 400, "PropertyValueConflict"},
		{"volume too large", "POST", vols, map[string]any{"RAIDType": "RAID1", "Links": drive("0", "1"), "CapacityBytes": 1e15}, 400, "PropertyValueOutOfRange"},
		{"delete unknown volume", "DELETE", vols + "/42", nil, 404, "ResourceMissingAtURI"},
		{"firmware push without image", "POST", "/redfish/v1/UpdateService/upload", "", 400, "PropertyMissing"},
		{"simple update without image", "POST", "/redfish/v1/UpdateService/Actions/UpdateService.SimpleUpdate", map[string]any{}, 400, "ActionParameterMissing"},
		{"manager reset type unknown", "POST", "/redfish/v1/Managers/Self/Actions/Manager.Reset", map[string]any{"ResetType": "Nope"}, 400, "ActionParameterValueNotInList"},
		{"delete unknown session", "DELETE", "/redfish/v1/SessionService/Sessions/nope", nil, 404, "ResourceMissingAtURI"},
		{"unknown task", "GET", "/redfish/v1/TaskService/Tasks/999", nil, 404, "ResourceMissingAtURI"},
		{"account role unknown", "PATCH", "/redfish/v1/AccountService/Accounts/3", map[string]any{"RoleId": "God"}, 400, "PropertyValueNotInList"},
		{"account password too short", "PATCH", "/redfish/v1/AccountService/Accounts/2", map[string]any{"Password": "x"}, 400, "PropertyValueFormatError"},
		{"account enabled without user", "PATCH", "/redfish/v1/AccountService/Accounts/3", map[string]any{"Enabled": true}, 400, "PropertyMissing"},
		{"account user name taken", "PATCH", "/redfish/v1/AccountService/Accounts/3", map[string]any{"UserName": "admin"}, 400, "ResourceAlreadyExists"},
		{"account unknown", "PATCH", "/redfish/v1/AccountService/Accounts/99", map[string]any{"Enabled": false}, 404, "ResourceMissingAtURI"},
	}
	c := newRawClient(t, b)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := c.do(tc.method, tc.path, tc.body)
			assert.Equal(t, tc.status, r.status)
			assert.Contains(t, r.errorCode(), tc.code)
			info := anySlice(mapOf(r.body["error"])["@Message.ExtendedInfo"])
			assert.Len(t, info, 1, "errors carry @Message.ExtendedInfo")
		})
	}
	st := b.State()
	assert.Equal(t, PowerOff, st.Power, "refused requests change nothing")
	assert.Empty(t, st.Volumes)
	assert.Empty(t, st.BIOSPending)
	assert.Equal(t, BootOverride{Target: "None", Enabled: "Disabled", Mode: "UEFI"}, st.BootOverride)
	assert.Equal(t, 0, st.Counters.Resets)
}

// TestPathsIgnoreCaseAndSlash: iLO links to /redfish/v1/systems/1/bios/.
func TestPathsIgnoreCaseAndSlash(t *testing.T) {
	b := startFleet(t, quickConfig(VendorHPE)).BMCs()[0]
	c := newRawClient(t, b)
	for _, p := range []string{"/redfish/v1", "/redfish/v1/", "/redfish/v1/systems/1/bios/", "/redfish/v1/Systems/1/Bios", "/REDFISH/V1/SYSTEMS/1/BIOS/SETTINGS/"} {
		assert.Equal(t, http.StatusOK, c.do("GET", p, nil).status, p)
	}
}

func TestPowerOnWhenOnConflicts(t *testing.T) {
	b := startFleet(t, quickConfig(VendorDell)).BMCs()[0]
	c := newRawClient(t, b)
	reset := "/redfish/v1/Systems/System.Embedded.1/Actions/ComputerSystem.Reset"
	require.Equal(t, http.StatusNoContent, c.do("POST", reset, map[string]any{"ResetType": "On"}).status)
	assert.Equal(t, http.StatusNoContent, c.do("POST", reset, map[string]any{"ResetType": "On"}).status, "On during POST is already under way")
	waitFor(t, "on", func() bool { return b.PowerState() == PowerOn })
	assert.Equal(t, http.StatusConflict, c.do("POST", reset, map[string]any{"ResetType": "On"}).status)
	require.Equal(t, http.StatusNoContent, c.do("POST", reset, map[string]any{"ResetType": "PowerCycle"}).status, "iDRAC allows PowerCycle")
	assert.Equal(t, PowerPoweringOn, b.PowerState())
	require.Equal(t, http.StatusNoContent, c.do("POST", reset, map[string]any{"ResetType": "Nmi"}).status)
	assert.Equal(t, 3, b.Counters().Resets)
}
