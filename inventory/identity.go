package inventory

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"time"
)

// Identity tells one inventory from another: a worker and an API must
// share one, or the worker acts on sites, racks and secrets the API never
// wrote.
type Identity struct {
	ID        string
	CreatedAt time.Time
	// KeyFingerprint is the credential key's fingerprint the secrets are
	// sealed with; empty until a process opened the inventory with a key.
	KeyFingerprint string
}

// ErrOtherKey is a credential key other than the one the inventory's
// secrets are sealed with.
var ErrOtherKey = errors.New("sealed with another credential key")

// ensureIdentity gives a new inventory its identity; an existing one keeps
// its own (two processes opening a new file at once agree on the first).
func (s *Store) ensureIdentity(ctx context.Context) error {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO inventory_identity (singleton, id, created_at) VALUES (1, $1, $2)
		ON CONFLICT (singleton) DO NOTHING`, hex.EncodeToString(b), s.now())
	if err != nil {
		return fmt.Errorf("inventory: identity: %w", err)
	}
	return nil
}

// Identity reads the inventory's identity.
func (s *Store) Identity(ctx context.Context) (Identity, error) {
	var id Identity
	err := s.db.QueryRowContext(ctx, `SELECT id, created_at, key_fingerprint FROM inventory_identity WHERE singleton = 1`).
		Scan(&id.ID, &id.CreatedAt, &id.KeyFingerprint)
	if errors.Is(err, sql.ErrNoRows) {
		return Identity{}, fmt.Errorf("%w: the inventory has no identity", ErrNotFound)
	}
	if err != nil {
		return Identity{}, fmt.Errorf("inventory: identity: %w", err)
	}
	return id, nil
}

// BindKey records fingerprint as the credential key's when none is yet,
// and otherwise checks it is the one recorded: ErrOtherKey if not.
func (s *Store) BindKey(ctx context.Context, fingerprint string) (Identity, error) {
	if fingerprint == "" {
		return Identity{}, fmt.Errorf("%w: empty key fingerprint", ErrInvalid)
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE inventory_identity SET key_fingerprint = $1 WHERE singleton = 1 AND key_fingerprint = ''`, fingerprint); err != nil {
		return Identity{}, fmt.Errorf("inventory: bind key: %w", err)
	}
	id, err := s.Identity(ctx)
	if err != nil {
		return Identity{}, err
	}
	if id.KeyFingerprint != fingerprint {
		return id, fmt.Errorf("%w: inventory %s was sealed with the key of fingerprint %s, this one's is %s", ErrOtherKey, id.ID, id.KeyFingerprint, fingerprint)
	}
	return id, nil
}
