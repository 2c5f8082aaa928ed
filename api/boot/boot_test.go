package boot

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"

	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// lifecycles records phone-home signals; with down set it answers as
// Temporal does for a lifecycle that is not running.
type lifecycles struct {
	mu      sync.Mutex
	down    bool
	signals []serverapi.PhoneHome
	ids     []string
}

func (l *lifecycles) SignalWorkflow(_ context.Context, id, _, name string, arg any) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.down {
		return serviceerror.NewNotFound("workflow not found")
	}
	if name != serverapi.SignalPhoneHome {
		return serviceerror.NewInvalidArgument("unexpected signal " + name)
	}
	l.ids = append(l.ids, id)
	l.signals = append(l.signals, arg.(serverapi.PhoneHome))
	return nil
}

func (l *lifecycles) setDown(down bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.down = down
}

// seen is what reached the lifecycles: workflow IDs and signals.
func (l *lifecycles) seen() ([]string, []serverapi.PhoneHome) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.ids...), append([]serverapi.PhoneHome(nil), l.signals...)
}

// serveAlone runs the service on its own listener, apart from any API,
// with one install of SN-1 (attempt 2) pending for mac.
func serveAlone(t *testing.T, mac string) (base string, inv *inventory.Store, lc *lifecycles, token string) {
	t.Helper()
	ctx := context.Background()
	inv, err := inventory.Open(ctx, inventory.DialectSQLite, filepath.Join(t.TempDir(), "inv.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = inv.Close() })
	_, err = inv.RegisterAsset(ctx, inventory.AssetRecord{Serial: "SN-1", State: "provisioning", MACs: []string{mac}}, "test")
	require.NoError(t, err)
	b, err := inv.IssueBoot(ctx, "SN-1", 2, []string{mac}, time.Hour)
	require.NoError(t, err)

	lc = &lifecycles{}
	svc := New(Config{
		PublicURL: "http://10.0.0.1:8081/", KernelArgs: "console=ttyS0",
		Store: inv, Lifecycles: lc, Logger: slog.New(slog.DiscardHandler),
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- svc.Serve(serveCtx, ln) }()
	t.Cleanup(func() {
		stop()
		require.NoError(t, <-done, "a stopped service returns cleanly")
	})
	return "http://" + ln.Addr().String(), inv, lc, b.Token
}

func get(t *testing.T, target string) (int, string) {
	t.Helper()
	res, err := http.Get(target)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

func phoneHome(t *testing.T, base, token string) (int, string) {
	t.Helper()
	res, err := http.PostForm(base+PhoneHomePath+"?token="+url.QueryEscape(token), url.Values{"hostname": {"sn-1"}, "instance_id": {"SN-1-install-2"}})
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

// An install seen from the machine's side: the script chains the installer
// with the seed of the pending attempt, the seed carries the phone-home
// token, and the phone-home reaches the lifecycle once.
func TestStandaloneServiceWalksAnInstall(t *testing.T) {
	const mac = "52:54:00:00:00:02"
	base, inv, lc, token := serveAlone(t, mac)

	code, script := get(t, base+"/boot/ipxe?mac="+mac)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, script, "kernel http://10.0.0.1:8081/boot/files/vmlinuz initrd=installer.img ip=dhcp ds=nocloud-net;s=http://10.0.0.1:8081/boot/nocloud/SN-1/2/ console=ttyS0\n")
	require.Contains(t, script, "initrd --name installer.img http://10.0.0.1:8081/boot/files/initrd.img\n")

	code, kernel := get(t, base+"/boot/files/vmlinuz")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, kernel, "placeholder installer image vmlinuz")

	code, meta := get(t, base+"/boot/nocloud/SN-1/2/meta-data")
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "instance-id: SN-1-install-2\nlocal-hostname: sn-1\n", meta)
	code, user := get(t, base+"/boot/nocloud/SN-1/2/user-data")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, user, `url: "http://10.0.0.1:8081/api/v1/boot/phone-home?token=`+url.QueryEscape(token)+`"`)

	code, body := phoneHome(t, base, token)
	require.Equal(t, http.StatusOK, code, body)
	require.JSONEq(t, `{"serial":"SN-1","attempt":2}`, body)
	ids, signals := lc.seen()
	require.Equal(t, []string{serverapi.LifecycleWorkflowID("SN-1")}, ids)
	require.Equal(t, []serverapi.PhoneHome{{Attempt: 2, Hostname: "sn-1", InstanceID: "SN-1-install-2"}}, signals)
	addr, err := inv.GetHostAddress(t.Context(), "SN-1")
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1", addr.String(), "the host's address is the caller's socket")

	code, body = phoneHome(t, base, token)
	require.Equal(t, http.StatusForbidden, code, "the token works once")
	require.Contains(t, body, "already used")
	_, signals = lc.seen()
	require.Len(t, signals, 1)
}

// Machines get plain answers to what they may ask, and JSON errors when
// they ask wrong, as from the API.
func TestStandaloneServiceRefusals(t *testing.T) {
	base, _, _, _ := serveAlone(t, "52:54:00:00:00:02")

	code, script := get(t, base+"/boot/ipxe?mac=00:00:5e:00:53:ff")
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, script, "booting from local disk\nexit\n", "a server with nothing pending boots its disk")

	for target, want := range map[string]int{
		"/boot/ipxe":                     http.StatusBadRequest,
		"/boot/nocloud/SN-1/1/user-data": http.StatusNotFound,
		"/boot/nocloud/SN-2/2/meta-data": http.StatusNotFound,
		"/boot/nocloud/-x/2/vendor-data": http.StatusBadRequest,
		"/boot/files/grub.efi":           http.StatusNotFound,
		"/api/v1/servers":                http.StatusNotFound,
	} {
		code, body := get(t, base+target)
		require.Equal(t, want, code, target)
		var e struct{ Error string }
		require.NoError(t, json.Unmarshal([]byte(body), &e), target)
		require.NotEmpty(t, e.Error, target)
	}
	code, body := phoneHome(t, base, "nope")
	require.Equal(t, http.StatusForbidden, code, body)
}

// A phone-home the lifecycle cannot take keeps its token: the installer
// tries again, and succeeds once the lifecycle is back.
func TestPhoneHomeKeepsTheTokenWhenTheLifecycleIsAway(t *testing.T) {
	base, _, lc, token := serveAlone(t, "52:54:00:00:00:02")
	lc.setDown(true)
	code, body := phoneHome(t, base, token)
	require.Equal(t, http.StatusConflict, code)
	require.Contains(t, body, "the lifecycle of SN-1 is not running")
	lc.setDown(false)
	code, body = phoneHome(t, base, token)
	require.Equal(t, http.StatusOK, code, body)
}

func TestOwnsTheBootRoutesOnly(t *testing.T) {
	for _, r := range []string{"/boot/ipxe", "/boot/files/:name", "/boot/nocloud/:serial/:attempt/user-data", PhoneHomePath} {
		require.True(t, Owns(r), r)
	}
	for _, r := range []string{"/api/v1/servers", "/bootstrap", "/api/v1/boot", "/healthz", "/*"} {
		require.False(t, Owns(r), r)
	}
}
