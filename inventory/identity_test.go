package inventory

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestIdentityIsWrittenOnceAndSurvivesReopening(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "inventory.db")
	a, err := Open(ctx, DialectSQLite, path)
	require.NoError(t, err)
	first, err := a.Identity(ctx)
	require.NoError(t, err)
	require.Len(t, first.ID, 32)
	require.NoError(t, a.Close())

	b, err := Open(ctx, DialectSQLite, path)
	require.NoError(t, err)
	defer b.Close()
	again, err := b.Identity(ctx)
	require.NoError(t, err)
	require.Equal(t, first.ID, again.ID, "reopening keeps the identity")

	other, err := Open(ctx, DialectSQLite, filepath.Join(t.TempDir(), "other.db"))
	require.NoError(t, err)
	defer other.Close()
	o, err := other.Identity(ctx)
	require.NoError(t, err)
	require.NotEqual(t, first.ID, o.ID, "another file is another inventory")
}

func TestBindKeyRefusesAnotherKey(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		id, err := s.BindKey(ctx, "aaaa")
		require.NoError(t, err)
		require.Equal(t, "aaaa", id.KeyFingerprint)
		_, err = s.BindKey(ctx, "aaaa")
		require.NoError(t, err, "the same key again")
		_, err = s.BindKey(ctx, "bbbb")
		require.ErrorIs(t, err, ErrOtherKey)
		require.ErrorContains(t, err, "fingerprint aaaa, this one's is bbbb")
		got, err := s.Identity(ctx)
		require.NoError(t, err)
		require.Equal(t, "aaaa", got.KeyFingerprint, "a refused key changes nothing")
	})
}
