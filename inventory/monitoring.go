package inventory

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
)

// Target is one Prometheus scrape target.
type Target struct {
	Serial  string            `json:"serial"`
	Kind    string            `json:"kind"`
	Address string            `json:"address"`
	Labels  map[string]string `json:"labels"`
}

// Target kinds.
const (
	TargetBMC  = "bmc"
	TargetHost = "host"
)

// UpsertTarget adds or updates a scrape target; the same target again
// changes nothing.
func (s *Store) UpsertTarget(ctx context.Context, t Target) error {
	labels, err := json.Marshal(t.Labels)
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO monitoring_targets (serial, kind, address, labels) VALUES ($1, $2, $3, $4)
		ON CONFLICT (serial, kind) DO UPDATE SET address = excluded.address, labels = excluded.labels`,
		t.Serial, t.Kind, t.Address, string(labels))
	if err != nil {
		return fmt.Errorf("inventory: monitoring target %s/%s: %w", t.Serial, t.Kind, err)
	}
	return nil
}

// RemoveTargets drops every target of a server.
func (s *Store) RemoveTargets(ctx context.Context, serial string) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM monitoring_targets WHERE serial = $1`, serial)
	return err
}

// Targets lists every scrape target, by serial then kind.
func (s *Store) Targets(ctx context.Context) ([]Target, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT serial, kind, address, labels FROM monitoring_targets`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Target
	for rows.Next() {
		var t Target
		var labels string
		if err := rows.Scan(&t.Serial, &t.Kind, &t.Address, &labels); err != nil {
			return nil, err
		}
		if err := json.Unmarshal([]byte(labels), &t.Labels); err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Serial != out[j].Serial {
			return out[i].Serial < out[j].Serial
		}
		return out[i].Kind < out[j].Kind
	})
	return out, rows.Err()
}
