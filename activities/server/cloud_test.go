package server

import (
	"context"
	"errors"
	"testing"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
)

func TestIronicCPUArch(t *testing.T) {
	for in, want := range map[string]string{"x86": "x86_64", "x86-64": "x86_64", "ARM": "aarch64", "IA-64": "ia64", "Power": "ppc64le", "": ""} {
		require.Equal(t, want, ironicCPUArch(in), in)
	}
}

// Without Ironic or Nova the worker reports the steps skipped, with a note
// saying why, and touches nothing (no inventory, no credentials needed).
func TestCloudStepsSkippedWithoutConfiguration(t *testing.T) {
	c := &Cloud{}
	ctx := context.Background()
	res, err := c.RegisterCloud(ctx, serverapi.RegisterCloudInput{Serial: "SN-1"})
	require.NoError(t, err)
	require.Equal(t, serverapi.CloudStepResult{Skipped: true, Note: serverapi.NoteNoIronic}, res)
	res, err = c.JoinAggregate(ctx, serverapi.JoinAggregateInput{Serial: "SN-1"})
	require.NoError(t, err)
	require.Equal(t, serverapi.CloudStepResult{Skipped: true, Note: serverapi.NoteNoNova}, res)
	res, err = c.AssignTenant(ctx, serverapi.AssignTenantInput{Serial: "SN-1", Tenant: "p"})
	require.NoError(t, err)
	require.Equal(t, serverapi.CloudStepResult{Skipped: true, Note: serverapi.NoteNoIronic}, res)
}

func TestCloudErrorOfForeignErrorStaysRetryable(t *testing.T) {
	err := cloudError(errors.New("worker shutting down"))
	var ae *temporal.ApplicationError
	require.False(t, errors.As(err, &ae) && ae.NonRetryable())
}
