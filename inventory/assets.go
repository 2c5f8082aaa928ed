package inventory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Asset is one server as the CMDB knows it.
type Asset struct {
	Serial     string          `json:"serial"`
	Vendor     string          `json:"vendor,omitempty"`
	Model      string          `json:"model,omitempty"`
	AssetTag   string          `json:"assetTag,omitempty"`
	State      string          `json:"state"`
	Placement  *Placement      `json:"placement,omitempty"`
	BMCAddress string          `json:"bmcAddress,omitempty"`
	MACs       []string        `json:"macs,omitempty"`
	Hardware   json.RawMessage `json:"hardware,omitempty"`
	// Tenant is the cloud project that ordered the server (its Ironic
	// node's owner and lessee); empty while unassigned.
	Tenant    string    `json:"tenant,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	UpdatedAt time.Time `json:"updatedAt"`
}

// Change is one line of an asset's history: who did what, when.
type Change struct {
	ID     int64     `json:"id"`
	Serial string    `json:"serial"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Detail string    `json:"detail,omitempty"`
}

// AssetRecord is what RegisterAsset writes; empty fields keep what is there.
type AssetRecord struct {
	Serial     string
	Vendor     string
	Model      string
	AssetTag   string
	State      string
	BMCAddress string
	MACs       []string
	Hardware   json.RawMessage
	Tenant     string
}

// RegisterAsset creates or updates an asset. Registering the same record
// twice changes nothing and writes no second history line, so an activity
// that runs twice leaves one asset and one "registered" entry.
func (s *Store) RegisterAsset(ctx context.Context, rec AssetRecord, actor string) (changed bool, err error) {
	if rec.Serial == "" {
		return false, fmt.Errorf("%w: serial is required", ErrInvalid)
	}
	err = s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getAsset(ctx, tx, rec.Serial)
		now := s.now()
		if errors.Is(err, ErrNotFound) {
			state := rec.State
			if state == "" {
				state = "registered"
			}
			a := Asset{Serial: rec.Serial, Vendor: rec.Vendor, Model: rec.Model, AssetTag: rec.AssetTag, State: state,
				BMCAddress: rec.BMCAddress, MACs: rec.MACs, Hardware: rec.Hardware, Tenant: rec.Tenant, CreatedAt: now, UpdatedAt: now}
			if err := insertAsset(ctx, tx, a); err != nil {
				return err
			}
			changed = true
			return addChange(ctx, tx, rec.Serial, now, actor, "registered", describe(a))
		}
		if err != nil {
			return err
		}
		next := merge(cur, rec)
		if equalAssets(cur, next) {
			return nil
		}
		next.UpdatedAt = now
		if err := updateAsset(ctx, tx, next); err != nil {
			return err
		}
		changed = true
		return addChange(ctx, tx, rec.Serial, now, actor, "updated", diff(cur, next))
	})
	return changed, err
}

// PlaceAsset puts a server into rack units, creating its asset record if
// this is the first the CMDB hears of it. The same placement again is a
// no-op; another server in any of the units is ErrOccupied.
func (s *Store) PlaceAsset(ctx context.Context, serial string, p Placement, actor string) error {
	if p.HeightU < 1 {
		p.HeightU = 1
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		if err := checkPlacement(ctx, tx, serial, p); err != nil {
			return err
		}
		now := s.now()
		cur, err := getAsset(ctx, tx, serial)
		if errors.Is(err, ErrNotFound) {
			cur = Asset{Serial: serial, State: "racked", CreatedAt: now, UpdatedAt: now}
			if err := insertAsset(ctx, tx, cur); err != nil {
				return err
			}
		} else if err != nil {
			return err
		}
		if cur.Placement != nil && *cur.Placement == p {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM rack_units WHERE serial = $1`, serial); err != nil {
			return err
		}
		for u := p.Unit; u < p.Unit+p.HeightU; u++ {
			if _, err := tx.ExecContext(ctx, `INSERT INTO rack_units (site, rack, unit, serial) VALUES ($1, $2, $3, $4)`,
				p.Site, p.Rack, u, serial); err != nil {
				// The check above saw the units free; a concurrent writer won.
				return fmt.Errorf("%w: unit %d of rack %s/%s was taken concurrently: %v", ErrOccupied, u, p.Site, p.Rack, err)
			}
		}
		prev := cur.Placement
		cur.Placement = &p
		cur.UpdatedAt = now
		if err := updateAsset(ctx, tx, cur); err != nil {
			return err
		}
		detail := fmt.Sprintf("%s/%s U%d %s (%d U)", p.Site, p.Rack, p.Unit, p.Face, p.HeightU)
		if prev != nil {
			detail = fmt.Sprintf("moved from %s/%s U%d to %s", prev.Site, prev.Rack, prev.Unit, detail)
		}
		return addChange(ctx, tx, serial, now, actor, "racked", detail)
	})
}

// ReleaseAsset frees a server's rack units (abort, unracked). Releasing a
// server that holds none is a no-op.
func (s *Store) ReleaseAsset(ctx context.Context, serial, actor, reason string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getAsset(ctx, tx, serial)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if cur.Placement == nil {
			return nil
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM rack_units WHERE serial = $1`, serial); err != nil {
			return err
		}
		p := *cur.Placement
		cur.Placement = nil
		cur.UpdatedAt = s.now()
		if err := updateAsset(ctx, tx, cur); err != nil {
			return err
		}
		return addChange(ctx, tx, serial, cur.UpdatedAt, actor, "unit released",
			fmt.Sprintf("%s/%s U%d freed: %s", p.Site, p.Rack, p.Unit, reason))
	})
}

// SetState moves an asset to a lifecycle state; the same state again is a no-op.
func (s *Store) SetState(ctx context.Context, serial, state, actor, detail string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		cur, err := getAsset(ctx, tx, serial)
		if err != nil {
			return err
		}
		if cur.State == state {
			return nil
		}
		prev := cur.State
		cur.State = state
		cur.UpdatedAt = s.now()
		if err := updateAsset(ctx, tx, cur); err != nil {
			return err
		}
		msg := prev + " → " + state
		if detail != "" {
			msg += ": " + detail
		}
		return addChange(ctx, tx, serial, cur.UpdatedAt, actor, "state", msg)
	})
}

// GetAsset returns one asset.
func (s *Store) GetAsset(ctx context.Context, serial string) (Asset, error) {
	return getAsset(ctx, s.db, serial)
}

// History returns an asset's changes, oldest first.
func (s *Store) History(ctx context.Context, serial string) ([]Change, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT id, serial, at, actor, action, detail FROM asset_history WHERE serial = $1 ORDER BY id`, serial)
	if err != nil {
		return nil, fmt.Errorf("inventory: history of %s: %w", serial, err)
	}
	defer rows.Close()
	var out []Change
	for rows.Next() {
		var c Change
		if err := rows.Scan(&c.ID, &c.Serial, &c.At, &c.Actor, &c.Action, &c.Detail); err != nil {
			return nil, err
		}
		c.At = c.At.UTC()
		out = append(out, c)
	}
	return out, rows.Err()
}

const assetColumns = `serial, vendor, model, asset_tag, state, site, room, rack, unit, face, height_u, bmc_address, macs, hardware, created_at, updated_at, tenant`

func getAsset(ctx context.Context, q querier, serial string) (Asset, error) {
	var (
		a                    Asset
		p                    Placement
		macs, hardware       string
		createdAt, updatedAt time.Time
	)
	err := q.QueryRowContext(ctx, `SELECT `+assetColumns+` FROM assets WHERE serial = $1`, serial).Scan(
		&a.Serial, &a.Vendor, &a.Model, &a.AssetTag, &a.State, &p.Site, &p.Room, &p.Rack, &p.Unit, &p.Face, &p.HeightU,
		&a.BMCAddress, &macs, &hardware, &createdAt, &updatedAt, &a.Tenant)
	if errors.Is(err, sql.ErrNoRows) {
		return Asset{}, fmt.Errorf("%w: asset %s", ErrNotFound, serial)
	}
	if err != nil {
		return Asset{}, fmt.Errorf("inventory: asset %s: %w", serial, err)
	}
	if p.Rack != "" {
		a.Placement = &p
	}
	if err := json.Unmarshal([]byte(macs), &a.MACs); err != nil {
		return Asset{}, fmt.Errorf("inventory: asset %s macs: %w", serial, err)
	}
	if hardware != "{}" && hardware != "" {
		a.Hardware = json.RawMessage(hardware)
	}
	a.CreatedAt, a.UpdatedAt = createdAt.UTC(), updatedAt.UTC()
	return a, nil
}

func assetArgs(a Asset) []any {
	var p Placement
	if a.Placement != nil {
		p = *a.Placement
	} else {
		p.HeightU = 1
	}
	macs, _ := json.Marshal(nonNil(a.MACs))
	hardware := "{}"
	if len(a.Hardware) > 0 {
		hardware = string(a.Hardware)
	}
	return []any{a.Serial, a.Vendor, a.Model, a.AssetTag, a.State, p.Site, p.Room, p.Rack, p.Unit, p.Face, p.HeightU,
		a.BMCAddress, string(macs), hardware, a.CreatedAt, a.UpdatedAt, a.Tenant}
}

func insertAsset(ctx context.Context, tx *sql.Tx, a Asset) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO assets (`+assetColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`, assetArgs(a)...)
	if err != nil {
		return fmt.Errorf("inventory: insert asset %s: %w", a.Serial, err)
	}
	return nil
}

func updateAsset(ctx context.Context, tx *sql.Tx, a Asset) error {
	_, err := tx.ExecContext(ctx, `UPDATE assets SET vendor = $2, model = $3, asset_tag = $4, state = $5, site = $6,
		room = $7, rack = $8, unit = $9, face = $10, height_u = $11, bmc_address = $12, macs = $13, hardware = $14,
		created_at = $15, updated_at = $16, tenant = $17 WHERE serial = $1`, assetArgs(a)...)
	if err != nil {
		return fmt.Errorf("inventory: update asset %s: %w", a.Serial, err)
	}
	return nil
}

func addChange(ctx context.Context, tx *sql.Tx, serial string, at time.Time, actor, action, detail string) error {
	if actor == "" {
		actor = "metalflow"
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO asset_history (serial, at, actor, action, detail) VALUES ($1, $2, $3, $4, $5)`,
		serial, at, actor, action, detail)
	if err != nil {
		return fmt.Errorf("inventory: history of %s: %w", serial, err)
	}
	return nil
}

func merge(cur Asset, rec AssetRecord) Asset {
	next := cur
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&next.Vendor, rec.Vendor)
	set(&next.Model, rec.Model)
	set(&next.AssetTag, rec.AssetTag)
	set(&next.State, rec.State)
	set(&next.BMCAddress, rec.BMCAddress)
	set(&next.Tenant, rec.Tenant)
	if rec.MACs != nil {
		next.MACs = rec.MACs
	}
	if len(rec.Hardware) > 0 {
		next.Hardware = rec.Hardware
	}
	return next
}

func equalAssets(a, b Asset) bool {
	return a.Vendor == b.Vendor && a.Model == b.Model && a.AssetTag == b.AssetTag && a.State == b.State &&
		a.BMCAddress == b.BMCAddress && a.Tenant == b.Tenant && slices.Equal(a.MACs, b.MACs) && jsonEqual(a.Hardware, b.Hardware)
}

func jsonEqual(a, b json.RawMessage) bool {
	if len(a) == 0 || len(b) == 0 {
		return len(a) == len(b)
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return string(a) == string(b)
	}
	ja, _ := json.Marshal(x)
	jb, _ := json.Marshal(y)
	return string(ja) == string(jb)
}

func describe(a Asset) string {
	return fmt.Sprintf("vendor=%q model=%q bmc=%q macs=%v state=%s", a.Vendor, a.Model, a.BMCAddress, a.MACs, a.State)
}

func diff(a, b Asset) string {
	var parts []string
	add := func(name, x, y string) {
		if x != y {
			parts = append(parts, fmt.Sprintf("%s %q → %q", name, x, y))
		}
	}
	add("vendor", a.Vendor, b.Vendor)
	add("model", a.Model, b.Model)
	add("assetTag", a.AssetTag, b.AssetTag)
	add("state", a.State, b.State)
	add("bmc", a.BMCAddress, b.BMCAddress)
	add("tenant", a.Tenant, b.Tenant)
	if !slices.Equal(a.MACs, b.MACs) {
		parts = append(parts, fmt.Sprintf("macs %v → %v", a.MACs, b.MACs))
	}
	if !jsonEqual(a.Hardware, b.Hardware) {
		parts = append(parts, "hardware inventory updated")
	}
	return fmt.Sprint(parts)
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
