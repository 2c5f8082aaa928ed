package cloud

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"sort"
	"strings"
	"unicode"

	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/nodes"
	"github.com/gophercloud/gophercloud/v2/openstack/baremetal/v1/ports"
)

// HardwareRedfish is the Ironic hardware type for servers managed through
// their BMC's Redfish service: what metalflow enrolls in production.
const HardwareRedfish = "redfish"

// BMC is how Ironic reaches the server's baseboard management controller.
type BMC struct {
	// Address is the Redfish service root URL, e.g. https://10.0.0.5.
	Address string
	// SystemID is the Redfish System resource, e.g. /redfish/v1/Systems/1.
	SystemID string
	Username string
	// Password is resolved by the caller at call time and never logged or
	// returned in errors.
	Password string
	// InsecureSkipVerify makes Ironic accept any TLS certificate from the
	// BMC (redfish_verify_ca=false): BMCs ship self-signed certificates.
	InsecureSkipVerify bool
}

// FailureDomain is where the server stands; a rack shares power and a
// top-of-rack switch, a site an availability zone.
type FailureDomain struct {
	Site, Room, Rack string
}

// Aggregate is the Nova host aggregate of the domain's rack, in the site's
// availability zone, e.g. {dc1-A-R01, dc1}: hypervisors of one rack share
// an aggregate so the scheduler can spread instances across racks.
func (f FailureDomain) Aggregate() Aggregate {
	parts := slices.DeleteFunc([]string{f.Site, f.Room, f.Rack}, func(s string) bool { return s == "" })
	return Aggregate{Name: strings.Join(parts, "-"), AvailabilityZone: f.Site}
}

// ConductorGroup is the Ironic conductor group for the domain: one per
// site, since a site's conductors sit on its BMC network. Characters Ironic
// does not allow become '-'.
func (f FailureDomain) ConductorGroup() string {
	return strings.Map(func(r rune) rune {
		if isAlnum(r) || r == '_' || r == '.' || r == '-' {
			return unicode.ToLower(r)
		}
		return '-'
	}, f.Site)
}

// String is the domain as one path, e.g. "dc1/A/R01".
func (f FailureDomain) String() string {
	parts := []string{f.Site, f.Room, f.Rack}
	return strings.Join(slices.DeleteFunc(parts, func(s string) bool { return s == "" }), "/")
}

// NodeSpec is everything metalflow knows about a server that Ironic needs.
type NodeSpec struct {
	// Serial names the node in Ironic: one node per serial.
	Serial string
	// HardwareType is Ironic's driver; empty means redfish. Tests use
	// fake-hardware, which needs no BMC.
	HardwareType string
	BMC          BMC
	// From inspection.
	CPUs      int
	MemoryMiB int
	LocalGB   int
	CPUArch   string
	// ResourceClass comes from the hardware profile; Nova flavors match it.
	ResourceClass string
	// ConductorGroup pins the node to the conductors of its failure domain;
	// empty means the default group.
	ConductorGroup string
	FailureDomain  FailureDomain
	// MACs of the server's NICs: one Ironic port each.
	MACs []string
	// IronicCleaning lets Ironic's automated cleaning run on provide, which
	// needs its agent ramdisk booted on the server. Off by default: the
	// lifecycle wipes drives itself (Decommission's Redfish SecureErase), so
	// the node is enrolled with automated_clean=false.
	IronicCleaning bool
}

// Node is what Ironic reports about a server's node.
type Node struct {
	UUID                 string
	Serial               string
	HardwareType         string
	ProvisionState       string
	TargetProvisionState string
	PowerState           string
	// LastError is Ironic's reason for the last failed transition.
	LastError      string
	Maintenance    bool
	Owner          string
	Lessee         string
	ResourceClass  string
	ConductorGroup string
	// AutomatedClean is the node's automated_clean; nil means Ironic's
	// configured default.
	AutomatedClean *bool
	// DriverInfo as Ironic stores it, without the password.
	DriverInfo map[string]any
	Properties map[string]any
	Extra      map[string]any
	// MACs of the node's ports, lower case, sorted; filled by EnrollNode,
	// Register and GetNode (the others do not list ports).
	MACs []string
}

// Keys metalflow owns in a node's extra; reconciling leaves others alone.
const (
	extraManagedBy     = "managed_by"
	extraFailureDomain = "failure_domain"
	extraSite          = "site"
	extraRoom          = "room"
	extraRack          = "rack"
	managedByMetalflow = "metalflow"
)

// validSerial follows Ironic's rule for node names (RFC 3986 unreserved
// characters), which also lets the serial go unescaped into URL paths.
func validSerial(s string) bool {
	return len(s) >= 1 && len(s) <= 255 && strings.IndexFunc(s, func(r rune) bool {
		return !isAlnum(r) && !strings.ContainsRune("._~-", r)
	}) < 0
}

// validConductorGroup follows Ironic's rule: a-z, 0-9, _, -, . up to 255.
func validConductorGroup(s string) bool {
	return len(s) <= 255 && strings.IndexFunc(s, func(r rune) bool {
		return !isAlnum(r) && !strings.ContainsRune("._-", r)
	}) < 0
}

func isAlnum(r rune) bool {
	return (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z') || (r >= '0' && r <= '9')
}

// validate checks the spec and returns it normalised (lower-case sorted
// MACs, default hardware type).
func (s NodeSpec) validate() (NodeSpec, error) {
	var problems []string
	if !validSerial(s.Serial) {
		problems = append(problems, fmt.Sprintf("serial %q must be 1-255 of A-Z a-z 0-9 . _ ~ -", s.Serial))
	}
	if s.HardwareType == "" {
		s.HardwareType = HardwareRedfish
	}
	if s.HardwareType == HardwareRedfish {
		u, err := url.Parse(s.BMC.Address)
		if s.BMC.Address == "" || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			problems = append(problems, fmt.Sprintf("BMC address %q must be an http(s) URL", s.BMC.Address))
		}
		if s.BMC.SystemID != "" && !strings.HasPrefix(s.BMC.SystemID, "/redfish/v1/Systems/") {
			problems = append(problems, fmt.Sprintf("BMC system ID %q must be a /redfish/v1/Systems/ path", s.BMC.SystemID))
		}
		if s.BMC.Username == "" || s.BMC.Password == "" {
			problems = append(problems, "BMC username and password are required for redfish")
		}
	}
	if s.CPUs < 0 || s.MemoryMiB < 0 || s.LocalGB < 0 {
		problems = append(problems, "cpus, memory_mb and local_gb must not be negative")
	}
	if !validConductorGroup(s.ConductorGroup) {
		problems = append(problems, fmt.Sprintf("conductor group %q must be up to 255 of a-z 0-9 _ - .", s.ConductorGroup))
	}
	macs := make([]string, 0, len(s.MACs))
	for _, m := range s.MACs {
		hw, err := net.ParseMAC(m)
		if err != nil || len(hw) != 6 {
			problems = append(problems, fmt.Sprintf("MAC %q is not a 6-byte MAC address", m))
			continue
		}
		if slices.Contains(macs, hw.String()) {
			problems = append(problems, fmt.Sprintf("MAC %s is listed twice", hw))
			continue
		}
		macs = append(macs, hw.String())
	}
	sort.Strings(macs)
	s.MACs = macs
	s.ConductorGroup = strings.ToLower(s.ConductorGroup)
	if len(problems) > 0 {
		return s, newError(Invalid, "enroll", s.Serial, strings.Join(problems, "; "), []string{s.BMC.Password})
	}
	return s, nil
}

func (s NodeSpec) driverInfo() map[string]any {
	if s.BMC == (BMC{}) {
		return map[string]any{}
	}
	info := map[string]any{
		"redfish_address":   s.BMC.Address,
		"redfish_username":  s.BMC.Username,
		"redfish_password":  s.BMC.Password,
		"redfish_verify_ca": !s.BMC.InsecureSkipVerify,
	}
	if s.BMC.SystemID != "" {
		info["redfish_system_id"] = s.BMC.SystemID
	}
	return info
}

func (s NodeSpec) properties() map[string]any {
	p := map[string]any{}
	if s.CPUs > 0 {
		p["cpus"] = s.CPUs
	}
	if s.MemoryMiB > 0 {
		p["memory_mb"] = s.MemoryMiB
	}
	if s.LocalGB > 0 {
		p["local_gb"] = s.LocalGB
	}
	if s.CPUArch != "" {
		p["cpu_arch"] = s.CPUArch
	}
	return p
}

// extra carries the failure domain where schedulers and operators see it.
func (s NodeSpec) extra() map[string]any {
	return map[string]any{
		extraManagedBy:     managedByMetalflow,
		extraFailureDomain: s.FailureDomain.String(),
		extraSite:          s.FailureDomain.Site,
		extraRoom:          s.FailureDomain.Room,
		extraRack:          s.FailureDomain.Rack,
	}
}

// EnrollNode makes Ironic hold exactly one node for the server, named by
// its serial, with the spec's driver_info, properties, resource class,
// conductor group, failure domain and one port per MAC. A node that already
// exists is reconciled: differing fields patched, missing ports added, ports
// of MACs no longer listed removed. A new node is left in `enroll`.
func (c *Ironic) EnrollNode(ctx context.Context, spec NodeSpec) (Node, error) {
	spec, err := spec.validate()
	if err != nil {
		return Node{}, err
	}
	secrets := []string{spec.BMC.Password}
	existing, err := nodes.Get(ctx, c.client, spec.Serial).Extract()
	created := false
	switch {
	case err == nil:
	case KindOf(classify("enroll", spec.Serial, err)) == NotFound:
		existing, err = nodes.Create(ctx, c.client, nodes.CreateOpts{
			Name:           spec.Serial,
			Driver:         spec.HardwareType,
			DriverInfo:     spec.driverInfo(),
			Properties:     spec.properties(),
			ResourceClass:  spec.ResourceClass,
			ConductorGroup: spec.ConductorGroup,
			Extra:          spec.extra(),
			AutomatedClean: &spec.IronicCleaning,
		}).Extract()
		created = err == nil
		if KindOf(classify("enroll", spec.Serial, err)) == Conflict {
			// Another attempt created it between our lookup and create.
			existing, err = nodes.Get(ctx, c.client, spec.Serial).Extract()
		}
		if err != nil {
			return Node{}, classify("enroll", spec.Serial, err, secrets...)
		}
	default:
		return Node{}, classify("enroll", spec.Serial, err, secrets...)
	}

	if patch := nodePatch(existing, spec); len(patch) > 0 && !created {
		if existing, err = nodes.Update(ctx, c.client, existing.UUID, patch).Extract(); err != nil {
			return Node{}, classify("enroll", spec.Serial, err, secrets...)
		}
	}
	macs, err := c.reconcilePorts(ctx, existing.UUID, spec)
	if err != nil {
		return Node{}, err
	}
	return nodeOf(existing, macs), nil
}

// nodePatch lists the JSON-patch operations that make node match spec.
// Only keys metalflow sets are compared; others in driver_info, properties
// and extra belong to someone else and stay.
func nodePatch(node *nodes.Node, spec NodeSpec) nodes.UpdateOpts {
	var patch nodes.UpdateOpts
	replace := func(path string, value any) {
		patch = append(patch, nodes.UpdateOperation{Op: nodes.ReplaceOp, Path: path, Value: value})
	}
	// "add" on an existing member replaces it, so it serves both cases.
	set := func(path string, value any) {
		patch = append(patch, nodes.UpdateOperation{Op: nodes.AddOp, Path: path, Value: value})
	}
	if node.Driver != spec.HardwareType {
		replace("/driver", spec.HardwareType)
	}
	if node.ResourceClass != spec.ResourceClass {
		if spec.ResourceClass == "" {
			patch = append(patch, nodes.UpdateOperation{Op: nodes.RemoveOp, Path: "/resource_class"})
		} else {
			replace("/resource_class", spec.ResourceClass)
		}
	}
	if node.AutomatedClean == nil || *node.AutomatedClean != spec.IronicCleaning {
		replace("/automated_clean", spec.IronicCleaning)
	}
	if !strings.EqualFold(node.ConductorGroup, spec.ConductorGroup) {
		replace("/conductor_group", spec.ConductorGroup)
	}
	for _, field := range []struct {
		path string
		have map[string]any
		want map[string]any
	}{
		{"/driver_info", node.DriverInfo, spec.driverInfo()},
		{"/properties", node.Properties, spec.properties()},
		{"/extra", node.Extra, spec.extra()},
	} {
		keys := make([]string, 0, len(field.want))
		for k := range field.want {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			// Ironic masks the stored password, so it cannot be compared;
			// it is always sent, which also makes a corrected credential
			// (the staff's answer to a failed manage) take effect.
			if k == "redfish_password" || !sameJSON(field.have[k], field.want[k]) {
				set(field.path+"/"+k, field.want[k])
			}
		}
	}
	return patch
}

// sameJSON compares values the way Ironic stores them (numbers come back
// as float64, booleans may come back as strings).
func sameJSON(a, b any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	if string(ja) == string(jb) {
		return true
	}
	return strings.Trim(string(ja), `"`) == strings.Trim(string(jb), `"`)
}

// reconcilePorts makes the node's ports exactly the spec's MACs and returns
// them. A MAC enrolled on another node is a Conflict for a human: two
// nodes claiming one NIC means an inventory error somewhere.
func (c *Ironic) reconcilePorts(ctx context.Context, nodeUUID string, spec NodeSpec) ([]string, error) {
	have, err := c.listPorts(ctx, nodeUUID)
	if err != nil {
		return nil, classify("enroll", spec.Serial, err)
	}
	var macs []string
	for mac, id := range have {
		if slices.Contains(spec.MACs, mac) {
			macs = append(macs, mac)
			continue
		}
		if err := ports.Delete(ctx, c.client, id).ExtractErr(); err != nil && !IsNotFound(classify("", "", err)) {
			return nil, classify("enroll", spec.Serial, fmt.Errorf("remove port %s: %w", mac, err))
		}
	}
	for _, mac := range spec.MACs {
		if _, ok := have[mac]; ok {
			continue
		}
		_, err := ports.Create(ctx, c.client, ports.CreateOpts{NodeUUID: nodeUUID, Address: mac}).Extract()
		if err != nil && KindOf(classify("", "", err)) == Conflict {
			// A concurrent attempt may have added it to this very node.
			if now, lerr := c.listPorts(ctx, nodeUUID); lerr == nil {
				if _, ok := now[mac]; ok {
					err = nil
				}
			}
		}
		if err != nil {
			e := classify("enroll", spec.Serial, err).(*Error)
			e.msg = "add port " + mac + ": " + e.msg
			return nil, e
		}
		macs = append(macs, mac)
	}
	sort.Strings(macs)
	return macs, nil
}

// listPorts maps MAC (lower case) to port UUID.
func (c *Ironic) listPorts(ctx context.Context, nodeUUID string) (map[string]string, error) {
	page, err := ports.ListDetail(c.client, ports.ListOpts{Node: nodeUUID}).AllPages(ctx)
	if err != nil {
		return nil, err
	}
	list, err := ports.ExtractPorts(page)
	if err != nil {
		return nil, err
	}
	out := make(map[string]string, len(list))
	for _, p := range list {
		out[strings.ToLower(p.Address)] = p.UUID
	}
	return out, nil
}

func nodeOf(n *nodes.Node, macs []string) Node {
	info := make(map[string]any, len(n.DriverInfo))
	for k, v := range n.DriverInfo {
		if !strings.Contains(k, "password") {
			info[k] = v
		}
	}
	return Node{
		UUID:                 n.UUID,
		Serial:               n.Name,
		HardwareType:         n.Driver,
		ProvisionState:       n.ProvisionState,
		TargetProvisionState: n.TargetProvisionState,
		PowerState:           n.PowerState,
		LastError:            n.LastError,
		Maintenance:          n.Maintenance,
		Owner:                n.Owner,
		Lessee:               n.Lessee,
		ResourceClass:        n.ResourceClass,
		ConductorGroup:       n.ConductorGroup,
		AutomatedClean:       n.AutomatedClean,
		DriverInfo:           info,
		Properties:           n.Properties,
		Extra:                n.Extra,
		MACs:                 macs,
	}
}
