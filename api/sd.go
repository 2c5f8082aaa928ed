package api

import (
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"
)

// sdGroup is one entry of Prometheus HTTP service discovery.
type sdGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// sdTargets answers Prometheus's http_sd_configs: every registered BMC and
// installed host, labelled with serial, site, rack and role.
func (s *Server) sdTargets(c echo.Context) error {
	targets, err := s.cfg.Inventory.Targets(c.Request().Context())
	if err != nil {
		return err
	}
	out := make([]sdGroup, 0, len(targets))
	for _, t := range targets {
		labels := map[string]string{"serial": t.Serial, "kind": t.Kind}
		for k, v := range t.Labels {
			labels[k] = v
		}
		addr := t.Address
		// Prometheus wants host:port; BMC addresses are URLs.
		if u, err := url.Parse(t.Address); err == nil && u.Host != "" {
			addr = u.Host
			labels["__scheme__"] = u.Scheme
		}
		out = append(out, sdGroup{Targets: []string{addr}, Labels: labels})
	}
	return c.JSON(http.StatusOK, out)
}
