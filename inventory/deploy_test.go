package inventory

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// A deploy attempt carries its plan and the lifecycle's decision, both
// readable through the attempt's token; every step may run twice.
func TestDeployPlanAndDecision(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		_, err := s.RegisterAsset(ctx, AssetRecord{Serial: "SN-D"}, "t")
		require.NoError(t, err)
		b, err := s.IssueBoot(ctx, "SN-D", 1, []string{"02:00:00:00:00:0d"}, time.Hour)
		require.NoError(t, err)
		require.Nil(t, b.DeployPlan, "an installer attempt has no plan")
		require.Empty(t, b.Decision)
		require.ErrorIs(t, s.DecideDeploy(ctx, "SN-D", 1, true, ""), ErrInvalid, "nothing to release")

		plan := []byte(`{"image": "debian-12", "hostname": "sn-d"}`)
		require.NoError(t, s.SetDeployPlan(ctx, "SN-D", 1, plan))
		require.NoError(t, s.SetDeployPlan(ctx, "SN-D", 1, []byte(`{"image":"debian-12","hostname":"sn-d"}`)), "the same plan again")
		require.ErrorIs(t, s.SetDeployPlan(ctx, "SN-D", 1, []byte(`{"image":"ubuntu"}`)), ErrInvalid, "another plan for the same attempt")
		require.ErrorIs(t, s.SetDeployPlan(ctx, "SN-D", 1, []byte(`[]`)), ErrInvalid)
		require.ErrorIs(t, s.SetDeployPlan(ctx, "SN-D", 9, plan), ErrNotFound)

		got, err := s.ActiveBootByToken(ctx, b.Token)
		require.NoError(t, err)
		require.JSONEq(t, string(plan), string(got.DeployPlan))
		require.Equal(t, DeployPending, got.Decision)
		require.Nil(t, got.DecidedAt)

		require.NoError(t, s.DecideDeploy(ctx, "SN-D", 1, false, "DMI serial X differs"))
		require.NoError(t, s.DecideDeploy(ctx, "SN-D", 1, false, "DMI serial X differs"), "a retried refusal")
		got, err = s.ActiveBootByToken(ctx, b.Token)
		require.NoError(t, err)
		require.Equal(t, DeployRefused, got.Decision)
		require.Equal(t, "DMI serial X differs", got.DecisionReason)
		require.NotNil(t, got.DecidedAt)

		require.NoError(t, s.DecideDeploy(ctx, "SN-D", 1, true, ""))
		require.NoError(t, s.DecideDeploy(ctx, "SN-D", 1, true, ""), "a retried release")
		got, err = s.ActiveBootByToken(ctx, b.Token)
		require.NoError(t, err)
		require.Equal(t, DeployReleased, got.Decision)
		require.Empty(t, got.DecisionReason)

		hist, err := s.History(ctx, "SN-D")
		require.NoError(t, err)
		var actions []string
		for _, c := range hist {
			actions = append(actions, c.Action)
		}
		require.Subset(t, actions, []string{"deploy planned", "deploy refused", "deploy released"})
		count := map[string]int{}
		for _, a := range actions {
			count[a]++
		}
		require.Equal(t, 1, count["deploy planned"], "retries add no history")
		require.Equal(t, 1, count["deploy refused"])
		require.Equal(t, 1, count["deploy released"])

		already, err := s.MarkDiskBooted(ctx, "SN-D", 1)
		require.NoError(t, err)
		require.False(t, already)
		already, err = s.MarkDiskBooted(ctx, "SN-D", 1)
		require.NoError(t, err)
		require.True(t, already, "the second run of the activity must not power on again")
		all, err := s.BootAttempts(ctx, "SN-D")
		require.NoError(t, err)
		require.NotNil(t, all[0].DiskBootedAt)

		// An attempt that ended takes no plan.
		require.NoError(t, s.RetireBoot(ctx, "SN-D"))
		_, err = s.IssueBoot(ctx, "SN-D", 2, []string{"02:00:00:00:00:0d"}, time.Hour)
		require.NoError(t, err)
		require.NoError(t, s.RetireBoot(ctx, "SN-D"))
		require.ErrorIs(t, s.SetDeployPlan(ctx, "SN-D", 2, plan), ErrInvalid)
	})
}
