package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// Token is an API token as stored: everything but the secret, of which only
// a hash is kept, so a copy of the database grants nobody access.
type Token struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	User    string `json:"user"`
	Role    string `json:"role"`
	Project string `json:"project,omitempty"`
	// Hash is the hex SHA-256 of the whole token; never serialised.
	Hash      string     `json:"-"`
	CreatedAt time.Time  `json:"createdAt"`
	CreatedBy string     `json:"createdBy"`
	RevokedAt *time.Time `json:"revokedAt,omitempty"`
}

// CreateToken stores a new token. The ID must be unused.
func (s *Store) CreateToken(ctx context.Context, t Token) (Token, error) {
	t.CreatedAt = s.now()
	_, err := s.db.ExecContext(ctx, `INSERT INTO api_tokens (id, name, user_name, role, project, hash, created_at, created_by)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, t.ID, t.Name, t.User, t.Role, t.Project, t.Hash, t.CreatedAt, t.CreatedBy)
	if err != nil {
		if isUniqueViolation(err) {
			return Token{}, fmt.Errorf("%w: token %s", ErrExists, t.ID)
		}
		return Token{}, fmt.Errorf("inventory: create token: %w", err)
	}
	return t, nil
}

const tokenColumns = `id, name, user_name, role, project, hash, created_at, created_by, revoked_at`

func scanToken(row interface{ Scan(...any) error }) (Token, error) {
	var (
		t       Token
		revoked sql.NullTime
	)
	if err := row.Scan(&t.ID, &t.Name, &t.User, &t.Role, &t.Project, &t.Hash, &t.CreatedAt, &t.CreatedBy, &revoked); err != nil {
		return Token{}, err
	}
	t.CreatedAt = t.CreatedAt.UTC()
	if revoked.Valid {
		at := revoked.Time.UTC()
		t.RevokedAt = &at
	}
	return t, nil
}

// TokenByID returns one token, revoked or not.
func (s *Store) TokenByID(ctx context.Context, id string) (Token, error) {
	t, err := scanToken(s.db.QueryRowContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return Token{}, fmt.Errorf("%w: token %s", ErrNotFound, id)
	}
	if err != nil {
		return Token{}, fmt.Errorf("inventory: token %s: %w", id, err)
	}
	return t, nil
}

// ListTokens returns every token, oldest first.
func (s *Store) ListTokens(ctx context.Context) ([]Token, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+tokenColumns+` FROM api_tokens ORDER BY created_at, id`)
	if err != nil {
		return nil, fmt.Errorf("inventory: list tokens: %w", err)
	}
	defer rows.Close()
	out := []Token{}
	for rows.Next() {
		t, err := scanToken(rows)
		if err != nil {
			return nil, fmt.Errorf("inventory: list tokens: %w", err)
		}
		out = append(out, t)
	}
	return out, rows.Err()
}

// RevokeToken ends a token's validity; revoking it again is a no-op.
func (s *Store) RevokeToken(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2) WHERE id = $1`, id, s.now())
	if err != nil {
		return fmt.Errorf("inventory: revoke token %s: %w", id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return fmt.Errorf("%w: token %s", ErrNotFound, id)
	}
	return nil
}

// CountActiveTokens counts tokens not revoked with the given role ("" = any).
func (s *Store) CountActiveTokens(ctx context.Context, role string) (int, error) {
	var n int
	err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM api_tokens WHERE revoked_at IS NULL AND ($1 = '' OR role = $1)`, role).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("inventory: count tokens: %w", err)
	}
	return n, nil
}

// AuditEntry is one mutating API call.
type AuditEntry struct {
	At     time.Time `json:"at"`
	User   string    `json:"user"`
	Role   string    `json:"role"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	Status int       `json:"status"`
}

// RecordAudit appends to the audit log.
func (s *Store) RecordAudit(ctx context.Context, e AuditEntry) error {
	if e.At.IsZero() {
		e.At = s.now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO audit_log (at, user_name, role, method, path, status) VALUES ($1, $2, $3, $4, $5, $6)`,
		e.At, e.User, e.Role, e.Method, e.Path, e.Status)
	if err != nil {
		return fmt.Errorf("inventory: audit: %w", err)
	}
	return nil
}

// AuditLog returns the latest entries, newest first.
func (s *Store) AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT at, user_name, role, method, path, status FROM audit_log ORDER BY id DESC LIMIT $1`, limit)
	if err != nil {
		return nil, fmt.Errorf("inventory: audit log: %w", err)
	}
	defer rows.Close()
	out := []AuditEntry{}
	for rows.Next() {
		var e AuditEntry
		if err := rows.Scan(&e.At, &e.User, &e.Role, &e.Method, &e.Path, &e.Status); err != nil {
			return nil, fmt.Errorf("inventory: audit log: %w", err)
		}
		e.At = e.At.UTC()
		out = append(out, e)
	}
	return out, rows.Err()
}

// TenantAssets lists the assets assigned to a cloud project, by serial.
func (s *Store) TenantAssets(ctx context.Context, tenant string) ([]Asset, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT serial FROM assets WHERE tenant = $1 ORDER BY serial`, tenant)
	if err != nil {
		return nil, fmt.Errorf("inventory: assets of %s: %w", tenant, err)
	}
	var serials []string
	for rows.Next() {
		var serial string
		if err := rows.Scan(&serial); err != nil {
			rows.Close()
			return nil, err
		}
		serials = append(serials, serial)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Asset, 0, len(serials))
	for _, serial := range serials {
		a, err := getAsset(ctx, s.db, serial)
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}
