package inventory

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Site is a data center.
type Site struct {
	Name        string `json:"name" yaml:"name"`
	Description string `json:"description,omitempty" yaml:"description"`
	// BMCNetworks are the networks the site's BMCs are in; the API refuses
	// a BMC address outside them (AdmitsBMC). None declared: any address.
	// A layout that leaves the key out keeps what the inventory has, so
	// seeding a site by name does not undo an operator's networks;
	// `bmcNetworks: []` clears them.
	BMCNetworks []netip.Prefix `json:"bmcNetworks,omitempty" yaml:"bmcNetworks"`
}

// Rack is a cabinet in a site; units are numbered 1 (bottom) to HeightU.
type Rack struct {
	Site    string `json:"site" yaml:"site"`
	Room    string `json:"room,omitempty" yaml:"room"`
	Name    string `json:"name" yaml:"name"`
	HeightU int    `json:"heightU" yaml:"heightU"`
}

// Placement is where a server sits: its lowest unit and how many it takes.
type Placement struct {
	Site    string `json:"site"`
	Room    string `json:"room,omitempty"`
	Rack    string `json:"rack"`
	Unit    int    `json:"unit"`
	Face    string `json:"face"`
	HeightU int    `json:"heightU"`
}

// UnitOccupant is one occupied unit of a rack.
type UnitOccupant struct {
	Unit   int    `json:"unit"`
	Serial string `json:"serial"`
}

// EnsureSite creates a site if it does not exist, and sets its BMC
// networks when site declares them (nil leaves them as they are).
func (s *Store) EnsureSite(ctx context.Context, site Site) error {
	if strings.TrimSpace(site.Name) == "" {
		return fmt.Errorf("%w: site name is required", ErrInvalid)
	}
	networks, err := encodeBMCNetworks(site)
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx,
			`INSERT INTO sites (name, description, bmc_networks) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING`,
			site.Name, site.Description, networks)
		if err == nil && site.BMCNetworks != nil {
			_, err = tx.ExecContext(ctx, `UPDATE sites SET bmc_networks = $1 WHERE name = $2`, networks, site.Name)
		}
		if err != nil {
			return fmt.Errorf("inventory: ensure site %s: %w", site.Name, err)
		}
		return nil
	})
}

// CreateRack adds a rack to an existing site. An identical rack that exists
// already is fine (seeding runs at every start); a different one is ErrExists.
func (s *Store) CreateRack(ctx context.Context, r Rack) error {
	if r.HeightU < 1 || r.HeightU > 60 {
		return fmt.Errorf("%w: rack height must be 1 to 60 U, got %d", ErrInvalid, r.HeightU)
	}
	if strings.TrimSpace(r.Name) == "" {
		return fmt.Errorf("%w: rack name is required", ErrInvalid)
	}
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM sites WHERE name = $1`, r.Site).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("%w: site %q", ErrNotFound, r.Site)
		}
		existing, err := getRack(ctx, tx, r.Site, r.Name)
		switch {
		case err == nil && existing == r:
			return nil
		case err == nil:
			return fmt.Errorf("%w: rack %s/%s (%d U in room %q)", ErrExists, r.Site, r.Name, existing.HeightU, existing.Room)
		case !errors.Is(err, ErrNotFound):
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO racks (site, name, room, height_u) VALUES ($1, $2, $3, $4)`,
			r.Site, r.Name, r.Room, r.HeightU)
		return err
	})
}

// GetRack returns one rack.
func (s *Store) GetRack(ctx context.Context, site, name string) (Rack, error) {
	return getRack(ctx, s.db, site, name)
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func getRack(ctx context.Context, q querier, site, name string) (Rack, error) {
	r := Rack{Site: site, Name: name}
	err := q.QueryRowContext(ctx, `SELECT room, height_u FROM racks WHERE site = $1 AND name = $2`, site, name).
		Scan(&r.Room, &r.HeightU)
	if errors.Is(err, sql.ErrNoRows) {
		return Rack{}, fmt.Errorf("%w: rack %s/%s", ErrNotFound, site, name)
	}
	if err != nil {
		return Rack{}, fmt.Errorf("inventory: rack %s/%s: %w", site, name, err)
	}
	return r, nil
}

// ListRacks lists the racks of a site ("" for every site).
func (s *Store) ListRacks(ctx context.Context, site string) ([]Rack, error) {
	rows, err := s.db.QueryContext(ctx,
		`SELECT site, name, room, height_u FROM racks WHERE $1 = '' OR site = $1 ORDER BY site, name`, site)
	if err != nil {
		return nil, fmt.Errorf("inventory: list racks: %w", err)
	}
	defer rows.Close()
	var out []Rack
	for rows.Next() {
		var r Rack
		if err := rows.Scan(&r.Site, &r.Name, &r.Room, &r.HeightU); err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// Occupancy lists a rack's occupied units, lowest first.
func (s *Store) Occupancy(ctx context.Context, site, rack string) ([]UnitOccupant, error) {
	if _, err := s.GetRack(ctx, site, rack); err != nil {
		return nil, err
	}
	rows, err := s.db.QueryContext(ctx,
		`SELECT unit, serial FROM rack_units WHERE site = $1 AND rack = $2 ORDER BY unit`, site, rack)
	if err != nil {
		return nil, fmt.Errorf("inventory: occupancy of %s/%s: %w", site, rack, err)
	}
	defer rows.Close()
	var out []UnitOccupant
	for rows.Next() {
		var o UnitOccupant
		if err := rows.Scan(&o.Unit, &o.Serial); err != nil {
			return nil, err
		}
		out = append(out, o)
	}
	return out, rows.Err()
}

// CheckPlacement says whether serial could be placed at p right now, without
// changing anything: the check the racked form and update validator use.
func (s *Store) CheckPlacement(ctx context.Context, serial string, p Placement) error {
	return checkPlacement(ctx, s.db, serial, p)
}

func checkPlacement(ctx context.Context, q querier, serial string, p Placement) error {
	if p.HeightU < 1 {
		p.HeightU = 1
	}
	rack, err := getRack(ctx, q, p.Site, p.Rack)
	if err != nil {
		var n int
		if qerr := q.QueryRowContext(ctx, `SELECT COUNT(*) FROM sites WHERE name = $1`, p.Site).Scan(&n); qerr == nil && n == 0 {
			return fmt.Errorf("%w: unknown site %q", ErrInvalid, p.Site)
		}
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("%w: unknown rack %q in site %s", ErrInvalid, p.Rack, p.Site)
		}
		return err
	}
	if p.Room != "" && rack.Room != "" && p.Room != rack.Room {
		return fmt.Errorf("%w: rack %s/%s is in room %q, not %q", ErrInvalid, p.Site, p.Rack, rack.Room, p.Room)
	}
	if p.Unit < 1 || p.Unit+p.HeightU-1 > rack.HeightU {
		return fmt.Errorf("%w: unit %d (%d U) is outside rack %s/%s, which has units 1-%d",
			ErrInvalid, p.Unit, p.HeightU, p.Site, p.Rack, rack.HeightU)
	}
	rows, err := q.QueryContext(ctx,
		`SELECT unit, serial FROM rack_units WHERE site = $1 AND rack = $2 AND unit >= $3 AND unit <= $4 AND serial <> $5 ORDER BY unit`,
		p.Site, p.Rack, p.Unit, p.Unit+p.HeightU-1, serial)
	if err != nil {
		return err
	}
	defer rows.Close()
	if rows.Next() {
		var o UnitOccupant
		if err := rows.Scan(&o.Unit, &o.Serial); err != nil {
			return err
		}
		return fmt.Errorf("%w: unit %d of rack %s/%s holds server %s", ErrOccupied, o.Unit, p.Site, p.Rack, o.Serial)
	}
	return rows.Err()
}
