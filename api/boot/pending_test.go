package boot

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestPendingFollowsTheInstallAttempt(t *testing.T) {
	const mac = "52:54:00:aa:bb:01"
	_, inv, _, token := serveAlone(t, mac)
	svc := New(Config{Store: inv})
	ctx := context.Background()

	for _, m := range []string{mac, "52-54-00-AA-BB-01"} {
		pending, err := svc.Pending(ctx, m)
		require.NoError(t, err)
		require.True(t, pending, "an install of SN-1 is pending for %s", m)
	}
	pending, err := svc.Pending(ctx, "52:54:00:aa:bb:02")
	require.NoError(t, err)
	require.False(t, pending, "no install for another MAC")

	// Once the installer phoned home the machine boots from its disk.
	_, err = inv.ConsumePhoneHome(ctx, token)
	require.NoError(t, err)
	pending, err = svc.Pending(ctx, mac)
	require.NoError(t, err)
	require.False(t, pending, "the install finished")
}
