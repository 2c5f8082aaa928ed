package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"

	"github.com/metalflow/metalflow/inventory"
)

// tokenPrefix marks metalflow tokens so secret scanners and people can tell
// them apart from other bearer tokens.
const tokenPrefix = "mft_"

// UnauthenticatedError is a missing, malformed, unknown or revoked token.
type UnauthenticatedError struct{ Reason string }

func (e *UnauthenticatedError) Error() string { return "unauthenticated: " + e.Reason }

// IsUnauthenticated says whether err means "no valid token".
func IsUnauthenticated(err error) bool {
	var u *UnauthenticatedError
	return errors.As(err, &u)
}

func unauthenticated(reason string) error { return &UnauthenticatedError{Reason: reason} }

// TokenStore keeps tokens; inventory.Store is one.
type TokenStore interface {
	CreateToken(ctx context.Context, t inventory.Token) (inventory.Token, error)
	TokenByID(ctx context.Context, id string) (inventory.Token, error)
}

// Tokens issues and checks API tokens.
type Tokens struct {
	Store TokenStore
}

// IssueInput describes a new token.
type IssueInput struct {
	Name    string
	User    string
	Role    Role
	Project string
	// By is the user issuing it, for the record.
	By string
}

// validName allows 1-64 letters, digits, '.', '_', '@' and '-', starting
// with a letter or digit: names end up in logs and the audit trail.
func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i, r := range s {
		alnum := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
		if !alnum && (i == 0 || !strings.ContainsRune("._@-", r)) {
			return false
		}
	}
	return true
}

// Validate checks a request for a token before anything is stored.
func (in IssueInput) Validate() error {
	if !validName(in.Name) {
		return fmt.Errorf("name %q: 1-64 letters, digits, '.', '_', '@' or '-'", in.Name)
	}
	if in.User != "" && !validName(in.User) {
		return fmt.Errorf("user %q: 1-64 letters, digits, '.', '_', '@' or '-'", in.User)
	}
	if _, err := ParseRole(string(in.Role)); err != nil {
		return err
	}
	if in.Project != "" {
		if !validName(in.Project) {
			return fmt.Errorf("project %q: 1-64 letters, digits, '.', '_', '@' or '-'", in.Project)
		}
		// A tenant sees its own servers; acting on the fleet is staff's.
		if in.Role != Viewer {
			return fmt.Errorf("a project token can only have role %s", Viewer)
		}
	}
	return nil
}

// Issue creates a token and returns it in plain text: the only time anyone
// sees it.
func (t *Tokens) Issue(ctx context.Context, in IssueInput) (string, inventory.Token, error) {
	if err := in.Validate(); err != nil {
		return "", inventory.Token{}, err
	}
	idBytes := make([]byte, 6)
	secret := make([]byte, 24)
	if _, err := rand.Read(idBytes); err != nil {
		return "", inventory.Token{}, err
	}
	if _, err := rand.Read(secret); err != nil {
		return "", inventory.Token{}, err
	}
	id := hex.EncodeToString(idBytes)
	plain := tokenPrefix + id + "_" + hex.EncodeToString(secret)
	user := in.User
	if user == "" {
		user = in.Name
	}
	rec, err := t.Store.CreateToken(ctx, inventory.Token{
		ID: id, Name: in.Name, User: user, Role: string(in.Role), Project: in.Project,
		Hash: hashToken(plain), CreatedBy: in.By,
	})
	if err != nil {
		return "", inventory.Token{}, err
	}
	return plain, rec, nil
}

// Authenticate maps an Authorization header value to its principal.
func (t *Tokens) Authenticate(ctx context.Context, header string) (Principal, error) {
	scheme, value, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, unauthenticated("send Authorization: Bearer <token>")
	}
	value = strings.TrimSpace(value)
	rest, ok := strings.CutPrefix(value, tokenPrefix)
	if !ok {
		return Principal{}, unauthenticated("not a metalflow token")
	}
	id, _, ok := strings.Cut(rest, "_")
	if !ok || id == "" {
		return Principal{}, unauthenticated("malformed token")
	}
	rec, err := t.Store.TokenByID(ctx, id)
	if errors.Is(err, inventory.ErrNotFound) {
		return Principal{}, unauthenticated("unknown token")
	}
	if err != nil {
		return Principal{}, err
	}
	if subtle.ConstantTimeCompare([]byte(rec.Hash), []byte(hashToken(value))) != 1 {
		return Principal{}, unauthenticated("unknown token")
	}
	if rec.RevokedAt != nil {
		return Principal{}, unauthenticated("token revoked")
	}
	return Principal{User: rec.User, Role: Role(rec.Role), Project: rec.Project, TokenID: rec.ID}, nil
}

// hashToken is SHA-256: tokens carry 192 random bits, so a slow password
// hash would add latency to every request and no safety.
func hashToken(plain string) string {
	sum := sha256.Sum256([]byte(plain))
	return hex.EncodeToString(sum[:])
}
