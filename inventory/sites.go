package inventory

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// AdmitsBMC says whether a BMC at addr may belong to the site: it is in one
// of the site's BMC networks, or the site declares none.
func (s Site) AdmitsBMC(addr netip.Addr) bool {
	if len(s.BMCNetworks) == 0 {
		return true
	}
	// ::ffff:10.1.2.3 is 10.1.2.3 to the worker's dialer.
	addr = addr.Unmap()
	for _, p := range s.BMCNetworks {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// BMCNetworkList is the site's BMC networks as the API names them in a
// refusal: "10.1.0.0/16, 10.2.0.0/16".
func (s Site) BMCNetworkList() string {
	names := make([]string, len(s.BMCNetworks))
	for i, p := range s.BMCNetworks {
		names[i] = p.String()
	}
	return strings.Join(names, ", ")
}

// encodeBMCNetworks checks a site's BMC networks and encodes them for its
// row. A network with host bits set is a typo for another network, and a
// check against it would admit what the operator did not mean.
func encodeBMCNetworks(site Site) (string, error) {
	for _, p := range site.BMCNetworks {
		if !p.IsValid() {
			return "", fmt.Errorf("%w: site %s: a BMC network is not a CIDR", ErrInvalid, site.Name)
		}
		if p != p.Masked() {
			return "", fmt.Errorf("%w: site %s: BMC network %s has host bits set (did you mean %s?)", ErrInvalid, site.Name, p, p.Masked())
		}
	}
	networks := site.BMCNetworks
	if networks == nil {
		networks = []netip.Prefix{}
	}
	b, err := json.Marshal(networks)
	return string(b), err
}

// GetSite returns one site.
func (s *Store) GetSite(ctx context.Context, name string) (Site, error) {
	site := Site{Name: name}
	var networks string
	err := s.db.QueryRowContext(ctx, `SELECT description, bmc_networks FROM sites WHERE name = $1`, name).Scan(&site.Description, &networks)
	if errors.Is(err, sql.ErrNoRows) {
		return Site{}, fmt.Errorf("%w: site %q", ErrNotFound, name)
	}
	if err != nil {
		return Site{}, fmt.Errorf("inventory: site %s: %w", name, err)
	}
	return site, decodeBMCNetworks(&site, networks)
}

// ListSites lists every site by name.
func (s *Store) ListSites(ctx context.Context) ([]Site, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT name, description, bmc_networks FROM sites ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("inventory: list sites: %w", err)
	}
	defer rows.Close()
	var out []Site
	for rows.Next() {
		var site Site
		var networks string
		if err := rows.Scan(&site.Name, &site.Description, &networks); err != nil {
			return nil, err
		}
		if err := decodeBMCNetworks(&site, networks); err != nil {
			return nil, err
		}
		out = append(out, site)
	}
	return out, rows.Err()
}

func decodeBMCNetworks(site *Site, networks string) error {
	if err := json.Unmarshal([]byte(networks), &site.BMCNetworks); err != nil {
		return fmt.Errorf("inventory: BMC networks of site %s: %w", site.Name, err)
	}
	if len(site.BMCNetworks) == 0 {
		site.BMCNetworks = nil
	}
	return nil
}
