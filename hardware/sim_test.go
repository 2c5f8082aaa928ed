package hardware_test

import (
	"context"
	"testing"
	"time"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/hardware"
	"github.com/stretchr/testify/require"
)

// quickFleet starts one simulated BMC of vendor whose host POSTs, shuts
// down and runs tasks in a fraction of a second, so that a whole
// provisioning pass over the socket takes about a second.
func quickFleet(t *testing.T, vendor string, tune ...func(*bmcsim.Config)) (*bmcsim.Fleet, *bmcsim.BMC) {
	t.Helper()
	cfg := bmcsim.Config{
		Count: 1, Vendor: vendor,
		PostDelay: 150 * time.Millisecond, ShutdownDelay: 100 * time.Millisecond,
		TaskDuration: 200 * time.Millisecond, InstallDelay: 100 * time.Millisecond,
		RebootDuration: 300 * time.Millisecond,
	}
	for _, f := range tune {
		f(&cfg)
	}
	f, err := bmcsim.Start(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	return f, f.BMCs()[0]
}

// endpointOf points at b with its own credentials, trusting the fleet's CA
// so that TLS is verified as it would be in production.
func endpointOf(f *bmcsim.Fleet, b *bmcsim.BMC) hardware.Endpoint {
	user, pass := b.Credentials()
	return hardware.Endpoint{Address: b.Address(), Username: user, Password: pass, CACertPEM: f.CACertPEM(), Timeout: 5 * time.Second}
}

func dial(t *testing.T, ep hardware.Endpoint) hardware.Machine {
	t.Helper()
	m, err := hardware.Dial(ctxT(t), ep)
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close(context.Background()) })
	return m
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond, which reads the BMC through the Machine, for the
// simulated delays to pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(25 * time.Millisecond)
	}
}

func requireKind(t *testing.T, err error, kind hardware.ErrorKind) *hardware.Error {
	t.Helper()
	require.Error(t, err)
	he, ok := err.(*hardware.Error)
	require.True(t, ok, "error %T is a *hardware.Error: %v", err, err)
	require.Equal(t, kind, he.Kind, "%v", err)
	return he
}
