package cloud

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/internal/testironic"
)

// One real Ironic for the package: it takes seconds to start. The price of
// TestMain is these package-level variables in the test binary.
var (
	ironicServer *testironic.Server
	ironicErr    error
)

func TestMain(m *testing.M) {
	ironicServer, ironicErr = testironic.Start()
	if ironicErr != nil && !testironic.IsUnavailable(ironicErr) {
		fmt.Fprintln(os.Stderr, "starting Ironic:", ironicErr)
	}
	code := m.Run()
	if ironicServer != nil {
		ironicServer.Stop()
	}
	os.Exit(code)
}

// newIronic returns a client of the package's real Ironic, skipping the
// test where Ironic is not installed and failing it where it would not
// start.
func newIronic(t testing.TB) *Ironic {
	t.Helper()
	if testironic.IsUnavailable(ironicErr) {
		t.Skipf("skipping: %v", ironicErr)
	}
	require.NoError(t, ironicErr, "Ironic is installed but did not start")
	if !ironicServer.Running() {
		require.NoError(t, ironicServer.Resume())
	}
	c, err := NewIronic(context.Background(), IronicOptions{URL: ironicServer.URL(), PollInterval: 100 * time.Millisecond})
	require.NoError(t, err)
	return c
}

// serialFor gives each test its own node name, fresh on every run so
// -count=N against the package's one Ironic starts from nothing each time.
func serialFor(t testing.TB) string {
	r := strings.NewReplacer("/", "-", "_", "-", "#", "-")
	suffix := make([]byte, 3)
	_, _ = rand.Read(suffix)
	return "SN-" + r.Replace(t.Name()) + "-" + hex.EncodeToString(suffix)
}

func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// fakeSpec is a server enrolled with Ironic's fake-hardware type, which
// runs every transition without a BMC; the driver_info is still the
// Redfish one, stored and checked like in production.
func fakeSpec(serial string) NodeSpec {
	return NodeSpec{
		Serial:       serial,
		HardwareType: "fake-hardware",
		BMC: BMC{
			Address:  "https://10.1.0.7",
			SystemID: "/redfish/v1/Systems/1",
			Username: "admin",
			Password: "pw-" + serial + "-s3cret",
		},
		CPUs:          64,
		MemoryMiB:     524288,
		LocalGB:       1800,
		CPUArch:       "x86_64",
		ResourceClass: "baremetal.gp-large",
		FailureDomain: FailureDomain{Site: "dc1", Room: "A", Rack: "R07"},
		// Upper case on purpose: Ironic and metalflow compare lower case.
		MACs: []string{strings.ToUpper(testMAC(serial, 1)), testMAC(serial, 2)},
	}
}

// testMAC is the i-th MAC of a test's server: MACs are unique across all
// of Ironic, and the package's tests share one.
func testMAC(serial string, i int) string {
	h := fnv.New32a()
	h.Write([]byte(serial))
	b := h.Sum32()
	return fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", byte(b>>16), byte(b>>8), byte(b), i)
}
