package inventory

import (
	"context"
	"fmt"
)

// RecordOnce remembers that a one-off side effect (a BIOS reset, a power
// cycle) is being done for key, and says whether this is the first time. An
// activity that runs twice checks it before touching the hardware again.
func (s *Store) RecordOnce(ctx context.Context, serial, key string) (first bool, err error) {
	res, err := s.db.ExecContext(ctx, `INSERT INTO operations (serial, key, at) VALUES ($1, $2, $3) ON CONFLICT (serial, key) DO NOTHING`,
		serial, key, s.now())
	if err != nil {
		return false, fmt.Errorf("inventory: record %s for %s: %w", key, serial, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, err
	}
	return n == 1, nil
}

// Recorded tells whether RecordOnce has been called for key, without
// recording it: an activity that must record only at a safe point (the
// host off) first asks whether an earlier run got that far.
func (s *Store) Recorded(ctx context.Context, serial, key string) (bool, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, `SELECT COUNT(*) FROM operations WHERE serial = $1 AND key = $2`, serial, key).Scan(&n); err != nil {
		return false, fmt.Errorf("inventory: look up %s for %s: %w", key, serial, err)
	}
	return n > 0, nil
}
