package bmcsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Clients that no one here wrote: DMTF's redfishtool and OpenStack's sushy
// (Debian packages redfishtool and python3-sushy). The tests skip when
// they are not installed.

func TestRedfishtool(t *testing.T) {
	tool, err := exec.LookPath("redfishtool")
	if err != nil {
		t.Skip("redfishtool not installed (apt-get install redfishtool)")
	}
	for _, vendor := range []string{VendorDell, VendorHPE, VendorSupermicro, VendorGeneric} {
		t.Run(vendor, func(t *testing.T) {
			t.Parallel()
			b := startFleet(t, quickConfig(vendor)).BMCs()[0]
			u, _ := url.Parse(b.Address())
			run := func(args ...string) map[string]any {
				t.Helper()
				all := append([]string{"-r", u.Host, "-u", b.username, "-p", b.password, "-S", "Always"}, args...)
				out, err := exec.Command(tool, all...).CombinedOutput()
				require.NoError(t, err, "redfishtool %s: %s", strings.Join(args, " "), out)
				if len(strings.TrimSpace(string(out))) == 0 {
					return nil
				}
				var doc map[string]any
				require.NoError(t, json.Unmarshal(out, &doc), "%s", out)
				return doc
			}
			root := run("root")
			assert.Equal(t, "1.13.0", root["RedfishVersion"])
			systems := run("Systems")
			assert.Equal(t, []string{b.m.system}, memberLinks(systems))
			assert.Equal(t, "Off", run("Systems", "-1", "get", "-P", "PowerState")["PowerState"])
			assert.Equal(t, b.Serial(), run("-A", "Session", "Systems", "-1", "get")["SerialNumber"], "session login works too")
			run("Systems", "-1", "reset", "On")
			assert.Equal(t, 1, b.Counters().Resets)
			waitFor(t, "power on", func() bool { return b.PowerState() == PowerOn })
			assert.Equal(t, "On", run("Systems", "-1", "get", "-P", "PowerState")["PowerState"])
		})
	}
}

const sushyScript = `
import json, sys, warnings
warnings.filterwarnings("ignore")
import sushy
url, user, password, ca = sys.argv[1:5]
s = sushy.Sushy(url, username=user, password=password, verify=ca)
system = s.get_system(s.get_system_collection().members_identities[0])
volumes = []
for st in system.storage.get_members():
    for v in st.volumes.get_members():
        volumes.append({"id": v.identity, "raid": str(v.raid_type), "capacity": v.capacity_bytes})
print(json.dumps({"power": str(system.power_state), "serial": system.serial_number,
                  "bios": dict(system.bios.attributes), "volumes": volumes}, default=str))
`

func sushyPython(t *testing.T) string {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import sushy").Run() == nil {
			return py
		}
	}
	t.Skip("python3-sushy not installed (apt-get install python3-sushy)")
	return ""
}

func TestSushy(t *testing.T) {
	py := sushyPython(t)
	script := filepath.Join(t.TempDir(), "probe.py")
	require.NoError(t, os.WriteFile(script, []byte(sushyScript), 0o600))
	for _, vendor := range []string{VendorDell, VendorHPE, VendorSupermicro, VendorGeneric} {
		t.Run(vendor, func(t *testing.T) {
			t.Parallel()
			f := startFleet(t, quickConfig(vendor))
			b := f.BMCs()[0]
			ca := filepath.Join(t.TempDir(), "ca.pem")
			require.NoError(t, os.WriteFile(ca, f.CACertPEM(), 0o600))
			c := newRawClient(t, b)
			st := b.m.storages[0]
			r := c.do("POST", st.volumes, map[string]any{"RAIDType": "RAID1", "Links": map[string]any{"Drives": []any{
				map[string]any{"@odata.id": st.drives[0]}, map[string]any{"@odata.id": st.drives[1]}}}})
			require.Contains(t, []int{http.StatusCreated, http.StatusAccepted}, r.status)
			waitFor(t, "volume", func() bool { return len(b.State().Volumes) == 1 && !b.State().Volumes[0].Building })

			cmd := exec.Command(py, script, b.Address(), b.username, b.password, ca)
			// The CA is passed explicitly: requests would let these win over it.
			cmd.Env = withoutEnv(os.Environ(), "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
			out, err := cmd.Output()
			var stderr string
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			require.NoError(t, err, stderr)
			var got struct {
				Power   string         `json:"power"`
				Serial  string         `json:"serial"`
				BIOS    map[string]any `json:"bios"`
				Volumes []struct {
					ID       string  `json:"id"`
					RAID     string  `json:"raid"`
					Capacity float64 `json:"capacity"`
				} `json:"volumes"`
			}
			require.NoError(t, json.Unmarshal(out, &got), "%s", out)
			assert.Equal(t, "PowerState.OFF", got.Power)
			assert.Equal(t, b.Serial(), got.Serial)
			want := map[string]string{}
			for k, v := range b.State().BIOS {
				want[k] = fmt.Sprint(v)
			}
			gotBIOS := map[string]string{}
			for k, v := range got.BIOS {
				gotBIOS[k] = fmt.Sprint(v)
			}
			assert.Equal(t, want, gotBIOS)
			require.Len(t, got.Volumes, 1)
			assert.Equal(t, b.State().Volumes[0].ID, got.Volumes[0].ID)
			assert.Contains(t, got.Volumes[0].RAID, "RAID1")
			assert.EqualValues(t, profileFor(vendor).driveBytes, got.Volumes[0].Capacity)
		})
	}
}

func withoutEnv(env []string, names ...string) []string {
	var out []string
	for _, e := range env {
		keep := true
		for _, n := range names {
			if strings.HasPrefix(e, n+"=") {
				keep = false
			}
		}
		if keep {
			out = append(out, e)
		}
	}
	return out
}
