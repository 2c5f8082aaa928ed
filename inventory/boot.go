package inventory

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// BootConfig is one install attempt of one server.
type BootConfig struct {
	Serial    string
	Attempt   int
	MACs      []string
	Token     string
	IssuedAt  time.Time
	ExpiresAt time.Time
	CycledAt  *time.Time
	PhonedAt  *time.Time
	RetiredAt *time.Time
	// DeployPlan is the plan a deploy by metalflow's agent writes, as the
	// lifecycle gave it (JSON); nil for an attempt that runs the installer.
	DeployPlan json.RawMessage
	// Decision is the lifecycle's word on the plan (DeployPending,
	// DeployReleased, DeployRefused with DecisionReason); "" without one.
	Decision       string
	DecisionReason string
	DecidedAt      *time.Time
	// DiskBootedAt is when the written disk was made the boot device and
	// the server powered on into it.
	DiskBootedAt *time.Time
}

// Active says whether the boot service should still hand it out.
func (b BootConfig) Active(now time.Time) bool {
	return b.RetiredAt == nil && b.PhonedAt == nil && now.Before(b.ExpiresAt)
}

// IssueBoot creates install attempt `attempt` for a server, or returns it
// unchanged if it exists (a retried activity gets the same token). Older
// attempts of the server are retired: only one may boot.
func (s *Store) IssueBoot(ctx context.Context, serial string, attempt int, macs []string, ttl time.Duration) (BootConfig, error) {
	if len(macs) == 0 {
		return BootConfig{}, fmt.Errorf("%w: server %s has no MAC to netboot from", ErrInvalid, serial)
	}
	norm := make([]string, len(macs))
	for i, m := range macs {
		norm[i] = NormalizeMAC(m)
	}
	var out BootConfig
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getBoot(ctx, tx, serial, attempt)
		if err == nil {
			out = cur
			return nil
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		now := s.now()
		if _, err := tx.ExecContext(ctx, `UPDATE boot_configs SET retired_at = $1 WHERE serial = $2 AND retired_at IS NULL`, now, serial); err != nil {
			return err
		}
		tok := make([]byte, 24)
		if _, err := rand.Read(tok); err != nil {
			return err
		}
		macsJSON, _ := json.Marshal(norm)
		out = BootConfig{Serial: serial, Attempt: attempt, MACs: norm, Token: hex.EncodeToString(tok), IssuedAt: now, ExpiresAt: now.Add(ttl)}
		_, err = tx.ExecContext(ctx, `INSERT INTO boot_configs (serial, attempt, macs, token, issued_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6)`,
			serial, attempt, string(macsJSON), out.Token, out.IssuedAt, out.ExpiresAt)
		if err != nil {
			return err
		}
		return addChange(ctx, tx, serial, now, "boot-service", "install issued", fmt.Sprintf("attempt %d, MACs %v", attempt, norm))
	})
	return out, err
}

// MarkCycled records that the server was power-cycled into attempt, and
// says whether it already had been: the install activity cycles only once
// per attempt even when it runs twice.
func (s *Store) MarkCycled(ctx context.Context, serial string, attempt int) (already bool, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getBoot(ctx, tx, serial, attempt)
		if err != nil {
			return err
		}
		if cur.CycledAt != nil {
			already = true
			return nil
		}
		_, err = tx.ExecContext(ctx, `UPDATE boot_configs SET cycled_at = $1 WHERE serial = $2 AND attempt = $3`, s.now(), serial, attempt)
		return err
	})
	return already, err
}

// ActiveBootForMAC is the attempt a netbooting MAC should install, if any.
func (s *Store) ActiveBootForMAC(ctx context.Context, mac string) (BootConfig, error) {
	mac = NormalizeMAC(mac)
	rows, err := s.db.QueryContext(ctx, `SELECT serial, attempt FROM boot_configs WHERE retired_at IS NULL AND phoned_at IS NULL ORDER BY issued_at DESC`)
	if err != nil {
		return BootConfig{}, err
	}
	type key struct {
		serial  string
		attempt int
	}
	var keys []key
	for rows.Next() {
		var k key
		if err := rows.Scan(&k.serial, &k.attempt); err != nil {
			rows.Close()
			return BootConfig{}, err
		}
		keys = append(keys, k)
	}
	rows.Close()
	now := s.now()
	for _, k := range keys {
		b, err := getBoot(ctx, s.db, k.serial, k.attempt)
		if err != nil {
			return BootConfig{}, err
		}
		if b.Active(now) && slices.Contains(b.MACs, mac) {
			return b, nil
		}
	}
	return BootConfig{}, fmt.Errorf("%w: no install pending for MAC %s", ErrNotFound, mac)
}

// ActiveBoot is the server's pending install attempt, if any.
func (s *Store) ActiveBoot(ctx context.Context, serial string) (BootConfig, error) {
	var attempt int
	err := s.db.QueryRowContext(ctx, `SELECT attempt FROM boot_configs WHERE serial = $1 AND retired_at IS NULL AND phoned_at IS NULL ORDER BY attempt DESC LIMIT 1`, serial).Scan(&attempt)
	if errors.Is(err, sql.ErrNoRows) {
		return BootConfig{}, fmt.Errorf("%w: no install pending for %s", ErrNotFound, serial)
	}
	if err != nil {
		return BootConfig{}, err
	}
	b, err := getBoot(ctx, s.db, serial, attempt)
	if err != nil {
		return BootConfig{}, err
	}
	if !b.Active(s.now()) {
		return BootConfig{}, fmt.Errorf("%w: install attempt %d of %s expired", ErrNotFound, attempt, serial)
	}
	return b, nil
}

// ConsumePhoneHome spends a token: the first call returns its attempt, any
// later one ErrNotFound, so an installer (or an attacker replaying it) can
// finish an install only once.
func (s *Store) ConsumePhoneHome(ctx context.Context, token string) (BootConfig, error) {
	var out BootConfig
	err := s.inTx(ctx, func(tx *sql.Tx) error {
		b, err := bootByToken(ctx, tx, token)
		if err != nil {
			return err
		}
		now := s.now()
		// The boot service signals the lifecycle before it spends the
		// token, and the lifecycle may finish the install and retire the
		// attempt in between: that phone-home still counts, once. An
		// attempt a newer one retired does not.
		if !b.Active(now) {
			var latest int
			if err := tx.QueryRowContext(ctx, `SELECT MAX(attempt) FROM boot_configs WHERE serial = $1`, b.Serial).Scan(&latest); err != nil {
				return err
			}
			if b.RetiredAt == nil || b.PhonedAt != nil || latest != b.Attempt {
				return fmt.Errorf("%w: phone-home token of %s attempt %d already used, retired or expired", ErrNotFound, b.Serial, b.Attempt)
			}
		}
		serial, attempt := b.Serial, b.Attempt
		res, err := tx.ExecContext(ctx, `UPDATE boot_configs SET phoned_at = $1 WHERE serial = $2 AND attempt = $3 AND phoned_at IS NULL`, now, serial, attempt)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return fmt.Errorf("%w: phone-home token already used", ErrNotFound)
		}
		b.PhonedAt = &now
		out = b
		return addChange(ctx, tx, serial, now, "installer", "phoned home", fmt.Sprintf("attempt %d", attempt))
	})
	return out, err
}

// RetireBoot stops handing out any install for the server, so the next
// netboot falls through to the local disk and never reinstalls by accident.
func (s *Store) RetireBoot(ctx context.Context, serial string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE boot_configs SET retired_at = $1 WHERE serial = $2 AND retired_at IS NULL`, s.now(), serial)
	return err
}

// BootAttempts lists a server's install attempts, oldest first.
func (s *Store) BootAttempts(ctx context.Context, serial string) ([]BootConfig, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT attempt FROM boot_configs WHERE serial = $1 ORDER BY attempt`, serial)
	if err != nil {
		return nil, err
	}
	var attempts []int
	for rows.Next() {
		var a int
		if err := rows.Scan(&a); err != nil {
			rows.Close()
			return nil, err
		}
		attempts = append(attempts, a)
	}
	rows.Close()
	out := make([]BootConfig, 0, len(attempts))
	for _, a := range attempts {
		b, err := getBoot(ctx, s.db, serial, a)
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func getBoot(ctx context.Context, q querier, serial string, attempt int) (BootConfig, error) {
	b := BootConfig{Serial: serial, Attempt: attempt}
	var macs string
	var plan sql.NullString
	var cycled, phoned, retired, decided, diskBooted sql.NullTime
	err := q.QueryRowContext(ctx, `SELECT macs, token, issued_at, expires_at, cycled_at, phoned_at, retired_at,
		deploy_plan, deploy_decision, deploy_reason, decided_at, disk_booted_at
		FROM boot_configs WHERE serial = $1 AND attempt = $2`, serial, attempt).
		Scan(&macs, &b.Token, &b.IssuedAt, &b.ExpiresAt, &cycled, &phoned, &retired,
			&plan, &b.Decision, &b.DecisionReason, &decided, &diskBooted)
	if errors.Is(err, sql.ErrNoRows) {
		return BootConfig{}, fmt.Errorf("%w: install attempt %d of %s", ErrNotFound, attempt, serial)
	}
	if err != nil {
		return BootConfig{}, err
	}
	if err := json.Unmarshal([]byte(macs), &b.MACs); err != nil {
		return BootConfig{}, err
	}
	b.IssuedAt, b.ExpiresAt = b.IssuedAt.UTC(), b.ExpiresAt.UTC()
	b.CycledAt, b.PhonedAt, b.RetiredAt = timePtr(cycled), timePtr(phoned), timePtr(retired)
	b.DecidedAt, b.DiskBootedAt = timePtr(decided), timePtr(diskBooted)
	if plan.Valid {
		b.DeployPlan = json.RawMessage(plan.String)
	}
	return b, nil
}

func timePtr(t sql.NullTime) *time.Time {
	if !t.Valid {
		return nil
	}
	u := t.Time.UTC()
	return &u
}

// NormalizeMAC writes a MAC as iPXE's ${mac} does: lower case, colons.
func NormalizeMAC(mac string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimSpace(mac)), "-", ":")
}

// ActiveBootByToken finds the pending attempt a phone-home token belongs to
// without spending it.
func (s *Store) ActiveBootByToken(ctx context.Context, token string) (BootConfig, error) {
	return activeBootByToken(ctx, s.db, token, s.now())
}

func activeBootByToken(ctx context.Context, q querier, token string, now time.Time) (BootConfig, error) {
	b, err := bootByToken(ctx, q, token)
	if err != nil {
		return BootConfig{}, err
	}
	if !b.Active(now) {
		return BootConfig{}, fmt.Errorf("%w: phone-home token of %s attempt %d already used, retired or expired", ErrNotFound, b.Serial, b.Attempt)
	}
	return b, nil
}

// bootByToken is the attempt a token was issued for, whatever its state.
func bootByToken(ctx context.Context, q querier, token string) (BootConfig, error) {
	var serial string
	var attempt int
	err := q.QueryRowContext(ctx, `SELECT serial, attempt FROM boot_configs WHERE token = $1`, token).Scan(&serial, &attempt)
	if errors.Is(err, sql.ErrNoRows) {
		return BootConfig{}, fmt.Errorf("%w: unknown phone-home token", ErrNotFound)
	}
	if err != nil {
		return BootConfig{}, err
	}
	return getBoot(ctx, q, serial, attempt)
}
