package inventory

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestRecordStepWritesOneHistoryLinePerKey(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		_, err := s.RegisterAsset(ctx, AssetRecord{Serial: "SN-W", State: "installed"}, "lifecycle")
		require.NoError(t, err)
		before, err := s.History(ctx, "SN-W")
		require.NoError(t, err)
		// The same activity twice (a Temporal retry), then a staff retry.
		require.NoError(t, s.RecordStep(ctx, "SN-W", "decommission/run/SecureWipe/0", "decommission", "drives wiped", "2 drives"))
		require.NoError(t, s.RecordStep(ctx, "SN-W", "decommission/run/SecureWipe/0", "decommission", "drives wiped", "2 drives"))
		require.NoError(t, s.RecordStep(ctx, "SN-W", "decommission/run/SecureWipe/1", "decommission", "drives wiped", "2 drives"))
		after, err := s.History(ctx, "SN-W")
		require.NoError(t, err)
		require.Len(t, after, len(before)+2)
		require.Equal(t, "drives wiped", after[len(after)-1].Action)
	})
}
