package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/metalflow/metalflow/client"
)

// APIConfig is `metalflow bench api`.
type APIConfig struct {
	// Log is the in-process metalflow's.
	Log *slog.Logger
	// Clients is how many concurrent clients call, each one request at a
	// time.
	Clients int
	// Duration is how long each route is loaded.
	Duration time.Duration
	// Servers are registered (parked waiting for racked) before the load,
	// for the status reads.
	Servers int
	// TemporalDB is memory, sqlite or a postgres:// URL (see CheckTemporalDB).
	TemporalDB string
}

// apiRoute is one kind of request the load loop sends; call's n numbers
// the requests of one client so that each POST registers a new serial.
type apiRoute struct {
	name string
	key  string // its name in the RESULT line
	call func(ctx context.Context, c *client.Client, caller, n int) error
}

// apiRouteResult is one route's measurements.
type apiRouteResult struct {
	name     string
	key      string
	elapsed  time.Duration
	measured latencies
}

// RunAPI loads the in-process API with concurrent clients over real
// HTTP, one route at a time, the health check first as the floor the
// others are compared with, and writes a table whose last line is
// machine-readable.
func RunAPI(ctx context.Context, cfg APIConfig, out io.Writer) error {
	st, err := startStack(ctx, stackOptions{Servers: cfg.Servers, TemporalDB: cfg.TemporalDB, Log: cfg.Log})
	if err != nil {
		return err
	}
	defer st.Close()
	serials, err := registerParked(ctx, st.API, "BAPI", cfg.Servers, cfg.Clients)
	if err != nil {
		return err
	}
	routes := []apiRoute{
		{"GET /healthz", "healthz", func(ctx context.Context, c *client.Client, _, _ int) error {
			return c.Health(ctx)
		}},
		{"GET /api/v1/servers/<serial>", "get_server", func(ctx context.Context, c *client.Client, caller, n int) error {
			_, err := c.Server(ctx, serials[(caller+n)%len(serials)])
			return err
		}},
		{"POST /api/v1/servers", "post_server", func(ctx context.Context, c *client.Client, caller, n int) error {
			_, err := c.AddServer(ctx, client.NewServer{Serial: fmt.Sprintf("BPOST-%03d-%07d", caller, n)})
			return err
		}},
	}
	var results []apiRouteResult
	for _, r := range routes {
		res, err := loadRoute(ctx, st.API, r, cfg.Clients, cfg.Duration)
		if err != nil {
			return err
		}
		results = append(results, res)
	}
	return printAPIResults(out, cfg, results)
}

// loadRoute runs clients loops of one route for d. Requests in flight at
// the end are let finish rather than cancelled, so that every request
// counted is a whole one and the API sees no aborted calls.
func loadRoute(ctx context.Context, c *client.Client, r apiRoute, clients int, d time.Duration) (apiRouteResult, error) {
	per := make([]latencies, clients)
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for i := range clients {
		wg.Go(func() {
			for n := 0; ctx.Err() == nil && time.Now().Before(end); n++ {
				t := time.Now()
				err := r.call(ctx, c, i, n)
				per[i].add(time.Since(t), err)
			}
		})
	}
	wg.Wait()
	res := apiRouteResult{name: r.name, key: r.key, elapsed: time.Since(start)}
	for _, l := range per {
		res.measured.merge(l)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if len(res.measured.samples) == 0 {
		return res, fmt.Errorf("bench api: %s: no request succeeded (%d errors)", r.name, res.measured.errors)
	}
	return res, nil
}

// registerParked POSTs n servers without BMCs, clients at a time; each
// lifecycle parks waiting for racked.
func registerParked(ctx context.Context, c *client.Client, prefix string, n, clients int) ([]string, error) {
	serials := make([]string, n)
	for i := range serials {
		serials[i] = fmt.Sprintf("%s%07d", prefix, i+1)
	}
	next := make(chan string)
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for range min(clients, n) {
		wg.Go(func() {
			for s := range next {
				if _, err := c.AddServer(ctx, client.NewServer{Serial: s}); err != nil {
					errs <- fmt.Errorf("register %s: %w", s, err)
					return
				}
			}
		})
	}
	func() {
		defer close(next)
		for _, s := range serials {
			select {
			case next <- s:
			case err := <-errs:
				errs <- err
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	return serials, nil
}

func printAPIResults(w io.Writer, cfg APIConfig, results []apiRouteResult) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "route\trequests\treq/s\tp50 ms\tp99 ms\terrors\n")
	for _, r := range results {
		ok := len(r.measured.samples)
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.2f\t%.2f\t%d\n", r.name, ok,
			float64(ok)/r.elapsed.Seconds(), millis(percentile(r.measured.samples, 50)),
			millis(percentile(r.measured.samples, 99)), r.measured.errors)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	line := fmt.Sprintf("RESULT clients=%d duration_s=%.1f servers=%d", cfg.Clients, cfg.Duration.Seconds(), cfg.Servers)
	for _, r := range results {
		key := r.key
		line += fmt.Sprintf(" %s_rps=%.0f %s_p99_ms=%.2f %s_errors=%d", key,
			float64(len(r.measured.samples))/r.elapsed.Seconds(), key, millis(percentile(r.measured.samples, 99)), key, r.measured.errors)
	}
	_, err := fmt.Fprintln(w, line)
	return err
}
