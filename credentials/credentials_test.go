package credentials

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/inventory"
)

func openVault(t *testing.T, dbPath string, key []byte) *Vault {
	t.Helper()
	store, err := inventory.Open(context.Background(), inventory.DialectSQLite, dbPath)
	require.NoError(t, err)
	t.Cleanup(func() { _ = store.Close() })
	v, err := NewVault(key, store)
	require.NoError(t, err)
	return v
}

func TestVaultSealsAndResolves(t *testing.T) {
	dir := t.TempDir()
	key, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	require.NoError(t, err)
	again, err := LoadOrCreateKey(filepath.Join(dir, "key"))
	require.NoError(t, err)
	require.Equal(t, key, again, "an existing key file is read, not replaced")
	st, err := os.Stat(filepath.Join(dir, "key"))
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), st.Mode().Perm())

	dbPath := filepath.Join(dir, "inv.db")
	v := openVault(t, dbPath, key)
	ctx := context.Background()
	cred := Credential{Username: "root", Password: "calvin-s3cret!"}
	ref, err := v.Put(ctx, "bmc/SN-1", cred)
	require.NoError(t, err)
	require.True(t, IsRef(ref))
	require.NotContains(t, ref, "calvin")
	got, err := v.Get(ctx, ref)
	require.NoError(t, err)
	require.Equal(t, cred, got)

	// Two puts of one credential give two references (a retry with a new
	// password never aliases an old one).
	ref2, err := v.Put(ctx, "bmc/SN-1", cred)
	require.NoError(t, err)
	require.NotEqual(t, ref, ref2)

	// The database file holds no plaintext.
	raw, err := os.ReadFile(dbPath)
	require.NoError(t, err)
	wal, _ := os.ReadFile(dbPath + "-wal")
	require.False(t, strings.Contains(string(raw)+string(wal), "calvin-s3cret!"))

	// The printed form hides the password.
	require.NotContains(t, cred.String(), "calvin")
}

func TestVaultRefusesWhatItCannotOpen(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "inv.db")
	key := make([]byte, KeySize)
	v := openVault(t, dbPath, key)
	ctx := context.Background()
	ref, err := v.Put(ctx, "bmc/SN-2", Credential{Username: "admin", Password: "pw"})
	require.NoError(t, err)

	other := make([]byte, KeySize)
	other[0] = 1
	v2, err := NewVault(other, mustStore(t, dbPath))
	require.NoError(t, err)
	_, err = v2.Get(ctx, ref)
	require.ErrorContains(t, err, "wrong key file")

	_, err = v.Get(ctx, "cred-00000000000000000000000000000000")
	require.ErrorIs(t, err, ErrUnknownRef)
	_, err = v.Get(ctx, "hunter2")
	require.ErrorIs(t, err, ErrUnknownRef)
	require.NotContains(t, err.Error(), "hunter2", "a password pasted as a reference is not echoed")

	_, err = v.Put(ctx, "bmc/SN-3", Credential{Username: "admin"})
	require.Error(t, err)
	_, err = NewVault([]byte("short"), nil)
	require.Error(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "badkey"), []byte("nothex"), 0o600))
	_, err = LoadOrCreateKey(filepath.Join(dir, "badkey"))
	require.Error(t, err)
}

func mustStore(t *testing.T, path string) *inventory.Store {
	t.Helper()
	s, err := inventory.Open(context.Background(), inventory.DialectSQLite, path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}
