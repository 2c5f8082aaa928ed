package inventory

import (
	"context"
	"database/sql"
	"fmt"
)

// RecordStep adds one line to the asset history for a step whose work
// lives outside the CMDB (a drive wipe, a node deleted in Ironic), once
// per key: an activity that runs twice leaves one line, not two. It is
// how the decommission's history shows every step, including those that
// do not change the asset's state.
func (s *Store) RecordStep(ctx context.Context, serial, key, actor, action, detail string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `INSERT INTO operations (serial, key, at) VALUES ($1, $2, $3) ON CONFLICT (serial, key) DO NOTHING`,
			serial, key, s.now())
		if err != nil {
			return fmt.Errorf("inventory: record %s for %s: %w", key, serial, err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		return addChange(ctx, tx, serial, s.now(), actor, action, detail)
	})
}
