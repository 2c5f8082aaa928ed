package cloud

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/internal/testironic"
)

// Keystone-authenticated access, the production shape: a real Keystone, a
// second real Ironic with auth_strategy=keystone registered in its catalog,
// and the client configured only by a clouds.yaml entry. Skipped without
// python3-keystone (an optional package; ~40 s when it runs).
func TestKeystoneAuthenticatedIronicThroughCloudsYAML(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: starts Keystone and a second Ironic")
	}
	if testironic.IsUnavailable(ironicErr) {
		t.Skipf("skipping: %v", ironicErr)
	}
	ks, err := testironic.StartKeystone()
	if testironic.IsUnavailable(err) {
		t.Skipf("skipping: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(ks.Stop)
	srv, err := testironic.StartWith(testironic.Options{Keystone: ks})
	require.NoError(t, err)
	t.Cleanup(srv.Stop)

	cloudsYAML := filepath.Join(t.TempDir(), "clouds.yaml")
	require.NoError(t, os.WriteFile(cloudsYAML, []byte(ks.CloudsYAML("metalflow-test")), 0o600))
	ctx := testContext(t)

	c, err := NewIronic(ctx, IronicOptions{Cloud: "metalflow-test", CloudsYAML: cloudsYAML})
	require.NoError(t, err)
	spec := fakeSpec(serialFor(t))
	n, err := c.Register(ctx, spec)
	require.NoError(t, err)
	assert.Equal(t, StateAvailable, n.ProvisionState)
	require.NoError(t, c.DeleteNode(ctx, spec.Serial))

	// The same Ironic refuses a client without a token: not retryable.
	anon, err := NewIronic(ctx, IronicOptions{URL: srv.URL()})
	require.NoError(t, err)
	_, err = anon.GetNode(ctx, spec.Serial)
	require.Error(t, err)
	assert.Equal(t, Invalid, KindOf(err), "%v", err)
	assert.False(t, IsRetryable(err))

	// A wrong password fails at construction, before any step runs.
	wrong := filepath.Join(t.TempDir(), "clouds.yaml")
	yaml, _ := os.ReadFile(cloudsYAML)
	require.NoError(t, os.WriteFile(wrong, []byte(replacePassword(string(yaml))), 0o600))
	_, err = NewIronic(ctx, IronicOptions{Cloud: "metalflow-test", CloudsYAML: wrong})
	assert.Error(t, err)
}

func replacePassword(yaml string) string {
	var out []string
	for _, line := range strings.Split(yaml, "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "password:") {
			line = "      password: not-the-password"
		}
		out = append(out, line)
	}
	return strings.Join(out, "\n")
}
