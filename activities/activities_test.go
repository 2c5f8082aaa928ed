package activities

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// Workflows branch on the CMDB's verdicts, which no retry changes; an
// outage of the CMDB must stay with Temporal's retries.
func TestInventoryErrorTellsVerdictsFromOutages(t *testing.T) {
	for cause, typ := range map[error]string{
		inventory.ErrOccupied: stepapi.ErrTypeUnitOccupied,
		inventory.ErrInvalid:  stepapi.ErrTypeInvalidPlacement,
		inventory.ErrNotFound: stepapi.ErrTypeNotFound,
	} {
		var ae *temporal.ApplicationError
		require.True(t, errors.As(InventoryError(fmt.Errorf("R07 U12: %w", cause)), &ae), "%v", cause)
		require.Equal(t, typ, ae.Type())
		require.True(t, ae.NonRetryable(), typ)
	}
	outage := errors.New("connection refused")
	require.Same(t, outage, InventoryError(outage))
	require.NoError(t, InventoryError(nil))
}
