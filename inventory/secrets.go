package inventory

import (
	"context"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
)

// SealedSecret is an encrypted value as stored; the inventory never sees
// the plaintext or the key.
type SealedSecret struct {
	Ref        string
	Scope      string
	Nonce      []byte
	Ciphertext []byte
}

// PutSecret stores a sealed secret under a new reference.
func (s *Store) PutSecret(ctx context.Context, sec SealedSecret) error {
	_, err := s.db.ExecContext(ctx,
		`INSERT INTO secrets (ref, scope, nonce, ciphertext, created_at) VALUES ($1, $2, $3, $4, $5)`,
		sec.Ref, sec.Scope, base64.StdEncoding.EncodeToString(sec.Nonce),
		base64.StdEncoding.EncodeToString(sec.Ciphertext), s.now())
	if err != nil {
		return fmt.Errorf("inventory: store secret %s: %w", sec.Ref, err)
	}
	return nil
}

// GetSecret loads a sealed secret by reference.
func (s *Store) GetSecret(ctx context.Context, ref string) (SealedSecret, error) {
	sec := SealedSecret{Ref: ref}
	var nonce, ct string
	err := s.db.QueryRowContext(ctx, `SELECT scope, nonce, ciphertext FROM secrets WHERE ref = $1`, ref).
		Scan(&sec.Scope, &nonce, &ct)
	if errors.Is(err, sql.ErrNoRows) {
		return SealedSecret{}, fmt.Errorf("%w: secret %s", ErrNotFound, ref)
	}
	if err != nil {
		return SealedSecret{}, fmt.Errorf("inventory: secret %s: %w", ref, err)
	}
	if sec.Nonce, err = base64.StdEncoding.DecodeString(nonce); err != nil {
		return SealedSecret{}, fmt.Errorf("inventory: secret %s: %w", ref, err)
	}
	if sec.Ciphertext, err = base64.StdEncoding.DecodeString(ct); err != nil {
		return SealedSecret{}, fmt.Errorf("inventory: secret %s: %w", ref, err)
	}
	return sec, nil
}
