package inventory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// LBNode is one load-balancer node as its registry workflow last recorded it.
type LBNode struct {
	Cluster       string    `json:"cluster"`
	Node          string    `json:"node"`
	FailureDomain string    `json:"failureDomain"`
	Capacity      int       `json:"capacity"`
	VIPs          int       `json:"vips"`
	Healthy       bool      `json:"healthy"`
	Stopping      bool      `json:"stopping"`
	LastSeen      time.Time `json:"lastSeen"`
}

// RecordLBNode creates or replaces a node's row; recording the same
// heartbeat twice is harmless.
func (s *Store) RecordLBNode(ctx context.Context, n LBNode) error {
	if n.Cluster == "" || n.Node == "" {
		return fmt.Errorf("%w: an LB node needs a cluster and a name", ErrInvalid)
	}
	if n.LastSeen.IsZero() {
		n.LastSeen = s.now()
	}
	_, err := s.db.ExecContext(ctx, `INSERT INTO lb_nodes (cluster, node, failure_domain, capacity, vips, healthy, stopping, last_seen)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (cluster, node) DO UPDATE SET failure_domain = excluded.failure_domain, capacity = excluded.capacity,
			vips = excluded.vips, healthy = excluded.healthy, stopping = excluded.stopping, last_seen = excluded.last_seen`,
		n.Cluster, n.Node, n.FailureDomain, n.Capacity, n.VIPs, n.Healthy, n.Stopping, n.LastSeen.UTC())
	if err != nil {
		return fmt.Errorf("inventory: record LB node %s/%s: %w", n.Cluster, n.Node, err)
	}
	return nil
}

// ListLBNodes returns every known LB node, by cluster and name.
func (s *Store) ListLBNodes(ctx context.Context) ([]LBNode, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT cluster, node, failure_domain, capacity, vips, healthy, stopping, last_seen
		FROM lb_nodes ORDER BY cluster, node`)
	if err != nil {
		return nil, fmt.Errorf("inventory: list LB nodes: %w", err)
	}
	defer rows.Close()
	var out []LBNode
	for rows.Next() {
		var n LBNode
		if err := rows.Scan(&n.Cluster, &n.Node, &n.FailureDomain, &n.Capacity, &n.VIPs, &n.Healthy, &n.Stopping, &n.LastSeen); err != nil {
			return nil, fmt.Errorf("inventory: list LB nodes: %w", err)
		}
		n.LastSeen = n.LastSeen.UTC()
		out = append(out, n)
	}
	return out, rows.Err()
}

// VIPRecord is a VIP's row: its address and, as JSON, what its workflow
// last rolled out and where.
type VIPRecord struct {
	Name        string          `json:"name"`
	Address     string          `json:"address"`
	Exposure    string          `json:"exposure"`
	State       string          `json:"state"`
	RequestedBy string          `json:"requestedBy,omitempty"`
	ApprovedBy  string          `json:"approvedBy,omitempty"`
	Spec        json.RawMessage `json:"spec,omitempty"`
	Placement   json.RawMessage `json:"placement,omitempty"`
	UpdatedAt   time.Time       `json:"updatedAt"`
}

// vipStateAllocated is the state of a VIP whose address is held but whose
// workflow has not recorded anything else yet.
const vipStateAllocated = "allocated"

// allocationAttempts bounds how often an allocation starts over after
// losing a race for an address: each loss means another VIP got one, so a
// few dozen concurrent allocations all finish well within it.
const allocationAttempts = 64

// AllocateVIPAddress gives the VIP named name the lowest free address of
// pool and records it. Allocating again for the same name returns the same
// address, so a retried activity holds one address, not two. Two
// concurrent allocations never share an address: the UNIQUE constraint
// fails the loser's transaction and it starts over.
func (s *Store) AllocateVIPAddress(ctx context.Context, name, exposure string, pool netip.Prefix) (netip.Addr, error) {
	if name == "" {
		return netip.Addr{}, fmt.Errorf("%w: a VIP needs a name", ErrInvalid)
	}
	if !pool.IsValid() {
		return netip.Addr{}, fmt.Errorf("%w: no %s address pool is configured", ErrInvalid, exposure)
	}
	pool = pool.Masked()
	for attempt := 0; attempt < allocationAttempts; attempt++ {
		var got netip.Addr
		err := s.inTx(ctx, func(tx *sql.Tx) error {
			cur, err := getVIP(ctx, tx, name)
			if err == nil {
				if cur.Exposure != exposure {
					return fmt.Errorf("%w: VIP %s already holds %s from the %s pool", ErrInvalid, name, cur.Address, cur.Exposure)
				}
				got, err = netip.ParseAddr(cur.Address)
				return err
			}
			if !errors.Is(err, ErrNotFound) {
				return err
			}
			addr, err := lowestFree(ctx, tx, pool)
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `INSERT INTO vips (name, address, exposure, state, updated_at) VALUES ($1, $2, $3, $4, $5)`,
				name, addr.String(), exposure, vipStateAllocated, s.now()); err != nil {
				return err
			}
			got = addr
			return nil
		})
		if err == nil {
			return got, nil
		}
		if !isUniqueViolation(err) {
			return netip.Addr{}, err
		}
		// Another allocation took the address (or the name) first; the
		// next attempt sees it.
	}
	return netip.Addr{}, fmt.Errorf("inventory: VIP %s: no address after %d attempts: allocations keep racing", name, allocationAttempts)
}

// lowestFree is the pool's lowest address no VIP holds. The pool's first
// address (an IPv4 network address, an IPv6 subnet-router anycast) and an
// IPv4 pool's broadcast address are never handed out: some clients and
// routers treat them specially.
func lowestFree(ctx context.Context, tx *sql.Tx, pool netip.Prefix) (netip.Addr, error) {
	rows, err := tx.QueryContext(ctx, `SELECT address FROM vips`)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("inventory: read VIP addresses: %w", err)
	}
	var used []netip.Addr
	for rows.Next() {
		var a string
		if err := rows.Scan(&a); err != nil {
			rows.Close()
			return netip.Addr{}, err
		}
		if addr, err := netip.ParseAddr(a); err == nil && pool.Contains(addr) {
			used = append(used, addr)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return netip.Addr{}, err
	}
	slices.SortFunc(used, func(a, b netip.Addr) int { return a.Compare(b) })
	first, last := pool.Addr(), lastAddr(pool)
	if pool.Bits() < pool.Addr().BitLen()-1 {
		first = first.Next()
		if pool.Addr().Is4() {
			last = last.Prev()
		}
	}
	candidate := first
	for _, u := range used {
		if u.Less(candidate) {
			continue
		}
		if u != candidate {
			break
		}
		candidate = candidate.Next()
	}
	if !candidate.IsValid() || last.Less(candidate) {
		return netip.Addr{}, fmt.Errorf("%w: address pool %s is exhausted (%d VIPs hold its addresses)", ErrExhausted, pool, len(used))
	}
	return candidate, nil
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// isUniqueViolation recognises a UNIQUE or PRIMARY KEY conflict on either
// database: SQLSTATE 23505 from PostgreSQL, extended codes 2067 and 1555
// from SQLite.
func isUniqueViolation(err error) bool {
	var pg interface{ SQLState() string }
	if errors.As(err, &pg) {
		return pg.SQLState() == "23505"
	}
	var lite interface{ Code() int }
	if errors.As(err, &lite) {
		return lite.Code() == 2067 || lite.Code() == 1555
	}
	return strings.Contains(err.Error(), "UNIQUE constraint failed")
}

// RecordVIP stores what a VIP's workflow last did; the address stays what
// the allocation gave.
func (s *Store) RecordVIP(ctx context.Context, v VIPRecord) error {
	spec, placement := string(v.Spec), string(v.Placement)
	if spec == "" {
		spec = "{}"
	}
	if placement == "" || placement == "null" {
		placement = "[]"
	}
	res, err := s.db.ExecContext(ctx, `UPDATE vips SET state = $2, requested_by = $3, approved_by = $4, spec = $5, placement = $6,
		updated_at = $7 WHERE name = $1`, v.Name, v.State, v.RequestedBy, v.ApprovedBy, spec, placement, s.now())
	if err != nil {
		return fmt.Errorf("inventory: record VIP %s: %w", v.Name, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("%w: VIP %s holds no address", ErrNotFound, v.Name)
	}
	return nil
}

// GetVIP returns one VIP.
func (s *Store) GetVIP(ctx context.Context, name string) (VIPRecord, error) {
	return getVIP(ctx, s.db, name)
}

// ListVIPs returns every VIP that holds an address, by name.
func (s *Store) ListVIPs(ctx context.Context) ([]VIPRecord, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT `+vipColumns+` FROM vips ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("inventory: list VIPs: %w", err)
	}
	defer rows.Close()
	var out []VIPRecord
	for rows.Next() {
		v, err := scanVIP(rows)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ReleaseVIP frees a retired VIP's address; releasing an unknown VIP is a
// no-op, so a retried activity is harmless.
func (s *Store) ReleaseVIP(ctx context.Context, name string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM vips WHERE name = $1`, name); err != nil {
		return fmt.Errorf("inventory: release VIP %s: %w", name, err)
	}
	return nil
}

const vipColumns = `name, address, exposure, state, requested_by, approved_by, spec, placement, updated_at`

type rowScanner interface{ Scan(dest ...any) error }

func scanVIP(r rowScanner) (VIPRecord, error) {
	var v VIPRecord
	var spec, placement string
	if err := r.Scan(&v.Name, &v.Address, &v.Exposure, &v.State, &v.RequestedBy, &v.ApprovedBy, &spec, &placement, &v.UpdatedAt); err != nil {
		return VIPRecord{}, err
	}
	v.Spec, v.Placement, v.UpdatedAt = json.RawMessage(spec), json.RawMessage(placement), v.UpdatedAt.UTC()
	return v, nil
}

func getVIP(ctx context.Context, q querier, name string) (VIPRecord, error) {
	v, err := scanVIP(q.QueryRowContext(ctx, `SELECT `+vipColumns+` FROM vips WHERE name = $1`, name))
	if errors.Is(err, sql.ErrNoRows) {
		return VIPRecord{}, fmt.Errorf("%w: VIP %s", ErrNotFound, name)
	}
	if err != nil {
		return VIPRecord{}, fmt.Errorf("inventory: VIP %s: %w", name, err)
	}
	return v, nil
}

// SetHostAddress records the address a server's installed host answers on.
func (s *Store) SetHostAddress(ctx context.Context, serial string, addr netip.Addr) error {
	if !addr.IsValid() || addr.IsUnspecified() || addr.Zone() != "" {
		return fmt.Errorf("%w: %q is not a usable host address", ErrInvalid, addr)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE assets SET host_address = $2 WHERE serial = $1`, serial, addr.String())
	if err != nil {
		return fmt.Errorf("inventory: host address of %s: %w", serial, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return err
	} else if n == 0 {
		return fmt.Errorf("%w: asset %s", ErrNotFound, serial)
	}
	return nil
}

// GetHostAddress returns a server's host address; the zero Addr means the
// server has none yet.
func (s *Store) GetHostAddress(ctx context.Context, serial string) (netip.Addr, error) {
	var a string
	err := s.db.QueryRowContext(ctx, `SELECT host_address FROM assets WHERE serial = $1`, serial).Scan(&a)
	if errors.Is(err, sql.ErrNoRows) {
		return netip.Addr{}, fmt.Errorf("%w: asset %s", ErrNotFound, serial)
	}
	if err != nil {
		return netip.Addr{}, fmt.Errorf("inventory: host address of %s: %w", serial, err)
	}
	if a == "" {
		return netip.Addr{}, nil
	}
	addr, err := netip.ParseAddr(a)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("inventory: host address of %s: %w", serial, err)
	}
	return addr, nil
}

// ErrExhausted means an address pool has no free address left.
const ErrExhausted = exhaustedError("address pool exhausted")

type exhaustedError string

func (e exhaustedError) Error() string { return string(e) }
