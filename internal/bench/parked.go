package bench

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/metalflow/metalflow/client"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// ParkedConfig is `metalflow bench parked`.
type ParkedConfig struct {
	// Log is the in-process metalflow's.
	Log *slog.Logger
	// Servers are registered; each lifecycle parks waiting for racked.
	Servers int
	// WorkerBinary, when set, is a metalflow binary whose `worker` runs
	// the lifecycle worker in a process of its own, so that its memory is
	// reported apart; its output goes to WorkerOutput.
	WorkerBinary string
	WorkerOutput io.Writer
	// PageSize is the timed listing's page size (1 to 1000).
	PageSize int
	// Concurrency is how many registrations are in flight at once.
	Concurrency int
	// Timeout gives up when the servers are not all parked by then.
	Timeout time.Duration
	// TemporalDB is memory, sqlite or a postgres:// URL (see CheckTemporalDB).
	TemporalDB string
}

// parkedResult is what `bench parked` measured.
type parkedResult struct {
	servers      int
	parked       int
	register     time.Duration
	main         memoryFigures
	heap         uint64
	worker       *memoryFigures
	listTime     time.Duration
	listed       int
	listPages    int
	workerDetail string
}

// RunParked registers many lifecycles that wait for racked, measures the
// memory they hold and how long listing them all takes, and writes a
// table whose last line is machine-readable.
func RunParked(ctx context.Context, cfg ParkedConfig, out io.Writer) error {
	st, err := startStack(ctx, stackOptions{
		Servers: cfg.Servers, TemporalDB: cfg.TemporalDB, ExternalWorker: cfg.WorkerBinary != "", Log: cfg.Log,
	})
	if err != nil {
		return err
	}
	defer st.Close()
	res := parkedResult{servers: cfg.Servers, workerDetail: "in this process"}
	var worker *exec.Cmd
	if cfg.WorkerBinary != "" {
		if worker, err = startWorkerProcess(cfg.WorkerBinary, st, cfg.WorkerOutput); err != nil {
			return err
		}
		defer stopWorkerProcess(worker)
		res.workerDetail = fmt.Sprintf("separate process, pid %d", worker.Process.Pid)
	}

	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	c := st.API
	start := time.Now()
	if _, err := registerParked(ctx, c, "PARK", cfg.Servers, cfg.Concurrency); err != nil {
		return err
	}
	if res.parked, err = waitParked(ctx, c, cfg.Servers); err != nil {
		return err
	}
	res.register = time.Since(start)

	t := time.Now()
	rows, pages, err := listAll(ctx, c, "", cfg.PageSize)
	if err != nil {
		return fmt.Errorf("list servers: %w", err)
	}
	res.listTime, res.listed, res.listPages = time.Since(t), len(rows), pages

	res.heap = heapInUse()
	if res.main, err = readMemory(0); err != nil {
		return err
	}
	if worker != nil {
		m, err := readMemory(worker.Process.Pid)
		if err != nil {
			return fmt.Errorf("worker process memory: %w", err)
		}
		res.worker = &m
	}
	if err := res.print(out, cfg); err != nil {
		return err
	}
	if res.listed != cfg.Servers {
		return fmt.Errorf("bench parked: the list showed %d servers, want %d", res.listed, cfg.Servers)
	}
	return nil
}

// waitParked waits until the visibility store shows every server waiting
// for racked, polling the API's filtered list.
func waitParked(ctx context.Context, c *client.Client, n int) (int, error) {
	seen := 0
	for {
		rows, _, err := listAll(ctx, c, serverapi.StateWaitingRack, 1000)
		if err == nil {
			seen = len(rows)
			if seen >= n {
				return seen, nil
			}
		}
		select {
		case <-ctx.Done():
			return seen, fmt.Errorf("only %d of %d servers parked: %w", seen, n, ctx.Err())
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// startWorkerProcess runs `metalflow worker` against the stack's Temporal,
// sharing its inventory and credential key.
func startWorkerProcess(binary string, st *harness, output io.Writer) (*exec.Cmd, error) {
	cmd := exec.Command(binary, "worker",
		"--temporal", st.TemporalAddress, "--namespace", st.Namespace,
		"--inventory-db", st.InventoryURL, "--credentials-key", st.CredentialsKey,
		"--bmc-insecure", "--metrics", "", "--log-level", "error")
	cmd.Stdout, cmd.Stderr = output, output
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start worker process: %w", err)
	}
	return cmd, nil
}

// stopWorkerProcess ends the worker this benchmark started, by its pid.
func stopWorkerProcess(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

func (r parkedResult) print(w io.Writer, cfg ParkedConfig) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tvalue\tnote")
	fmt.Fprintf(tw, "servers parked\t%d\twaiting for racked, temporal %s\n", r.parked, redactURL(cfg.TemporalDB))
	fmt.Fprintf(tw, "register + park\t%.1f s\t%d concurrent POSTs until the list shows them all waiting\n", seconds(r.register), cfg.Concurrency)
	holds := "Temporal, API, worker"
	if r.worker != nil {
		holds = "Temporal, API"
	}
	fmt.Fprintf(tw, "RSS\t%.0f MiB\tthis process (%s) now\n", mib(r.main.RSSBytes), holds)
	fmt.Fprintf(tw, "peak RSS\t%.0f MiB\tthis process, VmHWM\n", mib(r.main.PeakRSSBytes))
	fmt.Fprintf(tw, "Go heap in use\t%.0f MiB\tthis process, after a GC\n", mib(int64(r.heap)))
	if r.worker != nil {
		fmt.Fprintf(tw, "worker RSS\t%.0f MiB\t%s\n", mib(r.worker.RSSBytes), r.workerDetail)
		fmt.Fprintf(tw, "worker peak RSS\t%.0f MiB\t\n", mib(r.worker.PeakRSSBytes))
	}
	fmt.Fprintf(tw, "list all\t%.2f s\t%d servers in %d pages of %d\n", seconds(r.listTime), r.listed, r.listPages, cfg.PageSize)
	if err := tw.Flush(); err != nil {
		return err
	}
	workerRSS := 0.0
	if r.worker != nil {
		workerRSS = mib(r.worker.RSSBytes)
	}
	_, err := fmt.Fprintf(w, "RESULT servers=%d parked=%d rss_mib=%.0f heap_mib=%.0f worker_rss_mib=%.0f list_s=%.2f listed=%d pages=%d\n",
		r.servers, r.parked, mib(r.main.RSSBytes), mib(int64(r.heap)), workerRSS, seconds(r.listTime), r.listed, r.listPages)
	return err
}
