// Package sd answers Prometheus's HTTP service discovery: what metalflow
// knows to monitor.
package sd

import (
	"context"
	"net/http"
	"net/url"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/inventory"
)

// Targets lists what there is to monitor.
type Targets interface {
	Targets(ctx context.Context) ([]inventory.Target, error)
}

// Register mounts the discovery route; mw decides who may call it.
func Register(v1 *echo.Group, inv Targets, mw ...echo.MiddlewareFunc) {
	v1.GET("/sd/targets", (&handlers{Inventory: inv}).sdTargets, mw...)
}

type handlers struct {
	Inventory Targets
}

// sdGroup is one entry of Prometheus HTTP service discovery.
type sdGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// sdTargets answers Prometheus's http_sd_configs: every registered BMC and
// installed host, labelled with serial, site, rack and role.
func (h *handlers) sdTargets(c echo.Context) error {
	targets, err := h.Inventory.Targets(c.Request().Context())
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
