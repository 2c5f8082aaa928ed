package bmcsim

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	bmclib "github.com/bmc-toolbox/bmclib/v2"
	"github.com/bmc-toolbox/bmclib/v2/providers/redfish"
	"github.com/go-logr/logr"
	"github.com/stretchr/testify/require"
)

// quickConfig shortens every delay so that a whole power/boot/task cycle
// takes well under a second.
func quickConfig(vendor string) Config {
	return Config{
		Count: 1, Vendor: vendor,
		PostDelay: 150 * time.Millisecond, ShutdownDelay: 100 * time.Millisecond,
		TaskDuration: 200 * time.Millisecond, InstallDelay: 100 * time.Millisecond,
		RebootDuration: 300 * time.Millisecond,
	}
}

func startFleet(t testing.TB, cfg Config) *Fleet {
	t.Helper()
	f, err := Start(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	return f
}

// connect opens bmclib's generic Redfish provider against b, over the
// socket, exactly as metalflow's workers will.
func connect(t testing.TB, b *BMC, opts ...bmclib.Option) *bmclib.Client {
	t.Helper()
	cl, err := open(b, b.username, b.password, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { _ = cl.Close(context.Background()) })
	return cl
}

func open(b *BMC, user, pass string, opts ...bmclib.Option) (*bmclib.Client, error) {
	return openWithin(b, user, pass, 20*time.Second, opts...)
}

// openWithin opens a client whose every request times out after d: bmclib
// turns the deadline of Open's context into its HTTP client timeout and
// ignores the contexts of later calls.
func openWithin(b *BMC, user, pass string, d time.Duration, opts ...bmclib.Option) (*bmclib.Client, error) {
	u, _ := url.Parse(b.Address())
	opts = append([]bmclib.Option{bmclib.WithRedfishPort(u.Port())}, opts...)
	cl := bmclib.NewClient(u.Scheme+"://"+u.Hostname(), user, pass, opts...)
	cl.Registry.Drivers = cl.Registry.For("gofish")
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return cl, cl.Open(ctx)
}

// connectProvider opens bmclib's Redfish provider itself: in v2.3.5 the
// top-level Client finds no BIOS setter among Redfish providers (none
// implements SetBiosConfigurationFromFile), so callers must go through it.
func connectProvider(t testing.TB, b *BMC) *redfish.Conn {
	t.Helper()
	u, _ := url.Parse(b.Address())
	conn := redfish.New(u.Scheme+"://"+u.Hostname(), b.username, b.password, logr.Discard(), redfish.WithPort(u.Port()))
	require.NoError(t, conn.Open(ctxT(t)))
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitFor polls cond; simulated delays are short but not zero.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sharedMockups finds ../shared/redfish-mockups next to the repository
// root, or skips: the vendor trees are shared data, never part of the repo.
func sharedMockups(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Skip("repository root not found")
		}
		dir = parent
	}
	m := filepath.Join(dir, "..", "shared", "redfish-mockups")
	if _, err := os.Stat(m); err != nil {
		t.Skipf("shared vendor trees absent (%s)", m)
	}
	return m
}
