package inventory

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestTokensAndAudit(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		n, err := s.CountActiveTokens(ctx, "")
		require.NoError(t, err)
		require.Zero(t, n)

		_, err = s.CreateToken(ctx, Token{ID: "a1", Name: "bootstrap", User: "admin", Role: "admin", Hash: "h1", CreatedBy: "metalflow"})
		require.NoError(t, err)
		_, err = s.CreateToken(ctx, Token{ID: "b2", Name: "acme", User: "acme", Role: "viewer", Project: "acme", Hash: "h2", CreatedBy: "admin"})
		require.NoError(t, err)
		_, err = s.CreateToken(ctx, Token{ID: "a1", Name: "again", User: "x", Role: "viewer", Hash: "h3", CreatedBy: "admin"})
		require.True(t, errors.Is(err, ErrExists), "a reused ID must be refused: %v", err)

		got, err := s.TokenByID(ctx, "b2")
		require.NoError(t, err)
		require.Equal(t, "acme", got.Project)
		require.Equal(t, "h2", got.Hash)
		require.Nil(t, got.RevokedAt)
		_, err = s.TokenByID(ctx, "zz")
		require.True(t, errors.Is(err, ErrNotFound))

		n, err = s.CountActiveTokens(ctx, "admin")
		require.NoError(t, err)
		require.Equal(t, 1, n)
		require.NoError(t, s.RevokeToken(ctx, "a1"))
		require.NoError(t, s.RevokeToken(ctx, "a1"), "revoking twice is a no-op")
		require.True(t, errors.Is(s.RevokeToken(ctx, "zz"), ErrNotFound))
		n, err = s.CountActiveTokens(ctx, "admin")
		require.NoError(t, err)
		require.Zero(t, n)
		list, err := s.ListTokens(ctx)
		require.NoError(t, err)
		require.Len(t, list, 2)
		require.NotNil(t, list[0].RevokedAt)

		require.NoError(t, s.RecordAudit(ctx, AuditEntry{User: "alice", Role: "operator", Method: "POST", Path: "/api/v1/servers", Status: 202}))
		require.NoError(t, s.RecordAudit(ctx, AuditEntry{User: "bob", Role: "viewer", Method: "DELETE", Path: "/api/v1/servers/SN1", Status: 403}))
		log, err := s.AuditLog(ctx, 10)
		require.NoError(t, err)
		require.Len(t, log, 2)
		require.Equal(t, "bob", log[0].User, "newest first")
		require.Equal(t, 403, log[0].Status)
	})
}

func TestTenantAssets(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		for serial, tenant := range map[string]string{"SN-A1": "acme", "SN-A2": "acme", "SN-B1": "globex", "SN-U": ""} {
			_, err := s.RegisterAsset(ctx, AssetRecord{Serial: serial, State: "ready", Tenant: tenant}, "lifecycle")
			require.NoError(t, err)
		}
		acme, err := s.TenantAssets(ctx, "acme")
		require.NoError(t, err)
		require.Len(t, acme, 2)
		require.Equal(t, "SN-A1", acme[0].Serial)
		require.Equal(t, "SN-A2", acme[1].Serial)
		none, err := s.TenantAssets(ctx, "initech")
		require.NoError(t, err)
		require.Empty(t, none)
	})
}
