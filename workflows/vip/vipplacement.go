package vip

import (
	"fmt"
	"slices"
	"strings"

	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// choosePlacement picks want clusters in pairwise different failure
// domains, least loaded first (VIPs per unit of capacity over the nodes
// that are up), ties broken by name so the choice is reproducible. A
// cluster is eligible when its nodes agree on a failure domain and at least
// one of them is up; only its up nodes get the VIP. notes say what was
// passed over, for the status.
func choosePlacement(clusters []vipapi.LBCluster, want int) (placed []vipapi.VIPPlacement, notes []string, err error) {
	type candidate struct {
		c          vipapi.LBCluster
		vips, cap  int
		up         []string
		downReason []string
	}
	var eligible []candidate
	var skipped []string
	for _, c := range clusters {
		cand := candidate{c: c}
		for _, n := range c.Nodes {
			if n.Up {
				cand.up = append(cand.up, n.Node)
				cand.vips += n.VIPs
				cand.cap += n.Capacity
			} else {
				cand.downReason = append(cand.downReason, n.Node+" ("+n.Why+")")
			}
		}
		switch {
		case c.FailureDomain == "":
			skipped = append(skipped, fmt.Sprintf("%s: %s", c.Name, c.Problem))
		case len(cand.up) == 0:
			skipped = append(skipped, fmt.Sprintf("%s: no node up", c.Name))
		case cand.cap <= 0:
			skipped = append(skipped, fmt.Sprintf("%s: its nodes report no capacity", c.Name))
		default:
			slices.Sort(cand.up)
			eligible = append(eligible, cand)
		}
	}
	// vips/cap compared by cross-multiplication: exact, no floats.
	slices.SortStableFunc(eligible, func(a, b candidate) int {
		l, r := a.vips*b.cap, b.vips*a.cap
		switch {
		case l < r:
			return -1
		case l > r:
			return 1
		}
		return strings.Compare(a.c.Name, b.c.Name)
	})
	used := map[string]bool{}
	for _, cand := range eligible {
		if len(placed) == want {
			break
		}
		if used[cand.c.FailureDomain] {
			continue
		}
		used[cand.c.FailureDomain] = true
		placed = append(placed, vipapi.VIPPlacement{Cluster: cand.c.Name, FailureDomain: cand.c.FailureDomain, Nodes: cand.up})
		if len(cand.downReason) > 0 {
			notes = append(notes, fmt.Sprintf("cluster %s: node(s) down at placement, not programmed: %s",
				cand.c.Name, strings.Join(cand.downReason, ", ")))
		}
	}
	if len(placed) < want {
		domains := make([]string, 0, len(used))
		for _, p := range placed {
			domains = append(domains, p.FailureDomain)
		}
		msg := fmt.Sprintf("placement needs %d clusters in different failure domains; eligible clusters cover %d (%s)",
			want, len(placed), strings.Join(domains, ", "))
		if len(skipped) > 0 {
			msg += "; not eligible: " + strings.Join(skipped, "; ")
		}
		return nil, nil, fmt.Errorf("%s", msg)
	}
	return placed, notes, nil
}

// spreadWarning says when the backends give no protection against losing
// one failure domain: every backend whose domain is known is in one.
func spreadWarning(backends []vipapi.VIPBackend) string {
	domain, known := "", 0
	for _, b := range backends {
		if b.FailureDomain == "" {
			continue
		}
		if known > 0 && b.FailureDomain != domain {
			return ""
		}
		domain = b.FailureDomain
		known++
	}
	if known == 0 {
		return ""
	}
	return fmt.Sprintf("%s (%d) is in failure domain %s: losing it loses the VIP's whole pool", spreadWarningPrefix, known, domain)
}

const spreadWarningPrefix = "every backend with a known location"
