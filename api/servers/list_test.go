package servers

import (
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/stretchr/testify/require"
	commonpb "go.temporal.io/api/common/v1"
	"go.temporal.io/sdk/converter"
)

// stepStartedAt comes from the Datetime search attribute as visibility
// returns it; a run without it (started before the attribute existed)
// has none rather than the zero time.
func TestListReadsTheStepStartedAtAttribute(t *testing.T) {
	at := time.Date(2026, 12, 7, 4, 12, 0, 0, time.UTC)
	// Encoded as the SDK encodes a time (visibility may answer in any zone).
	p, err := converter.GetDefaultDataConverter().ToPayload(at.In(time.FixedZone("x", 3600)))
	require.NoError(t, err)
	fields := map[string]*commonpb.Payload{serverapi.SearchAttrLifecycleStepStartedAt: p}
	got := datetime(fields, serverapi.SearchAttrLifecycleStepStartedAt)
	require.NotNil(t, got)
	require.True(t, at.Equal(*got))
	require.Equal(t, time.UTC, got.Location(), "answered in UTC")

	require.Nil(t, datetime(map[string]*commonpb.Payload{}, serverapi.SearchAttrLifecycleStepStartedAt))
	junk, err := converter.GetDefaultDataConverter().ToPayload("not a time")
	require.NoError(t, err)
	require.Nil(t, datetime(map[string]*commonpb.Payload{serverapi.SearchAttrLifecycleStepStartedAt: junk}, serverapi.SearchAttrLifecycleStepStartedAt))
}
