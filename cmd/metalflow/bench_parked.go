package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/metalflow/metalflow/workflows"
)

// benchParkedFlags are `metalflow bench parked`'s flags.
type benchParkedFlags struct {
	log           logFlags
	servers       int
	workerProcess bool
	workerBinary  string
	pageSize      int
	concurrency   int
	timeout       time.Duration
	temporalDB    string
}

func (f *benchParkedFlags) parse(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench parked", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&f.log.level, "log-level", "error", "log level of the in-process metalflow: debug, info, warn, error")
	fs.IntVar(&f.servers, "servers", 10000, "servers registered; each lifecycle parks waiting for racked")
	fs.BoolVar(&f.workerProcess, "worker-process", false, "run the lifecycle worker as a separate 'metalflow worker' process and report its memory apart")
	fs.StringVar(&f.workerBinary, "worker-binary", "", "metalflow binary for --worker-process (default: this one)")
	fs.IntVar(&f.pageSize, "page-size", 1000, "page size of the timed GET /api/v1/servers listing (1 to 1000)")
	fs.IntVar(&f.concurrency, "concurrency", 32, "concurrent registrations")
	fs.DurationVar(&f.timeout, "timeout", 30*time.Minute, "give up when the servers are not all parked by then")
	fs.StringVar(&f.temporalDB, "temporal-db", "memory", "embedded Temporal's store: memory, sqlite or postgres://user:password@host:port/database (a new database <database>_<random> per run)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case f.servers < 1:
		return usageError{errors.New("--servers must be at least 1")}
	case f.pageSize < 1 || f.pageSize > 1000:
		return usageError{errors.New("--page-size must be 1 to 1000 (the API's limit)")}
	case f.concurrency < 1:
		return usageError{errors.New("--concurrency must be at least 1")}
	case f.timeout <= 0:
		return usageError{errors.New("--timeout must be positive")}
	case f.workerBinary != "" && !f.workerProcess:
		return usageError{errors.New("--worker-binary needs --worker-process")}
	}
	if err := validateTemporalDB(f.temporalDB); err != nil {
		return usageError{err}
	}
	return nil
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

// runBenchParked is `metalflow bench parked`: many lifecycles waiting for
// racked, the memory they hold, and how long listing them all takes.
func runBenchParked(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var f benchParkedFlags
	if err := f.parse(args, stderr); err != nil {
		return err
	}
	log, err := f.log.logger(stderr)
	if err != nil {
		return err
	}
	binary := f.workerBinary
	if f.workerProcess && binary == "" {
		if binary, err = os.Executable(); err != nil {
			return fmt.Errorf("find this binary for --worker-process: %w", err)
		}
	}
	st, err := startBenchStack(ctx, benchStackOptions{
		Servers: f.servers, TemporalDB: f.temporalDB, ExternalWorker: f.workerProcess, Log: log,
	})
	if err != nil {
		return err
	}
	defer st.Close()
	res := parkedResult{servers: f.servers, workerDetail: "in this process"}
	var worker *exec.Cmd
	if f.workerProcess {
		if worker, err = startWorkerProcess(binary, st, stderr); err != nil {
			return err
		}
		defer stopWorkerProcess(worker)
		res.workerDetail = fmt.Sprintf("separate process, pid %d", worker.Process.Pid)
	}

	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	c := st.caller()
	start := time.Now()
	if _, err := registerParked(ctx, c, "PARK", f.servers, f.concurrency); err != nil {
		return err
	}
	if res.parked, err = waitParked(ctx, c, f.servers); err != nil {
		return err
	}
	res.register = time.Since(start)

	t := time.Now()
	rows, pages, err := c.listAll(ctx, "", f.pageSize)
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
	if err := res.print(stdout, f); err != nil {
		return err
	}
	if res.listed != f.servers {
		return fmt.Errorf("bench parked: the list showed %d servers, want %d", res.listed, f.servers)
	}
	return nil
}

// waitParked waits until the visibility store shows every server waiting
// for racked, polling the API's filtered list.
func waitParked(ctx context.Context, c benchCaller, n int) (int, error) {
	seen := 0
	for {
		rows, _, err := c.listAll(ctx, workflows.StateWaitingRack, 1000)
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
func startWorkerProcess(binary string, st *benchStack, stderr io.Writer) (*exec.Cmd, error) {
	cmd := exec.Command(binary, "worker",
		"--temporal", st.TemporalAddress, "--namespace", st.Namespace,
		"--inventory-db", st.InventoryURL, "--credentials-key", st.CredentialsKey,
		"--bmc-insecure", "--metrics", "", "--log-level", "error")
	cmd.Stdout, cmd.Stderr = stderr, stderr
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

func (r parkedResult) print(w io.Writer, f benchParkedFlags) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tvalue\tnote")
	fmt.Fprintf(tw, "servers parked\t%d\twaiting for racked, temporal %s\n", r.parked, redactURL(f.temporalDB))
	fmt.Fprintf(tw, "register + park\t%.1f s\t%d concurrent POSTs until the list shows them all waiting\n", seconds(r.register), f.concurrency)
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
	fmt.Fprintf(tw, "list all\t%.2f s\t%d servers in %d pages of %d\n", seconds(r.listTime), r.listed, r.listPages, f.pageSize)
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
