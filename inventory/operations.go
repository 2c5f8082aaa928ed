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
