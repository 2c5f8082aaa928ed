package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"go.temporal.io/api/workflowservice/v1"

	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/client"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// FleetConfig is `metalflow bench fleet`.
type FleetConfig struct {
	// Log is the in-process metalflow's.
	Log *slog.Logger
	// Servers is how many simulated servers are provisioned.
	Servers int
	// Concurrency is how many servers are in flight at once: each is
	// posted, racked and waited for before its caller takes the next.
	Concurrency int
	// Timeout gives up on servers not installed by then.
	Timeout time.Duration
	// SimSpeed divides real hardware's delays; 0 takes them all away.
	SimSpeed float64
	// TemporalDB is memory, sqlite or a postgres:// URL (see CheckTemporalDB).
	TemporalDB string
	// CPUProfile, when set, receives a CPU profile of the provisioning.
	CPUProfile io.Writer
}

// fleetOutcome is how one server's provisioning ended.
type fleetOutcome struct {
	serial    string
	installed bool
	state     string
	took      time.Duration
	retries   int // 503s retried
	err       error
}

// fleetResult is what `bench fleet` measured.
type fleetResult struct {
	servers, completed int
	wall               time.Duration
	perServer          []time.Duration
	cpu                time.Duration
	peakRSS            int64
	historyMean        float64
	historyMax         int64
	failures           []fleetOutcome
	retries            int
}

// RunFleet provisions cfg.Servers simulated servers from POST to
// installed through the API, as staff would drive them, and writes a table
// whose last line is machine-readable.
func RunFleet(ctx context.Context, cfg FleetConfig, out io.Writer) error {
	st, err := startStack(ctx, stackOptions{
		Servers: cfg.Servers, SimServers: cfg.Servers, SimSpeed: cfg.SimSpeed, TemporalDB: cfg.TemporalDB, Log: cfg.Log,
	})
	if err != nil {
		return err
	}
	defer st.Close()

	if cfg.CPUProfile != nil {
		if err := pprof.StartCPUProfile(cfg.CPUProfile); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
	}
	res, err := provisionFleet(ctx, st, cfg)
	if cfg.CPUProfile != nil {
		pprof.StopCPUProfile()
	}
	if err != nil {
		return err
	}
	if err := res.print(out, cfg); err != nil {
		return err
	}
	if res.completed < res.servers {
		first := res.failures[0]
		return fmt.Errorf("bench fleet: %d of %d servers installed; first not installed: %s in state %q: %v",
			res.completed, res.servers, first.serial, first.state, first.err)
	}
	return nil
}

// provisionFleet drives every simulated server to installed, at most
// cfg.Concurrency at once, and measures the process meanwhile.
func provisionFleet(ctx context.Context, st *harness, cfg FleetConfig) (fleetResult, error) {
	manifest := st.Fleet.Manifest()
	cpu0, err := cpuTime()
	if err != nil {
		return fleetResult{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	watch := newFleetWatch()
	go watch.poll(ctx, st.API, len(manifest))

	start := time.Now()
	next := make(chan int)
	outcomes := make([]fleetOutcome, len(manifest))
	var wg sync.WaitGroup
	for range min(cfg.Concurrency, len(manifest)) {
		wg.Go(func() {
			for i := range next {
				outcomes[i] = provisionOne(ctx, st.API, watch, i, manifest[i])
			}
		})
	}
	for i := range manifest {
		next <- i
	}
	close(next)
	wg.Wait()
	wall := time.Since(start)
	cpu1, err := cpuTime()
	if err != nil {
		return fleetResult{}, err
	}
	mem, err := readMemory(0)
	if err != nil {
		return fleetResult{}, err
	}
	res := fleetResult{servers: len(manifest), wall: wall, cpu: cpu1 - cpu0, peakRSS: mem.PeakRSSBytes}
	var installed []string
	for _, o := range outcomes {
		res.retries += o.retries
		if o.installed {
			res.completed++
			res.perServer = append(res.perServer, o.took)
			installed = append(installed, o.serial)
			continue
		}
		res.failures = append(res.failures, o)
	}
	// History length is read after the clock stopped: it is a property of
	// the workflows, not part of the work measured.
	res.historyMean, res.historyMax, err = historyLengths(context.WithoutCancel(ctx), st, installed)
	if err != nil {
		return fleetResult{}, err
	}
	return res, nil
}

// provisionOne registers one server, racks it and waits for the watch to
// see it installed (or stuck).
func provisionOne(ctx context.Context, c *client.Client, watch *fleetWatch, i int, bmc bmcsim.ManifestEntry) fleetOutcome {
	out := fleetOutcome{serial: bmc.Serial}
	done := watch.expect(bmc.Serial)
	posted := time.Now()
	var retries int
	retries, out.err = callRetrying(ctx, fleetRetryPause, func(ctx context.Context) error {
		_, err := c.AddServer(ctx, client.NewServer{Serial: bmc.Serial, BMC: &client.BMC{
			Address: bmc.Address, Username: bmc.Username, Password: bmc.Password}})
		return err
	})
	out.retries += retries
	if out.err != nil {
		return out
	}
	rack, unit := location(i)
	loc := client.Location{Site: site, Room: "A", Rack: rack, Unit: unit, Face: "front"}
	retries, out.err = callRetrying(ctx, fleetRetryPause, func(ctx context.Context) error {
		_, err := c.Racked(ctx, bmc.Serial, loc)
		return err
	})
	out.retries += retries
	if out.err != nil {
		return out
	}
	select {
	case end := <-done:
		out.state, out.took = end.state, end.at.Sub(posted)
		out.installed = end.state == serverapi.StateInstalled || end.state == serverapi.StateReady
		if !out.installed {
			out.err = errors.New("stopped short of installed")
		}
	case <-ctx.Done():
		out.state, out.err = watch.last(bmc.Serial), ctx.Err()
	}
	return out
}

// fleetRetryPause is the wait before a 503 is retried.
const fleetRetryPause = time.Second

// callRetrying sends a call as staff's tools should: a 503 (Temporal busy
// or unreachable, nothing done for certain) is retried after a pause, and
// a 409 after a 503 means the first attempt had done it after all.
func callRetrying(ctx context.Context, pause time.Duration, call func(context.Context) error) (retries int, err error) {
	for {
		err = call(ctx)
		switch status := client.StatusOf(err); {
		case status == 0:
			return retries, err
		case status == http.StatusConflict && retries > 0:
			return retries, nil
		case status != http.StatusServiceUnavailable || retries >= 10:
			return retries, err
		}
		retries++
		select {
		case <-ctx.Done():
			return retries, err
		case <-time.After(pause):
		}
	}
}

// fleetEnd is when the watch saw a server reach a state it stays in
// without a human.
type fleetEnd struct {
	state string
	at    time.Time
}

// fleetWatch polls the fleet list and tells each waiting caller when its
// server is installed or needs a human: one list call for every server in
// flight, rather than a status query each.
type fleetWatch struct {
	mu      sync.Mutex
	waiting map[string]chan fleetEnd
	states  map[string]string
}

func newFleetWatch() *fleetWatch {
	return &fleetWatch{waiting: map[string]chan fleetEnd{}, states: map[string]string{}}
}

// fleetPollInterval is the resolution of the per-server times.
const fleetPollInterval = 250 * time.Millisecond

func (w *fleetWatch) expect(serial string) <-chan fleetEnd {
	ch := make(chan fleetEnd, 1)
	w.mu.Lock()
	w.waiting[serial] = ch
	w.mu.Unlock()
	return ch
}

func (w *fleetWatch) last(serial string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.states[serial]
}

func (w *fleetWatch) poll(ctx context.Context, c *client.Client, servers int) {
	pageSize := min(max(servers, 1), 1000)
	t := time.NewTicker(fleetPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A failed poll is retried at the next tick; the timeout bounds it.
		rows, _, err := listAll(ctx, c, "", pageSize)
		if err != nil {
			continue
		}
		now := time.Now()
		w.mu.Lock()
		for _, r := range rows {
			w.states[r.Serial] = r.State
			ch, ok := w.waiting[r.Serial]
			if !ok || !settled(r.State) {
				continue
			}
			ch <- fleetEnd{state: r.State, at: now}
			delete(w.waiting, r.Serial)
		}
		w.mu.Unlock()
	}
}

// settled states change only when staff act.
func settled(state string) bool {
	switch state {
	case serverapi.StateInstalled, serverapi.StateReady, serverapi.StateAttention,
		serverapi.StateFailed, serverapi.StateAborted, serverapi.StateCancelled:
		return true
	}
	return false
}

// historyLengths is the mean and max event count of the servers'
// lifecycle histories.
func historyLengths(ctx context.Context, st *harness, serials []string) (float64, int64, error) {
	if len(serials) == 0 {
		return 0, 0, nil
	}
	var (
		mu    sync.Mutex
		sum   int64
		most  int64
		first error
		wg    sync.WaitGroup
	)
	next := make(chan string)
	for range min(16, len(serials)) {
		wg.Go(func() {
			for serial := range next {
				res, err := st.Temporal.DescribeWorkflowExecution(ctx, serverapi.LifecycleWorkflowID(serial), "")
				mu.Lock()
				if err != nil && first == nil {
					first = fmt.Errorf("describe %s: %w", serial, err)
				}
				n := historyLength(res)
				sum += n
				most = max(most, n)
				mu.Unlock()
			}
		})
	}
	for _, s := range serials {
		next <- s
	}
	close(next)
	wg.Wait()
	return float64(sum) / float64(len(serials)), most, first
}

func historyLength(res *workflowservice.DescribeWorkflowExecutionResponse) int64 {
	return res.GetWorkflowExecutionInfo().GetHistoryLength()
}

// failureReason is how many servers stopped short of installed one way.
type failureReason struct {
	reason string
	count  int
}

// failureCounts groups the servers not installed by their state and the
// first line of their error, most frequent first.
func (r fleetResult) failureCounts() []failureReason {
	counts := map[string]int{}
	var order []string
	for _, o := range r.failures {
		msg := "no error"
		if o.err != nil {
			msg, _, _ = strings.Cut(o.err.Error(), "\n")
		}
		key := fmt.Sprintf("state %q: %s", o.state, msg)
		if counts[key] == 0 {
			order = append(order, key)
		}
		counts[key]++
	}
	out := make([]failureReason, 0, len(order))
	for _, k := range order {
		out = append(out, failureReason{reason: k, count: counts[k]})
	}
	slices.SortStableFunc(out, func(a, b failureReason) int { return b.count - a.count })
	return out
}

func (r fleetResult) print(w io.Writer, cfg FleetConfig) error {
	perMin := 0.0
	if r.wall > 0 {
		perMin = float64(r.completed) / r.wall.Minutes()
	}
	cpuPer := seconds(r.cpu) / float64(r.servers)
	p50, p95 := percentile(r.perServer, 50), percentile(r.perServer, 95)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tvalue\tnote")
	fmt.Fprintf(tw, "servers\t%d\tconcurrency %d, temporal %s, sim speed %g (0: no hardware delays)\n", r.servers, cfg.Concurrency, redactURL(cfg.TemporalDB), cfg.SimSpeed)
	fmt.Fprintf(tw, "completed\t%d\tinstalled within %s\n", r.completed, cfg.Timeout)
	fmt.Fprintf(tw, "wall\t%.1f s\tfirst POST to last installed\n", seconds(r.wall))
	fmt.Fprintf(tw, "servers/minute\t%.1f\t\n", perMin)
	fmt.Fprintf(tw, "time per server p50\t%.2f s\tPOST to installed, seen by a list poll every %s\n", seconds(p50), fleetPollInterval)
	fmt.Fprintf(tw, "time per server p95\t%.2f s\t\n", seconds(p95))
	fmt.Fprintf(tw, "CPU per server\t%.3f s\tprocess CPU (Temporal, API, worker, simulated BMCs) ÷ servers\n", cpuPer)
	fmt.Fprintf(tw, "peak RSS\t%.0f MiB\tVmHWM of the whole process\n", mib(r.peakRSS))
	fmt.Fprintf(tw, "history events mean\t%.1f\tper installed server's lifecycle\n", r.historyMean)
	fmt.Fprintf(tw, "history events max\t%d\t\n", r.historyMax)
	fmt.Fprintf(tw, "API 503s retried\t%d\tPOST or racked answered 503 (Temporal too busy to accept in time), sent again after %s\n", r.retries, fleetRetryPause)
	for _, why := range r.failureCounts() {
		fmt.Fprintf(tw, "not installed\t%d\t%s\n", why.count, why.reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "RESULT servers=%d completed=%d wall_s=%.1f servers_per_min=%.1f p95_s=%.2f cpu_s_per_server=%.3f peak_rss_mib=%.0f\n",
		r.servers, r.completed, seconds(r.wall), perMin, seconds(p95), cpuPer, mib(r.peakRSS))
	return err
}
