package bmcsim

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// bootServer plays the provisioning side: iPXE scripts, kernel, initrd,
// cloud-config and the phone-home receiver.
type bootServer struct {
	*httptest.Server
	mu         sync.Mutex
	files      map[string]string
	phoneHomes []phoneHome
	// phoneFails answers this many phone-homes with phoneStatus first.
	phoneFails  int
	phoneStatus int
}

type phoneHome struct {
	path string
	form url.Values
}

func newBootServer(t *testing.T) *bootServer {
	s := &bootServer{files: map[string]string{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		if strings.HasPrefix(r.URL.Path, "/phone-home/") && r.Method == http.MethodPost {
			if s.phoneFails > 0 {
				s.phoneFails--
				http.Error(w, "no", s.phoneStatus)
				return
			}
			_ = r.ParseForm()
			s.phoneHomes = append(s.phoneHomes, phoneHome{path: r.URL.Path, form: r.PostForm})
			return
		}
		body, ok := s.files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, strings.ReplaceAll(body, "SERVER", s.URL))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *bootServer) set(path, body string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = body
}

func (s *bootServer) remove(path string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.files, path)
}

func (s *bootServer) failPhoneHomes(n, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.phoneFails, s.phoneStatus = n, status
}

func (s *bootServer) homes() []phoneHome {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]phoneHome(nil), s.phoneHomes...)
}

const (
	cloudConfig = "#cloud-config\nphone_home:\n  url: SERVER/phone-home/$INSTANCE_ID\n  post: all\n  tries: 3\n"
	kernel      = "MZ kernel bytes"
)

// installFiles serves a two-stage iPXE chain with relative URLs.
func installFiles(s *bootServer, mac string) {
	s.set("/boot/"+mac+".ipxe", "#!ipxe\ndhcp\necho booting ${mac}\nchain stage2/${mac:hexhyp}.ipxe\n")
	s.set("/boot/stage2/"+strings.ReplaceAll(mac, ":", "-")+".ipxe",
		"#!ipxe\nset img SERVER/images\nkernel --name vmlinuz ${img}/vmlinuz ip=dhcp cloud-config-url=SERVER/config/${mac}\ninitrd ../images/initrd.img\nboot\n")
	s.set("/images/vmlinuz", kernel)
	s.set("/boot/images/initrd.img", "initrd")
	s.set("/config/"+mac, cloudConfig)
}

func netbootFleet(t *testing.T, s *bootServer, vendor string) *BMC {
	cfg := quickConfig(vendor)
	cfg.BootURL = s.URL + "/boot/${mac}.ipxe"
	return startFleet(t, cfg).BMCs()[0]
}

func TestNetbootInstallsAndPhonesHome(t *testing.T) {
	for _, tc := range []struct{ vendor, device string }{{VendorDell, "pxe"}, {VendorHPE, "uefi_http"}, {VendorSupermicro, "pxe"}, {VendorGeneric, "pxe"}} {
		t.Run(tc.vendor, func(t *testing.T) {
			t.Parallel()
			s := newBootServer(t)
			b := netbootFleet(t, s, tc.vendor)
			mac := b.MACs()[0]
			installFiles(s, mac)
			cl := connect(t, b)
			ctx := ctxT(t)

			_, err := cl.SetBootDevice(ctx, tc.device, false, true)
			require.NoError(t, err)
			_, err = cl.SetPowerState(ctx, "on")
			require.NoError(t, err)
			waitFor(t, "install", func() bool { return b.Host().State == HostOSRunning })

			h := b.Host()
			assert.True(t, h.OSInstalled)
			assert.Empty(t, h.LastError)
			assert.Equal(t, []string{
				s.URL + "/boot/" + mac + ".ipxe",
				s.URL + "/boot/stage2/" + strings.ReplaceAll(mac, ":", "-") + ".ipxe",
				s.URL + "/images/vmlinuz",
				s.URL + "/boot/images/initrd.img",
				s.URL + "/config/" + mac,
			}, h.Fetched)
			homes := s.homes()
			require.Len(t, homes, 1)
			assert.Equal(t, "/phone-home/"+b.Serial(), homes[0].path)
			assert.Equal(t, b.Serial(), homes[0].form.Get("instance_id"))
			assert.Equal(t, mac, homes[0].form.Get("mac"))
			c := b.Counters()
			assert.Equal(t, 1, c.Netboots)
			assert.Equal(t, 1, c.Installs)
			assert.Equal(t, 1, c.PhoneHomes)
			assert.Equal(t, "Disabled", b.State().BootOverride.Enabled)

			// The next boot has no override: it comes up from disk.
			_, err = cl.SetPowerState(ctx, "cycle")
			require.NoError(t, err)
			waitFor(t, "disk boot", func() bool { return b.PowerState() == PowerOn })
			assert.Equal(t, HostOSRunning, b.Host().State)
			assert.Equal(t, "Hdd", b.Host().BootSource)
			assert.Equal(t, 1, b.Counters().Netboots)
			assert.Len(t, s.homes(), 1)
		})
	}
}

func TestNetbootFailures(t *testing.T) {
	cases := []struct {
		name    string
		prepare func(s *bootServer, mac string)
		state   string
		errText string
	}{
		{"boot script missing", func(s *bootServer, mac string) {}, HostBootFailed, "404"},
		{"kernel missing", func(s *bootServer, mac string) {
			installFiles(s, mac)
			s.remove("/images/vmlinuz")
		}, HostBootFailed, "/images/vmlinuz: 404"},
		{"config is not cloud-config", func(s *bootServer, mac string) {
			installFiles(s, mac)
			s.set("/config/"+mac, "phone_home: [unclosed")
		}, HostBootFailed, "not a cloud-config"},
		{"script without kernel", func(s *bootServer, mac string) {
			s.set("/boot/"+mac+".ipxe", "#!ipxe\necho nothing to do\n")
		}, HostBootFailed, "named no kernel"},
		{"script boots the local disk", func(s *bootServer, mac string) {
			s.set("/boot/"+mac+".ipxe", "#!ipxe\nsanboot --no-describe --drive 0x80\n")
		}, HostNoOS, ""},
		{"phone home refused", func(s *bootServer, mac string) {
			installFiles(s, mac)
			s.failPhoneHomes(1, http.StatusForbidden)
		}, HostOSRunning, "403"},
		{"nocloud datasource", func(s *bootServer, mac string) {
			s.set("/boot/"+mac+".ipxe", "#!ipxe\nkernel SERVER/vmlinuz ds=nocloud-net;s=SERVER/seed/"+mac+"/\nboot\n")
			s.set("/vmlinuz", kernel)
			s.set("/seed/"+mac+"/user-data", cloudConfig)
		}, HostOSRunning, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := newBootServer(t)
			b := netbootFleet(t, s, VendorGeneric)
			tc.prepare(s, b.MACs()[0])
			c := newRawClient(t, b)
			require.Equal(t, http.StatusOK, c.do("PATCH", "/redfish/v1/Systems/Self", map[string]any{"Boot": map[string]any{
				"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}).status)
			require.Equal(t, http.StatusNoContent, c.do("POST", "/redfish/v1/Systems/Self/Actions/ComputerSystem.Reset", map[string]any{"ResetType": "On"}).status)
			waitFor(t, tc.state, func() bool { return b.Host().State == tc.state })
			h := b.Host()
			if tc.errText == "" {
				assert.Empty(t, h.LastError)
			} else {
				assert.Contains(t, h.LastError, tc.errText)
			}
			if tc.state == HostBootFailed {
				log := strings.Join(b.State().Log, "\n")
				assert.Contains(t, log, "Network boot failed", "a failed netboot is in the event log")
				entries := c.do("GET", "/redfish/v1/Managers/Self/LogServices/Log/Entries", nil)
				assert.Contains(t, fmt.Sprint(entries.body["Members"]), "Network boot failed")
				assert.Equal(t, 0, b.Counters().Installs)
			}
		})
	}
}

// TestPhoneHomeOutlastsAnOutage: an installed host whose phone-home meets
// a boot server that is down keeps calling until it is answered, once.
func TestPhoneHomeOutlastsAnOutage(t *testing.T) {
	s := newBootServer(t)
	b := netbootFleet(t, s, VendorGeneric)
	installFiles(s, b.MACs()[0])
	s.failPhoneHomes(3, http.StatusServiceUnavailable)
	c := newRawClient(t, b)
	require.Equal(t, http.StatusOK, c.do("PATCH", "/redfish/v1/Systems/Self", map[string]any{"Boot": map[string]any{
		"BootSourceOverrideTarget": "Pxe", "BootSourceOverrideEnabled": "Once"}}).status)
	require.Equal(t, http.StatusNoContent, c.do("POST", "/redfish/v1/Systems/Self/Actions/ComputerSystem.Reset", map[string]any{"ResetType": "On"}).status)
	waitFor(t, "phone home through the outage", func() bool { return b.Host().State == HostOSRunning })
	assert.Len(t, s.homes(), 1, "answered once")
	assert.Equal(t, 1, b.Counters().PhoneHomes)
	assert.Equal(t, 1, b.Counters().Installs)
	assert.Empty(t, b.Host().LastError)
}

func TestPowerOffInterruptsInstall(t *testing.T) {
	s := newBootServer(t)
	cfg := quickConfig(VendorGeneric)
	cfg.BootURL = s.URL + "/boot/${mac}.ipxe"
	cfg.InstallDelay = 400 * time.Millisecond
	b := startFleet(t, cfg).BMCs()[0]
	installFiles(s, b.MACs()[0])
	cl := connect(t, b)
	ctx := ctxT(t)
	_, err := cl.SetBootDevice(ctx, "pxe", false, true)
	require.NoError(t, err)
	_, err = cl.SetPowerState(ctx, "on")
	require.NoError(t, err)
	waitFor(t, "installer", func() bool { return b.Host().State == HostInstalling })
	_, err = cl.SetPowerState(ctx, "off")
	require.NoError(t, err)
	time.Sleep(600 * time.Millisecond)
	assert.Equal(t, HostOff, b.Host().State)
	assert.False(t, b.Host().OSInstalled)
	assert.Equal(t, 0, b.Counters().Installs)
	assert.Empty(t, s.homes())
}

func TestSpeedScalesDelays(t *testing.T) {
	cfg := quickConfig(VendorGeneric)
	cfg.PostDelay = time.Hour
	cfg.Speed = 36000 // an hour of POST in a tenth of a second
	b := startFleet(t, cfg).BMCs()[0]
	c := newRawClient(t, b)
	require.Equal(t, http.StatusNoContent, c.do("POST", "/redfish/v1/Systems/Self/Actions/ComputerSystem.Reset", map[string]any{"ResetType": "On"}).status)
	waitFor(t, "POST at speed", func() bool { return b.PowerState() == PowerOn })
}
