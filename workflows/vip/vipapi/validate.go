package vipapi

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// Limits of a VIP request.
const (
	// DefaultVIPClusters: two clusters in two failure domains survive the
	// loss of either.
	DefaultVIPClusters = 2
	maxVIPClusters     = 8
	// DefaultBackendWeight is a backend's weight when the request gives
	// none (as the lbnode configuration does).
	DefaultBackendWeight = 100
	// MaxBackendWeight is the data plane's bound (Maglev's credit
	// arithmetic).
	MaxBackendWeight = 1_000_000
	MaxVIPNameLength = 63
)

// ValidateVIPName accepts a DNS label: it ends up in workflow IDs, task
// queue payloads and host names.
func ValidateVIPName(name string) error {
	if name == "" || len(name) > MaxVIPNameLength {
		return fmt.Errorf("VIP name %q must be 1 to %d characters", name, MaxVIPNameLength)
	}
	for i, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
		case r == '-' && i > 0 && i < len(name)-1:
		default:
			return fmt.Errorf("VIP name %q must be a DNS label: lower-case letters, digits and inner '-'", name)
		}
	}
	return nil
}

// NormalizeVIPInput fills in the defaults a request may leave out, as the
// workflow does: the API validates exactly what the workflow will run.
func NormalizeVIPInput(in VIPRolloutInput) VIPRolloutInput {
	in.Protocol = strings.ToLower(in.Protocol)
	if in.Protocol == "" {
		in.Protocol = "tcp"
	}
	if in.Exposure == "" {
		in.Exposure = lbapi.ExposureInternal
	}
	if in.Clusters == 0 {
		in.Clusters = DefaultVIPClusters
	}
	in.Backends = NormalizeBackends(in.Backends)
	return in
}

func NormalizeBackends(bs []lbapi.Backend) []lbapi.Backend {
	out := make([]lbapi.Backend, 0, len(bs))
	for _, b := range bs {
		if a, err := netip.ParseAddr(b.Address); err == nil {
			b.Address = a.String()
		}
		if b.Weight == 0 {
			b.Weight = DefaultBackendWeight
		}
		if b.State == "" {
			b.State = lbapi.BackendActive
		}
		out = append(out, b)
	}
	return out
}

// ValidateVIPInput says everything wrong with a (normalized) request.
func ValidateVIPInput(in VIPRolloutInput) error {
	var problems []string
	if err := ValidateVIPName(in.Name); err != nil {
		problems = append(problems, err.Error())
	}
	if in.Protocol != "tcp" && in.Protocol != "udp" {
		problems = append(problems, fmt.Sprintf("protocol %q, want tcp or udp", in.Protocol))
	}
	if len(in.Ports) == 0 {
		problems = append(problems, "at least one port is required")
	}
	seenPort := map[uint16]bool{}
	for _, p := range in.Ports {
		if p == 0 {
			problems = append(problems, "ports must be 1-65535, got 0")
		} else if seenPort[p] {
			problems = append(problems, fmt.Sprintf("port %d listed twice", p))
		}
		seenPort[p] = true
	}
	if len(in.Backends) == 0 && len(in.Servers) == 0 {
		problems = append(problems, "at least one backend or server is required")
	}
	problems = append(problems, backendProblems(in.Backends)...)
	problems = append(problems, serverProblems(in.Servers)...)
	switch in.Exposure {
	case lbapi.ExposureInternal:
	case lbapi.ExposurePublic:
		if in.RequestedBy == "" {
			problems = append(problems, "a public VIP needs requestedBy: its approver must be someone else")
		}
	default:
		problems = append(problems, fmt.Sprintf("exposure %q, want %s or %s", in.Exposure, lbapi.ExposureInternal, lbapi.ExposurePublic))
	}
	if in.Clusters < 1 || in.Clusters > maxVIPClusters {
		problems = append(problems, fmt.Sprintf("clusters must be 1 to %d, got %d", maxVIPClusters, in.Clusters))
	}
	if hc := in.HealthCheck; hc != nil {
		switch {
		case hc.Kind != "tcp" && hc.Kind != "http":
			problems = append(problems, fmt.Sprintf("health check kind %q, want tcp or http", hc.Kind))
		case hc.Kind == "tcp" && hc.Path != "":
			problems = append(problems, "a tcp health check has no path")
		}
		if hc.IntervalMS < 0 || hc.TimeoutMS < 0 || hc.Fall < 0 || hc.Rise < 0 {
			problems = append(problems, "health check interval, timeout, fall and rise cannot be negative")
		}
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid VIP request: %s", strings.Join(problems, "; "))
	}
	return nil
}

func backendProblems(bs []lbapi.Backend) []string {
	var problems []string
	seen := map[string]bool{}
	for _, b := range bs {
		a, err := netip.ParseAddr(b.Address)
		if err != nil || a.Zone() != "" || a.IsUnspecified() {
			problems = append(problems, fmt.Sprintf("backend address %q is not a usable IP address", b.Address))
			continue
		}
		if seen[a.String()] {
			problems = append(problems, fmt.Sprintf("backend %s listed twice", a))
		}
		seen[a.String()] = true
		if b.Weight > MaxBackendWeight {
			problems = append(problems, fmt.Sprintf("backend %s: weight %d above %d", a, b.Weight, MaxBackendWeight))
		}
		if b.State != "" && b.State != lbapi.BackendActive && b.State != lbapi.BackendDrain {
			problems = append(problems, fmt.Sprintf("backend %s: state %q, want active or drain", a, b.State))
		}
		if b.Serial != "" {
			if err := stepapi.ValidateSerial(b.Serial); err != nil {
				problems = append(problems, fmt.Sprintf("backend %s: %v", a, err))
			}
		}
	}
	return problems
}

func serverProblems(serials []string) []string {
	var problems []string
	seen := map[string]bool{}
	for _, s := range serials {
		if err := stepapi.ValidateSerial(s); err != nil {
			problems = append(problems, err.Error())
		} else if seen[s] {
			problems = append(problems, fmt.Sprintf("server %s listed twice", s))
		}
		seen[s] = true
	}
	return problems
}

// ValidateBackendsChange checks a change against the backends the VIP has.
func ValidateBackendsChange(in BackendsInput, current []VIPBackend) error {
	if len(in.Add) == 0 && len(in.Remove) == 0 && len(in.Drain) == 0 && len(in.Servers) == 0 {
		return fmt.Errorf("a backends change must add, remove or drain something")
	}
	problems := backendProblems(in.Add)
	problems = append(problems, serverProblems(in.Servers)...)
	have := map[string]bool{}
	for _, b := range current {
		have[b.Address] = true
	}
	adding := map[string]bool{}
	for _, b := range NormalizeBackends(in.Add) {
		adding[b.Address] = true
	}
	removing := map[string]bool{}
	for _, r := range in.Remove {
		a, err := netip.ParseAddr(r)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("remove: %q is not an IP address", r))
		case !have[a.String()]:
			problems = append(problems, fmt.Sprintf("remove: %s is not a backend of this VIP", a))
		case adding[a.String()]:
			problems = append(problems, fmt.Sprintf("%s is both added and removed", a))
		default:
			removing[a.String()] = true
		}
	}
	for _, d := range in.Drain {
		a, err := netip.ParseAddr(d)
		switch {
		case err != nil:
			problems = append(problems, fmt.Sprintf("drain: %q is not an IP address", d))
		case !have[a.String()] && !adding[a.String()]:
			problems = append(problems, fmt.Sprintf("drain: %s is not a backend of this VIP", a))
		case removing[a.String()]:
			problems = append(problems, fmt.Sprintf("%s is both drained and removed", a))
		}
	}
	left := len(in.Servers)
	for _, b := range current {
		if !removing[b.Address] && !adding[b.Address] {
			left++
		}
	}
	left += len(adding)
	if left == 0 {
		problems = append(problems, "the change would leave the VIP without backends: retire it instead")
	}
	if len(problems) > 0 {
		return fmt.Errorf("invalid backends change: %s", strings.Join(problems, "; "))
	}
	return nil
}
