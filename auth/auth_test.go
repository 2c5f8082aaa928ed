package auth

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/inventory"
)

func newTokens(t *testing.T) (*Tokens, *inventory.Store) {
	t.Helper()
	s, err := inventory.Open(context.Background(), inventory.DialectSQLite, filepath.Join(t.TempDir(), "inv.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return &Tokens{Store: s}, s
}

func TestRoleLadder(t *testing.T) {
	for _, tc := range []struct {
		have, need Role
		ok         bool
	}{
		{Viewer, Viewer, true}, {Viewer, Technician, false},
		{Technician, Viewer, true}, {Technician, Technician, true}, {Technician, Operator, false},
		{Operator, Technician, true}, {Operator, Admin, false}, {Operator, Approver, false},
		{Approver, Viewer, true}, {Approver, Technician, false}, {Approver, Approver, true},
		{Admin, Operator, true}, {Admin, Approver, true}, {Admin, Admin, true},
		{Role("root"), Viewer, false}, {Role(""), Viewer, false},
	} {
		require.Equal(t, tc.ok, tc.have.Allows(tc.need), "%s allows %s", tc.have, tc.need)
	}
}

func TestIssueAndAuthenticate(t *testing.T) {
	ctx := context.Background()
	tokens, store := newTokens(t)
	plain, rec, err := tokens.Issue(ctx, IssueInput{Name: "rack-tablet", User: "alice", Role: Technician, By: "admin"})
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(plain, "mft_"+rec.ID+"_"))

	p, err := tokens.Authenticate(ctx, "Bearer "+plain)
	require.NoError(t, err)
	require.Equal(t, Principal{User: "alice", Role: Technician, TokenID: rec.ID}, p)

	// Only the hash is stored: the plain token is nowhere in the record.
	got, err := store.TokenByID(ctx, rec.ID)
	require.NoError(t, err)
	require.NotContains(t, got.Hash, plain[len("mft_"+rec.ID+"_"):])
	require.Len(t, got.Hash, 64)

	for name, header := range map[string]string{
		"missing":      "",
		"basic":        "Basic YWxpY2U6c2VjcmV0",
		"foreign":      "Bearer ghp_abcdef",
		"no id":        "Bearer mft_",
		"wrong secret": "Bearer mft_" + rec.ID + "_00",
		"unknown id":   "Bearer mft_ffffffffffff_" + strings.Repeat("0", 48),
	} {
		_, err := tokens.Authenticate(ctx, header)
		require.Error(t, err, name)
		require.True(t, IsUnauthenticated(err), "%s: %v", name, err)
	}

	require.NoError(t, store.RevokeToken(ctx, rec.ID))
	_, err = tokens.Authenticate(ctx, "Bearer "+plain)
	require.True(t, IsUnauthenticated(err), "a revoked token still works: %v", err)
}

func TestIssueRefusesBadInputAndStoresNothing(t *testing.T) {
	ctx := context.Background()
	tokens, store := newTokens(t)
	for _, in := range []IssueInput{
		{Name: "", Role: Viewer},
		{Name: "has space", Role: Viewer},
		{Name: strings.Repeat("a", 65), Role: Viewer},
		{Name: "ok", Role: "root"},
		{Name: "ok", User: "-alice", Role: Viewer},
		{Name: "tenant", Role: Operator, Project: "acme"},
		{Name: "tenant", Role: Viewer, Project: "acme corp"},
	} {
		_, _, err := tokens.Issue(ctx, in)
		require.Error(t, err, "%+v", in)
	}
	n, err := store.CountActiveTokens(ctx, "")
	require.NoError(t, err)
	require.Zero(t, n)

	_, rec, err := tokens.Issue(ctx, IssueInput{Name: "acme-portal", Role: Viewer, Project: "acme"})
	require.NoError(t, err)
	require.Equal(t, "acme", rec.Project)
	require.Equal(t, "acme-portal", rec.User, "the user defaults to the token's name")
}
