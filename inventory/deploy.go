package inventory

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
)

// Decisions on a deploy plan. The agent asks for its plan until the
// lifecycle has compared the agent's inventory with the BMC's and decided.
const (
	DeployPending  = "pending"
	DeployReleased = "released"
	DeployRefused  = "refused"
)

// SetDeployPlan records that install attempt `attempt` of a server is a
// deploy by metalflow's agent writing plan (JSON, kept as given), pending
// the lifecycle's decision. The install step calls it after IssueBoot;
// calling it again with the same plan changes nothing, while another plan
// for the same attempt is ErrInvalid: the agent may already hold the first.
func (s *Store) SetDeployPlan(ctx context.Context, serial string, attempt int, plan []byte) error {
	var want bytes.Buffer
	if err := json.Compact(&want, plan); err != nil || want.Len() == 0 || want.Bytes()[0] != '{' {
		return fmt.Errorf("%w: the deploy plan of %s attempt %d is not a JSON object", ErrInvalid, serial, attempt)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getBoot(ctx, tx, serial, attempt)
		if err != nil {
			return err
		}
		if cur.DeployPlan != nil {
			var have bytes.Buffer
			if err := json.Compact(&have, cur.DeployPlan); err == nil && bytes.Equal(have.Bytes(), want.Bytes()) {
				return nil
			}
			return fmt.Errorf("%w: install attempt %d of %s already carries another deploy plan", ErrInvalid, attempt, serial)
		}
		if !cur.Active(s.now()) {
			return fmt.Errorf("%w: install attempt %d of %s has ended", ErrInvalid, attempt, serial)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE boot_configs SET deploy_plan = $1, deploy_decision = $2 WHERE serial = $3 AND attempt = $4`,
			want.String(), DeployPending, serial, attempt); err != nil {
			return err
		}
		return addChange(ctx, tx, serial, s.now(), "boot-service", "deploy planned", fmt.Sprintf("attempt %d is written by the deploy agent", attempt))
	})
}

// DecideDeploy releases the plan of a deploy attempt to its agent, or
// refuses it with reason. The same decision again changes nothing, so a
// retried activity neither fails nor adds history; a different one
// replaces it (the lifecycle changed its mind, e.g. after staff looked).
// An attempt without a plan is ErrInvalid.
func (s *Store) DecideDeploy(ctx context.Context, serial string, attempt int, release bool, reason string) error {
	decision, action := DeployRefused, "deploy refused"
	if release {
		decision, action = DeployReleased, "deploy released"
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getBoot(ctx, tx, serial, attempt)
		if err != nil {
			return err
		}
		if cur.DeployPlan == nil {
			return fmt.Errorf("%w: install attempt %d of %s has no deploy plan to decide on", ErrInvalid, attempt, serial)
		}
		if cur.Decision == decision && cur.DecisionReason == reason {
			return nil
		}
		now := s.now()
		if _, err := tx.ExecContext(ctx, `UPDATE boot_configs SET deploy_decision = $1, deploy_reason = $2, decided_at = $3 WHERE serial = $4 AND attempt = $5`,
			decision, reason, now, serial, attempt); err != nil {
			return err
		}
		detail := fmt.Sprintf("attempt %d", attempt)
		if reason != "" {
			detail += ": " + reason
		}
		return addChange(ctx, tx, serial, now, "boot-service", action, detail)
	})
}

// MarkDiskBooted records that the written disk of attempt was made the
// boot device and the server powered on into it, and says whether that had
// already been recorded: the boot-from-disk activity powers on once per
// attempt even when it runs twice.
func (s *Store) MarkDiskBooted(ctx context.Context, serial string, attempt int) (already bool, err error) {
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getBoot(ctx, tx, serial, attempt)
		if err != nil {
			return err
		}
		if cur.DiskBootedAt != nil {
			already = true
			return nil
		}
		_, err = tx.ExecContext(ctx, `UPDATE boot_configs SET disk_booted_at = $1 WHERE serial = $2 AND attempt = $3`, s.now(), serial, attempt)
		return err
	})
	return already, err
}
