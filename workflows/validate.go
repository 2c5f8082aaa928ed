package workflows

import (
	"fmt"
	"strings"
)

// isName accepts what vendors print on asset labels and what data centers
// call their sites and racks: letters, digits and '.', '_', '-', starting with
// a letter or digit. It also keeps the value safe inside workflow IDs,
// search-attribute queries and URLs.
func isName(s string, maxLen int) bool {
	if s == "" || len(s) > maxLen {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case i > 0 && (r == '.' || r == '_' || r == '-'):
		default:
			return false
		}
	}
	return true
}

// MaxSerialLength bounds serials; the longest real vendor serials are ~30.
const MaxSerialLength = 64

// ValidateSerial says why a serial number cannot be used, or nil.
func ValidateSerial(serial string) error {
	switch {
	case serial == "":
		return fmt.Errorf("serial is required")
	case len(serial) > MaxSerialLength:
		return fmt.Errorf("serial is %d characters long; at most %d are allowed", len(serial), MaxSerialLength)
	case !isName(serial, MaxSerialLength):
		return fmt.Errorf("serial %q may contain only letters, digits, '.', '_' and '-', and must start with a letter or digit", serial)
	}
	return nil
}

// LifecycleWorkflowID is the one workflow ID per server, so a second start
// for the same serial is rejected by Temporal itself.
func LifecycleWorkflowID(serial string) string { return "server/" + serial }

// Rack faces.
const (
	FaceFront = "front"
	FaceRear  = "rear"
)

// maxNameLength bounds site, room and rack names.
const maxNameLength = 32

// ValidateLocation checks a location's shape. Whether the site and rack exist
// and the unit is free is the inventory's business.
func ValidateLocation(l Location) error {
	var problems []string
	if !isName(l.Site, maxNameLength) {
		problems = append(problems, "site is required (letters, digits, '.', '_', '-'; at most 32)")
	}
	if l.Room != "" && !isName(l.Room, maxNameLength) {
		problems = append(problems, "room may contain only letters, digits, '.', '_', '-' (at most 32)")
	}
	if !isName(l.Rack, maxNameLength) {
		problems = append(problems, "rack is required (letters, digits, '.', '_', '-'; at most 32)")
	}
	if l.Unit < 1 {
		problems = append(problems, fmt.Sprintf("unit must be 1 or more, got %d", l.Unit))
	}
	if l.Face != FaceFront && l.Face != FaceRear {
		problems = append(problems, fmt.Sprintf("face must be %q or %q, got %q", FaceFront, FaceRear, l.Face))
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid location: %s", strings.Join(problems, "; "))
	}
	return nil
}

// maxTenantLength bounds tenants: Keystone project IDs are 32 hex digits,
// names at most 64 characters.
const maxTenantLength = 64

// ValidateTenant checks a tenant (cloud project) name or ID; empty means
// none. It becomes the Ironic node's owner, and Ironic matches it against
// the project of a request, so it must be a plain identifier.
func ValidateTenant(tenant string) error {
	if tenant != "" && !isName(tenant, maxTenantLength) {
		return fmt.Errorf("tenant %q must be a project name or ID: letters, digits, '.', '_', '-', at most %d, starting with a letter or digit", tenant, maxTenantLength)
	}
	return nil
}

// ValidatePools checks the VIP names a server is to serve behind.
func ValidatePools(pools []string) error {
	seen := map[string]bool{}
	for _, p := range pools {
		if err := ValidateVIPName(p); err != nil {
			return fmt.Errorf("pools: %w", err)
		}
		if seen[p] {
			return fmt.Errorf("pools: %s listed twice", p)
		}
		seen[p] = true
	}
	return nil
}
