package inventory

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestBootAttemptsAreOneTime(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		_, err := s.RegisterAsset(ctx, AssetRecord{Serial: "SN-B"}, "t")
		require.NoError(t, err)
		macs := []string{"02-AA-BB-CC-DD-01", "02:aa:bb:cc:dd:02"}
		b1, err := s.IssueBoot(ctx, "SN-B", 1, macs, time.Hour)
		require.NoError(t, err)
		require.Equal(t, []string{"02:aa:bb:cc:dd:01", "02:aa:bb:cc:dd:02"}, b1.MACs)
		again, err := s.IssueBoot(ctx, "SN-B", 1, macs, time.Hour)
		require.NoError(t, err)
		require.Equal(t, b1.Token, again.Token, "a retried issue returns the same attempt")

		got, err := s.ActiveBootForMAC(ctx, "02:AA:BB:CC:DD:02")
		require.NoError(t, err)
		require.Equal(t, 1, got.Attempt)
		_, err = s.ActiveBootForMAC(ctx, "02:00:00:00:00:99")
		require.ErrorIs(t, err, ErrNotFound)

		already, err := s.MarkCycled(ctx, "SN-B", 1)
		require.NoError(t, err)
		require.False(t, already)
		already, err = s.MarkCycled(ctx, "SN-B", 1)
		require.NoError(t, err)
		require.True(t, already, "the second run of the install activity must not cycle again")

		// A new attempt retires the old one and its token.
		b2, err := s.IssueBoot(ctx, "SN-B", 2, macs, time.Hour)
		require.NoError(t, err)
		require.NotEqual(t, b1.Token, b2.Token)
		_, err = s.ConsumePhoneHome(ctx, b1.Token)
		require.ErrorIs(t, err, ErrNotFound)

		// Racing installers: exactly one phone-home counts.
		var wg sync.WaitGroup
		results := make([]error, 4)
		for i := range results {
			wg.Add(1)
			go func() { defer wg.Done(); _, results[i] = s.ConsumePhoneHome(ctx, b2.Token) }()
		}
		wg.Wait()
		ok := 0
		for _, err := range results {
			if err == nil {
				ok++
			} else {
				require.ErrorIs(t, err, ErrNotFound)
			}
		}
		require.Equal(t, 1, ok)
		_, err = s.ActiveBootForMAC(ctx, macs[0])
		require.ErrorIs(t, err, ErrNotFound, "after phone-home the server boots from disk")

		all, err := s.BootAttempts(ctx, "SN-B")
		require.NoError(t, err)
		require.Len(t, all, 2)
		require.NotNil(t, all[0].RetiredAt)
		require.NotNil(t, all[1].PhonedAt)
		require.NotNil(t, all[0].CycledAt)

		_, err = s.ConsumePhoneHome(ctx, "not-a-token")
		require.ErrorIs(t, err, ErrNotFound)
		_, err = s.IssueBoot(ctx, "SN-B", 3, nil, time.Hour)
		require.ErrorIs(t, err, ErrInvalid)
	})
}

func TestBootAttemptExpires(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		_, err := s.RegisterAsset(ctx, AssetRecord{Serial: "SN-E"}, "t")
		require.NoError(t, err)
		b, err := s.IssueBoot(ctx, "SN-E", 1, []string{"02:00:00:00:00:0e"}, time.Minute)
		require.NoError(t, err)
		real := s.now
		s.now = func() time.Time { return real().Add(2 * time.Minute) }
		defer func() { s.now = real }()
		_, err = s.ActiveBootForMAC(ctx, "02:00:00:00:00:0e")
		require.ErrorIs(t, err, ErrNotFound)
		_, err = s.ConsumePhoneHome(ctx, b.Token)
		require.ErrorIs(t, err, ErrNotFound)
		require.NoError(t, s.RetireBoot(ctx, "SN-E"))
	})
}

// The boot service signals the lifecycle before it spends the token; the
// lifecycle may retire the attempt in between. The phone-home is still
// recorded, once.
func TestPhoneHomeCountsAfterTheLifecycleRetiredTheAttempt(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		_, err := s.RegisterAsset(ctx, AssetRecord{Serial: "SN-R"}, "t")
		require.NoError(t, err)
		b, err := s.IssueBoot(ctx, "SN-R", 1, []string{"02:00:00:00:00:0f"}, time.Hour)
		require.NoError(t, err)
		require.NoError(t, s.RetireBoot(ctx, "SN-R"))
		got, err := s.ConsumePhoneHome(ctx, b.Token)
		require.NoError(t, err)
		require.NotNil(t, got.PhonedAt)
		_, err = s.ConsumePhoneHome(ctx, b.Token)
		require.ErrorIs(t, err, ErrNotFound, "once")
		hist, err := s.History(ctx, "SN-R")
		require.NoError(t, err)
		n := 0
		for _, h := range hist {
			if h.Action == "phoned home" {
				n++
			}
		}
		require.Equal(t, 1, n)
	})
}
