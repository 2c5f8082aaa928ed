// Package credentials keeps BMC passwords out of workflow history: the API
// seals a credential and hands the workflow a reference; only activities
// resolve the reference, at the moment they talk to the BMC.
package credentials

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/metalflow/metalflow/inventory"
)

// Credential is a username and password for one BMC.
type Credential struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

// String never shows the password, so a credential printed by mistake in a
// log or an error leaks nothing.
func (c Credential) String() string { return fmt.Sprintf("{%s ********}", c.Username) }

// Store is where credentials live. The built-in Vault seals them into the
// inventory database; a real secret manager (Vault, a cloud KMS) implements
// the same two calls.
type Store interface {
	// Put stores a credential and returns a fresh reference to it.
	Put(ctx context.Context, scope string, c Credential) (string, error)
	// Get resolves a reference.
	Get(ctx context.Context, ref string) (Credential, error)
}

// ErrUnknownRef means a reference resolves to nothing.
var ErrUnknownRef = errors.New("unknown credential reference")

// Backend stores sealed secrets; *inventory.Store is one.
type Backend interface {
	PutSecret(ctx context.Context, s inventory.SealedSecret) error
	GetSecret(ctx context.Context, ref string) (inventory.SealedSecret, error)
}

// Vault seals credentials with AES-256-GCM under a key kept outside the
// database, binding each ciphertext to its reference so rows cannot be
// swapped.
type Vault struct {
	aead    cipher.AEAD
	backend Backend
}

// KeySize is the length of a vault key: AES-256.
const KeySize = 32

// NewVault builds a vault from a 32-byte key.
func NewVault(key []byte, backend Backend) (*Vault, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("credentials: key must be %d bytes, got %d", KeySize, len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &Vault{aead: aead, backend: backend}, nil
}

// refPrefix marks references so a password pasted where a reference belongs
// is recognised and refused rather than looked up.
const refPrefix = "cred-"

// Put seals c and stores it under a new random reference.
func (v *Vault) Put(ctx context.Context, scope string, c Credential) (string, error) {
	if c.Username == "" || c.Password == "" {
		return "", errors.New("credentials: username and password are required")
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		return "", err
	}
	ref := refPrefix + hex.EncodeToString(id)
	nonce := make([]byte, v.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	plain, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	sealed := v.aead.Seal(nil, nonce, plain, []byte(ref))
	if err := v.backend.PutSecret(ctx, inventory.SealedSecret{Ref: ref, Scope: scope, Nonce: nonce, Ciphertext: sealed}); err != nil {
		return "", err
	}
	return ref, nil
}

// Get opens the credential behind ref.
func (v *Vault) Get(ctx context.Context, ref string) (Credential, error) {
	if !IsRef(ref) {
		return Credential{}, fmt.Errorf("%w: %q is not a credential reference", ErrUnknownRef, redact(ref))
	}
	sec, err := v.backend.GetSecret(ctx, ref)
	if errors.Is(err, inventory.ErrNotFound) {
		return Credential{}, fmt.Errorf("%w: %s", ErrUnknownRef, ref)
	}
	if err != nil {
		return Credential{}, err
	}
	plain, err := v.aead.Open(nil, sec.Nonce, sec.Ciphertext, []byte(ref))
	if err != nil {
		return Credential{}, fmt.Errorf("credentials: %s cannot be opened with this key (wrong key file?)", ref)
	}
	var c Credential
	if err := json.Unmarshal(plain, &c); err != nil {
		return Credential{}, fmt.Errorf("credentials: %s: %w", ref, err)
	}
	return c, nil
}

// IsRef says whether s has the shape of a reference.
func IsRef(s string) bool {
	if !strings.HasPrefix(s, refPrefix) || len(s) != len(refPrefix)+32 {
		return false
	}
	_, err := hex.DecodeString(s[len(refPrefix):])
	return err == nil
}

func redact(s string) string {
	if len(s) <= 4 {
		return "****"
	}
	return s[:2] + "****"
}

// LoadOrCreateKey reads a vault key file, creating it (mode 0600) with a
// random key if it does not exist.
func LoadOrCreateKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		decoded, derr := hex.DecodeString(strings.TrimSpace(string(key)))
		if derr != nil || len(decoded) != KeySize {
			return nil, fmt.Errorf("credentials: %s is not a %d-byte hex key", path, KeySize)
		}
		return decoded, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	key = make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("credentials: create key file: %w", err)
	}
	defer f.Close()
	if _, err := f.WriteString(hex.EncodeToString(key) + "\n"); err != nil {
		return nil, err
	}
	return key, nil
}

// Fingerprint names a key without revealing it: the first 16 hex digits
// of an HMAC-SHA-256 of a fixed label under the key. Two processes compare
// fingerprints to know they hold the same key.
func Fingerprint(key []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("metalflow credential key fingerprint"))
	return hex.EncodeToString(m.Sum(nil))[:16]
}
