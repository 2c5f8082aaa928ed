package agent

import (
	"net/netip"
	"slices"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// Collector exposes the node's data plane and the agent's view of it to
// Prometheus. It reads the maps on every scrape, so the counters are the
// kernel's, not a copy that can fall behind. BGP session metrics come from
// the BGP speaker's own collector.
type Collector struct {
	a *Agent

	vipPackets     *prometheus.Desc
	vipBytes       *prometheus.Desc
	backendPackets *prometheus.Desc
	backendBytes   *prometheus.Desc
	drops          *prometheus.Desc
	backendUp      *prometheus.Desc
	healthy        *prometheus.Desc
	announced      *prometheus.Desc
	vips           *prometheus.Desc
	scrapeError    *prometheus.Desc
}

// NewCollector describes the agent's metrics; register it with a registry.
func NewCollector(a *Agent) *Collector {
	return &Collector{
		a: a,
		vipPackets: prometheus.NewDesc("metalflow_lb_vip_packets_total",
			"Packets the data plane balanced for a VIP, over all its ports.", []string{"vip", "address"}, nil),
		vipBytes: prometheus.NewDesc("metalflow_lb_vip_bytes_total",
			"Bytes the data plane balanced for a VIP, over all its ports.", []string{"vip", "address"}, nil),
		backendPackets: prometheus.NewDesc("metalflow_lb_backend_packets_total",
			"Packets sent to a backend (the data plane counts per backend, over every VIP it serves).", []string{"vip", "backend"}, nil),
		backendBytes: prometheus.NewDesc("metalflow_lb_backend_bytes_total",
			"Bytes sent to a backend (the data plane counts per backend, over every VIP it serves).", []string{"vip", "backend"}, nil),
		drops: prometheus.NewDesc("metalflow_lb_drops_total",
			"Packets the data plane dropped, by reason.", []string{"reason"}, nil),
		backendUp: prometheus.NewDesc("metalflow_lb_backend_up",
			"Damped health-check verdict from this node: 1 up, 0 down; absent while unknown.", []string{"vip", "backend"}, nil),
		healthy: prometheus.NewDesc("metalflow_lb_dataplane_healthy",
			"1 while the XDP program is attached and its maps readable; routes are withdrawn otherwise.", nil, nil),
		announced: prometheus.NewDesc("metalflow_lb_announced_routes",
			"Routes the node's BGP speaker announces, by prefix and scope.", []string{"prefix", "scope"}, nil),
		vips: prometheus.NewDesc("metalflow_lb_vips",
			"VIPs applied to the node.", nil, nil),
		scrapeError: prometheus.NewDesc("metalflow_lb_stats_read_errors",
			"1 when the last scrape could not read the data plane's counters.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.vipPackets, c.vipBytes, c.backendPackets, c.backendBytes,
		c.drops, c.backendUp, c.healthy, c.announced, c.vips, c.scrapeError} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	a := c.a
	stats, err := a.node.Stats()
	readErr := 0.0
	if err != nil {
		readErr = 1
	}
	ch <- prometheus.MustNewConstMetric(c.scrapeError, prometheus.GaugeValue, readErr)

	a.mu.Lock()
	healthy := a.healthy
	records := make(map[string]vipRecord, len(a.vips))
	for name, rec := range a.vips {
		records[name] = rec
	}
	a.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(c.healthy, prometheus.GaugeValue, boolGauge(healthy))
	ch <- prometheus.MustNewConstMetric(c.vips, prometheus.GaugeValue, float64(len(records)))

	for name, rec := range records {
		p, perr := planOf(rec.Spec)
		if perr != nil {
			continue
		}
		if err == nil {
			var packets, bytes uint64
			for _, k := range p.keys {
				packets += stats.VIPs[k].Packets
				bytes += stats.VIPs[k].Bytes
			}
			ch <- prometheus.MustNewConstMetric(c.vipPackets, prometheus.CounterValue, float64(packets), name, rec.Spec.Address)
			ch <- prometheus.MustNewConstMetric(c.vipBytes, prometheus.CounterValue, float64(bytes), name, rec.Spec.Address)
		}
		for _, b := range p.backends {
			addr := specAddress(rec.Spec, b.Addr)
			if err == nil {
				bc := stats.Backends[b.Addr]
				ch <- prometheus.MustNewConstMetric(c.backendPackets, prometheus.CounterValue, float64(bc.Packets), name, addr)
				ch <- prometheus.MustNewConstMetric(c.backendBytes, prometheus.CounterValue, float64(bc.Bytes), name, addr)
			}
			switch a.health.Health(name, addr) {
			case HealthUp:
				ch <- prometheus.MustNewConstMetric(c.backendUp, prometheus.GaugeValue, 1, name, addr)
			case HealthDown:
				ch <- prometheus.MustNewConstMetric(c.backendUp, prometheus.GaugeValue, 0, name, addr)
			}
		}
	}
	if err == nil {
		for r, dc := range stats.Drops {
			ch <- prometheus.MustNewConstMetric(c.drops, prometheus.CounterValue, float64(dc.Packets), r.String())
		}
	}
	if a.cfg.Announcer != nil {
		routes := a.cfg.Announcer.Announced()
		prefixes := make([]netip.Prefix, 0, len(routes))
		for p := range routes {
			prefixes = append(prefixes, p)
		}
		slices.SortFunc(prefixes, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
		for _, p := range prefixes {
			scope := routes[p]
			if scope == lbapi.AnnounceNone {
				continue
			}
			ch <- prometheus.MustNewConstMetric(c.announced, prometheus.GaugeValue, 1, p.String(), scope)
		}
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
