// Package temporalx holds the small amount of glue every metalflow process
// needs to talk to Temporal: dialing and namespace preparation.
package temporalx

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	sdklog "go.temporal.io/sdk/log"
)

// ClientOptions say where Temporal is.
type ClientOptions struct {
	HostPort  string
	Namespace string
	Logger    *slog.Logger
	Metrics   client.MetricsHandler
}

// NewLazyClient returns a client that connects on first use, so the API can
// start (and report not-ready) while Temporal is still coming up.
func NewLazyClient(opts ClientOptions) (client.Client, error) {
	c, err := client.NewLazyClient(client.Options{
		HostPort:       opts.HostPort,
		Namespace:      opts.Namespace,
		Logger:         sdklog.NewStructuredLogger(opts.Logger.With("component", "temporal-sdk")),
		MetricsHandler: opts.Metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("temporal client for %s: %w", opts.HostPort, err)
	}
	return c, nil
}

// WaitReady blocks until Temporal answers a health check or ctx ends.
func WaitReady(ctx context.Context, c client.Client) error {
	for {
		hctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err := c.CheckHealth(hctx, &client.CheckHealthRequest{})
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("temporal not reachable: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// EnsureSearchAttributes registers the attributes the namespace lacks. It is
// idempotent, so every worker can call it at start against any cluster.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string, want map[string]enumspb.IndexedValueType) error {
	ops := c.OperatorService()
	have, err := ops.ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes of %q: %w", namespace, err)
	}
	missing := map[string]enumspb.IndexedValueType{}
	for name, typ := range want {
		got, ok := have.GetCustomAttributes()[name]
		switch {
		case !ok:
			missing[name] = typ
		case got != typ:
			return fmt.Errorf("search attribute %s is %s in namespace %q, metalflow needs %s", name, got, namespace, typ)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	if _, err := ops.AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace:        namespace,
		SearchAttributes: missing,
	}); err != nil {
		return fmt.Errorf("add search attributes to %q: %w", namespace, err)
	}
	return nil
}
