package maglev

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func backendSet(n int, weight uint32) []Backend {
	bs := make([]Backend, n)
	for i := range bs {
		bs[i] = Backend{Key: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), Weight: weight}
	}
	return bs
}

func shares(t Table, n int) []int {
	counts := make([]int, n)
	for _, s := range t.Slots {
		if s != Empty {
			counts[s]++
		}
	}
	return counts
}

func TestBuildIsDeterministicAcrossOrderAndRuns(t *testing.T) {
	bs := backendSet(37, 10)
	bs[3].Weight = 25
	first, err := Build(bs, DefaultSize, 42)
	require.NoError(t, err)

	again, err := Build(bs, DefaultSize, 42)
	require.NoError(t, err)
	assert.Equal(t, first.Slots, again.Slots)

	// Another node may list the same backends in another order; slots must
	// name the same backend key.
	shuffled := append([]Backend(nil), bs...)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
	other, err := Build(shuffled, DefaultSize, 42)
	require.NoError(t, err)
	for i := range first.Slots {
		require.Equal(t, bs[first.Slots[i]].Key, shuffled[other.Slots[i]].Key, "slot %d", i)
	}

	differentSeed, err := Build(bs, DefaultSize, 43)
	require.NoError(t, err)
	assert.NotEqual(t, first.Slots, differentSeed.Slots, "the seed must change the table")
}

func TestBuildFillsEverySlot(t *testing.T) {
	table, err := Build(backendSet(3, 1), 13, 7)
	require.NoError(t, err)
	for i, s := range table.Slots {
		assert.NotEqual(t, Empty, s, "slot %d empty", i)
	}
	counts := shares(table, 3)
	assert.Equal(t, 13, counts[0]+counts[1]+counts[2])
}

func TestBuildRespectsWeights(t *testing.T) {
	bs := []Backend{
		{Key: "10.0.1.11", Weight: 100},
		{Key: "10.0.1.12", Weight: 200},
		{Key: "10.0.1.13", Weight: 300},
		{Key: "10.0.1.14", Weight: 400},
		{Key: "10.0.1.15", Weight: 0},
	}
	table, err := Build(bs, DefaultSize, 1)
	require.NoError(t, err)
	counts := shares(table, len(bs))
	assert.Zero(t, counts[4], "a zero-weight backend owns no slot")
	for i := 0; i < 4; i++ {
		want := float64(bs[i].Weight) / 1000
		got := float64(counts[i]) / float64(DefaultSize)
		t.Logf("backend %s weight %d: share %.4f (want %.4f)", bs[i].Key, bs[i].Weight, got, want)
		assert.InDelta(t, want, got, 0.01, "backend %s", bs[i].Key)
	}
}

func TestBuildEqualWeightsAreBalanced(t *testing.T) {
	const n = 1000
	table, err := Build(backendSet(n, 1), DefaultSize, 9)
	require.NoError(t, err)
	counts := shares(table, n)
	ideal := float64(DefaultSize) / n
	for i, c := range counts {
		assert.InDelta(t, ideal, float64(c), 2, "backend %d", i)
	}
}

// disruption returns the fraction of slots that change owner when backend
// `removed` leaves a set of n equal backends.
func disruption(t testing.TB, n, removed int) float64 {
	bs := backendSet(n, 1)
	before, err := Build(bs, DefaultSize, 5)
	require.NoError(t, err)
	rest := append(append([]Backend(nil), bs[:removed]...), bs[removed+1:]...)
	after, err := Build(rest, DefaultSize, 5)
	require.NoError(t, err)
	moved := 0
	for i := range before.Slots {
		if bs[before.Slots[i]].Key != rest[after.Slots[i]].Key {
			moved++
		}
	}
	return float64(moved) / float64(DefaultSize)
}

func TestRemovingOneBackendMovesAboutOneNth(t *testing.T) {
	for _, n := range []int{10, 100} {
		got := disruption(t, n, n/2)
		ideal := 1 / float64(n)
		t.Logf("removing 1 of %d backends moved %.3f%% of slots (ideal %.3f%%)", n, got*100, ideal*100)
		assert.GreaterOrEqual(t, got, ideal*0.99, "the removed backend's slots must move")
		assert.Less(t, got, ideal*2, "Maglev keeps disruption near 1/N")
	}
}

func TestBuildRejectsBadInput(t *testing.T) {
	_, err := Build(backendSet(2, 1), 65536, 0)
	assert.ErrorContains(t, err, "not prime")
	_, err = Build([]Backend{{Key: "a", Weight: 1}, {Key: "a", Weight: 1}}, 13, 0)
	assert.ErrorContains(t, err, "twice")
	_, err = Build([]Backend{{Key: "", Weight: 1}}, 13, 0)
	assert.ErrorContains(t, err, "empty key")
}

func TestBuildWithNoWeightLeavesTableEmpty(t *testing.T) {
	table, err := Build([]Backend{{Key: "a", Weight: 0}}, 13, 0)
	require.NoError(t, err)
	for _, s := range table.Slots {
		assert.Equal(t, Empty, s)
	}
}

func BenchmarkBuild1000Backends(b *testing.B) {
	bs := backendSet(1000, 100)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(bs, DefaultSize, 1); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(disruption(b, 100, 50)*100, "disruption_pct")
}

// Nodes running different releases must still agree, so the table for a fixed
// input is pinned here; a change to this figure breaks mixed-version fleets.
func TestBuildMatchesPinnedFingerprint(t *testing.T) {
	table, err := Build(backendSet(5, 10), 101, 1)
	require.NoError(t, err)
	assert.Equal(t, pinnedTable101(), table.Slots)
}

func pinnedTable101() []int {
	return []int{1, 3, 4, 2, 3, 1, 2, 4, 1, 3, 2, 1, 3, 1, 2, 0, 1, 2, 2, 1, 2, 0, 3, 3, 2, 2, 0, 1, 0, 1, 2, 2, 0, 3, 3, 1, 0, 2, 0, 0, 4, 1, 4, 0, 4, 4, 4, 4, 4, 1, 2, 3, 4, 4, 0, 0, 4, 2, 3, 3, 1, 0, 3, 3, 2, 1, 0, 0, 1, 3, 1, 1, 0, 3, 0, 1, 3, 2, 2, 1, 3, 1, 4, 0, 2, 2, 2, 3, 0, 0, 4, 4, 4, 4, 3, 4, 4, 4, 3, 0, 0}
}
