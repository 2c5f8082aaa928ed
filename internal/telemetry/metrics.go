// Package telemetry builds metalflow's Prometheus registry and routes the
// Temporal SDK's metrics into it, so one /metrics endpoint shows both the
// API's http_* series and the workers' temporal_* series.
package telemetry

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/uber-go/tally/v4"
	tallyprom "github.com/uber-go/tally/v4/prometheus"
	"go.temporal.io/sdk/client"
	sdktally "go.temporal.io/sdk/contrib/tally"
)

// NewRegistry is the process's single metrics registry.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return reg
}

// TemporalMetrics is the SDK metrics handler backed by the registry. Close it
// after the clients and workers using it have stopped.
type TemporalMetrics struct {
	Handler client.MetricsHandler
	closer  io.Closer
}

// NewTemporalMetrics reports the Temporal SDK's metrics into reg.
func NewTemporalMetrics(reg prometheus.Registerer, log *slog.Logger) *TemporalMetrics {
	reporter := tallyprom.NewReporter(tallyprom.Options{
		Registerer: reg,
		// Histograms aggregate across API and worker replicas; summaries do not.
		DefaultTimerType: tallyprom.HistogramTimerType,
		// The SDK may report one name with different tag sets; a failed
		// registration must cost a series, never the process.
		OnRegisterError: func(err error) { log.Warn("temporal metric not registered", "error", err) },
	})
	scope, closer := tally.NewRootScope(tally.ScopeOptions{
		CachedReporter:  reporter,
		Separator:       tallyprom.DefaultSeparator,
		SanitizeOptions: &sdktally.PrometheusSanitizeOptions,
	}, time.Second)
	return &TemporalMetrics{
		Handler: sdktally.NewMetricsHandler(sdktally.NewPrometheusNamingScope(scope)),
		closer:  closer,
	}
}

// Close flushes and stops the metrics scope.
func (m *TemporalMetrics) Close() error {
	if err := m.closer.Close(); err != nil {
		return fmt.Errorf("close temporal metrics: %w", err)
	}
	return nil
}
