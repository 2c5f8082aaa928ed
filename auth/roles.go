// Package auth decides who may do what through metalflow's API: bearer
// tokens bound to a user and a role (and optionally to the cloud project
// whose servers they may see), and the order of the roles.
package auth

import (
	"fmt"
	"strings"
)

// Role is what a token's holder may do.
type Role string

// The roles, from least to most trusted. Approver is beside the ladder: it
// may look at everything and decide on public VIPs, nothing else.
const (
	// Viewer reads servers, racks and VIPs.
	Viewer Role = "viewer"
	// Technician also reports what happened at the rack: racked, unracked,
	// and retry after fixing a cable.
	Technician Role = "technician"
	// Operator does everything on servers and VIPs: create, skip, abort,
	// decommission.
	Operator Role = "operator"
	// Approver approves or rejects public VIPs (never their own).
	Approver Role = "approver"
	// Admin manages tokens and profiles and may do what all others may.
	Admin Role = "admin"
)

// Roles lists every role.
func Roles() []Role { return []Role{Viewer, Technician, Operator, Approver, Admin} }

// ParseRole reads a role name.
func ParseRole(s string) (Role, error) {
	for _, r := range Roles() {
		if string(r) == s {
			return r, nil
		}
	}
	names := make([]string, 0, len(Roles()))
	for _, r := range Roles() {
		names = append(names, string(r))
	}
	return "", fmt.Errorf("unknown role %q (one of %s)", s, strings.Join(names, ", "))
}

// rank orders the ladder viewer < technician < operator < admin.
func (r Role) rank() int {
	switch r {
	case Viewer, Approver:
		return 1
	case Technician:
		return 2
	case Operator:
		return 3
	case Admin:
		return 4
	}
	return 0
}

// Allows says whether a holder of r may do what needs `need`.
func (r Role) Allows(need Role) bool {
	if need == Approver {
		return r == Approver || r == Admin
	}
	return r.rank() >= need.rank() && r.rank() > 0
}

// Principal is who a request comes from.
type Principal struct {
	User string `json:"user"`
	Role Role   `json:"role"`
	// Project restricts the principal to the servers of one cloud
	// project (a tenant); empty means the whole fleet.
	Project string `json:"project,omitempty"`
	TokenID string `json:"tokenId,omitempty"`
}

// Tenant says whether the principal sees only one project's servers.
func (p Principal) Tenant() bool { return p.Project != "" }
