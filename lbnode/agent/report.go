package agent

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/metalflow/metalflow/lbnode"
	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// NodeReport returns what the node runs and how it is doing. A VIP's digest
// is checked against the data plane, not just remembered: a VIP whose maps
// no longer match its spec reports an empty digest, and the workflow
// applies it again.
func (a *Agent) NodeReport(ctx context.Context, in lbapi.NodeReportInput) (lbapi.NodeReport, error) {
	rep := lbapi.NodeReport{
		Cluster: a.cfg.Cluster, Node: a.cfg.NodeName, FailureDomain: a.cfg.FailureDomain,
		VIPs: []lbapi.VIPReport{},
	}
	dpErr := a.checkDataPlane()
	stats, statsErr := a.node.Stats()

	a.mu.Lock()
	rep.Healthy = dpErr == nil && statsErr == nil
	names := make([]string, 0, len(a.vips))
	for name := range a.vips {
		if in.VIP == "" || in.VIP == name {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		rec := a.vips[name]
		vr := lbapi.VIPReport{Name: name, Address: rec.Spec.Address}
		if a.programmed(rec) {
			vr.Digest = lbapi.Digest(rec.Spec)
		}
		if p, err := planOf(rec.Spec); err == nil {
			for _, k := range p.keys {
				c := stats.VIPs[k]
				vr.Counter.Packets += c.Packets
				vr.Counter.Bytes += c.Bytes
			}
			vr.Announced = a.announcedScope(p.prefix)
			for _, b := range p.backends {
				c := stats.Backends[b.Addr]
				vr.Backends = append(vr.Backends, lbapi.BackendReport{
					Address: b.Addr.String(),
					Counter: lbapi.Counter{Packets: c.Packets, Bytes: c.Bytes},
					Health:  a.health.Health(name, specAddress(rec.Spec, b.Addr)),
				})
			}
		}
		rep.VIPs = append(rep.VIPs, vr)
	}
	a.mu.Unlock()

	if statsErr == nil && len(stats.Drops) > 0 {
		rep.Drops = map[string]uint64{}
		for r, c := range stats.Drops {
			rep.Drops[r.String()] = c.Packets
		}
	}
	if a.cfg.Announcer != nil {
		peers, err := a.cfg.Announcer.Peers(ctx)
		if err != nil {
			a.log.Warn("reading BGP peers for the node report", "err", err)
		}
		slices.SortFunc(peers, func(x, y lbapi.PeerReport) int { return strings.Compare(x.Address, y.Address) })
		rep.Peers = peers
	}
	return rep, nil
}

// specAddress is how the spec spells a backend's address: health checks
// are keyed by it.
func specAddress(spec lbapi.VIPSpec, addr netip.Addr) string {
	for _, b := range spec.Backends {
		if a, err := netip.ParseAddr(b.Address); err == nil && a.Unmap() == addr {
			return b.Address
		}
	}
	return addr.String()
}

// vipKeyCounter is the VIP's packets on one key, zero when the key is
// absent.
func vipKeyCounter(n *lbnode.Node, k lbnode.VIPKey) (uint64, error) {
	s, err := n.Stats()
	if err != nil {
		return 0, err
	}
	return s.VIPs[k].Packets, nil
}
