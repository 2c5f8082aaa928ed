package serverapi

import (
	"fmt"
	"strings"

	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// LifecycleWorkflowID is the one workflow ID per server, so a second start
// for the same serial is rejected by Temporal itself.
func LifecycleWorkflowID(serial string) string { return "server/" + serial }

// Rack faces.
const (
	FaceFront = "front"
	FaceRear  = "rear"
)

// ValidateLocation checks a location's shape. Whether the site and rack exist
// and the unit is free is the inventory's business.
func ValidateLocation(l Location) error {
	var problems []string
	if !stepapi.IsName(l.Site, stepapi.MaxNameLength) {
		problems = append(problems, "site is required (letters, digits, '.', '_', '-'; at most 32)")
	}
	if l.Room != "" && !stepapi.IsName(l.Room, stepapi.MaxNameLength) {
		problems = append(problems, "room may contain only letters, digits, '.', '_', '-' (at most 32)")
	}
	if !stepapi.IsName(l.Rack, stepapi.MaxNameLength) {
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

// MaxTenantLength bounds tenants: Keystone project IDs are 32 hex digits,
// names at most 64 characters.
const MaxTenantLength = 64

// ValidateTenant checks a tenant (cloud project) name or ID; empty means
// none. It becomes the Ironic node's owner, and Ironic matches it against
// the project of a request, so it must be a plain identifier.
func ValidateTenant(tenant string) error {
	if tenant != "" && !stepapi.IsName(tenant, MaxTenantLength) {
		return fmt.Errorf("tenant %q must be a project name or ID: letters, digits, '.', '_', '-', at most %d, starting with a letter or digit", tenant, MaxTenantLength)
	}
	return nil
}

// ValidatePools checks the VIP names a server is to serve behind.
func ValidatePools(pools []string) error {
	seen := map[string]bool{}
	for _, p := range pools {
		if err := vipapi.ValidateVIPName(p); err != nil {
			return fmt.Errorf("pools: %w", err)
		}
		if seen[p] {
			return fmt.Errorf("pools: %s listed twice", p)
		}
		seen[p] = true
	}
	return nil
}
