package bgp

import (
	"context"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// collector reads the speaker at scrape time, so the metrics say what the
// BGP server knows now rather than what the node last asked for.
type collector struct {
	speaker   *Speaker
	sessionUp *prometheus.Desc
	announced *prometheus.Desc
}

// NewCollector exposes a speaker's sessions and announcements to
// Prometheus.
func NewCollector(s *Speaker) prometheus.Collector {
	return &collector{
		speaker: s,
		sessionUp: prometheus.NewDesc("metalflow_lb_bgp_session_up",
			"1 if the BGP session to the peer is established, else 0.",
			[]string{"peer", "external"}, nil),
		announced: prometheus.NewDesc("metalflow_lb_bgp_announced_routes",
			"VIP routes the node announces, by scope (internal: internal peers only; public: every peer).",
			[]string{"scope"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.sessionUp
	ch <- c.announced
}

// scrapeTimeout keeps a wedged BGP server from hanging a scrape.
const scrapeTimeout = 2 * time.Second

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	peers, err := c.speaker.Peers(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.sessionUp, err)
	}
	for _, p := range peers {
		up := 0.0
		if p.State == "established" {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(c.sessionUp, prometheus.GaugeValue, up, p.Address, strconv.FormatBool(p.External))
	}
	counts := map[string]int{lbapi.AnnounceInternal: 0, lbapi.AnnouncePublic: 0}
	for _, scope := range c.speaker.Announced() {
		counts[scope]++
	}
	for scope, n := range counts {
		ch <- prometheus.MustNewConstMetric(c.announced, prometheus.GaugeValue, float64(n), scope)
	}
}
