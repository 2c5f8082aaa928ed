//go:build !agent

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/metalflow/metalflow/internal/bench"
)

// benchmarks are the `metalflow bench` subcommands.
func benchmarks() map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
		"xdp":    runBenchXDP,
		"fleet":  runBenchFleet,
		"api":    runBenchAPI,
		"parked": runBenchParked,
		"deploy": runBenchDeploy,
	}
}

// runBench dispatches `metalflow bench <name>`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	benches := benchmarks()
	if len(args) == 0 {
		return usageError{errors.New("usage: metalflow bench fleet|api|parked|deploy|xdp [flags]")}
	}
	run, ok := benches[args[0]]
	if !ok {
		return usageError{fmt.Errorf("unknown benchmark %q (have: fleet, api, parked, deploy, xdp)", args[0])}
	}
	return run(ctx, args[1:], stdout, stderr)
}

// registerBenchLog is the in-process metalflow's log level: quiet, so that
// the table stands out.
func registerBenchLog(fs *flag.FlagSet, l *logFlags) {
	fs.StringVar(&l.level, "log-level", "error", "log level of the in-process metalflow: debug, info, warn, error")
}

func registerTemporalDB(fs *flag.FlagSet, db *string, sqlite string) {
	fs.StringVar(db, "temporal-db", "memory", "embedded Temporal's store: memory, "+sqlite+" or postgres://user:password@host:port/database (a new database <database>_<random> per run)")
}

// checkTemporalDB refuses a --temporal-db before anything starts.
func checkTemporalDB(db string) error {
	if err := bench.CheckTemporalDB(db); err != nil {
		return usageError{err}
	}
	return nil
}

func runBenchXDP(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench xdp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	packets := fs.Int("packets", 200000, "packets per round through BPF_PROG_TEST_RUN's repeat loop (5 rounds; a tenth as many single calls)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *packets < 1000 {
		return errors.New("bench xdp: --packets must be at least 1000")
	}
	return bench.RunXDP(ctx, bench.XDPConfig{Packets: *packets}, stdout)
}

func runBenchFleet(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		lf         logFlags
		cfg        bench.FleetConfig
		cpuProfile string
	)
	fs := flag.NewFlagSet("bench fleet", flag.ContinueOnError)
	fs.SetOutput(stderr)
	registerBenchLog(fs, &lf)
	fs.IntVar(&cfg.Servers, "servers", 10, "simulated servers to provision")
	fs.IntVar(&cfg.Concurrency, "concurrency", 100, "servers in flight at once: each is posted, racked and waited for before its caller takes the next")
	fs.DurationVar(&cfg.Timeout, "timeout", 15*time.Minute, "give up on servers not installed by then")
	fs.Float64Var(&cfg.SimSpeed, "sim-speed", 0, "simulated hardware speed-up over real delays (as metalflow dev --sim-speed); 0 takes every hardware delay away")
	registerTemporalDB(fs, &cfg.TemporalDB, "sqlite (a file in a temporary directory)")
	fs.StringVar(&cpuProfile, "cpu-profile", "", "write a CPU profile of the provisioning phase to this file")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case cfg.Servers < 1:
		return usageError{errors.New("--servers must be at least 1")}
	case cfg.Concurrency < 1:
		return usageError{errors.New("--concurrency must be at least 1")}
	case cfg.Timeout <= 0:
		return usageError{errors.New("--timeout must be positive")}
	case cfg.SimSpeed < 0:
		return usageError{errors.New("--sim-speed must be 0 (no delays) or positive")}
	}
	if err := checkTemporalDB(cfg.TemporalDB); err != nil {
		return err
	}
	var err error
	if cfg.Log, err = lf.logger(stderr); err != nil {
		return err
	}
	if cpuProfile != "" {
		profile, err := os.Create(cpuProfile)
		if err != nil {
			return usageError{fmt.Errorf("--cpu-profile: %w", err)}
		}
		defer profile.Close()
		cfg.CPUProfile = profile
	}
	return bench.RunFleet(ctx, cfg, stdout)
}

func runBenchAPI(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		lf  logFlags
		cfg bench.APIConfig
	)
	fs := flag.NewFlagSet("bench api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	registerBenchLog(fs, &lf)
	fs.IntVar(&cfg.Clients, "clients", 16, "concurrent clients, each one request at a time")
	fs.DurationVar(&cfg.Duration, "duration", 5*time.Second, "how long each route is loaded")
	fs.IntVar(&cfg.Servers, "servers", 100, "servers registered (parked waiting for racked) before the load, for the status reads")
	registerTemporalDB(fs, &cfg.TemporalDB, "sqlite")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case cfg.Clients < 1:
		return usageError{errors.New("--clients must be at least 1")}
	case cfg.Duration <= 0:
		return usageError{errors.New("--duration must be positive")}
	case cfg.Servers < 1:
		return usageError{errors.New("--servers must be at least 1: the status reads need a server")}
	}
	if err := checkTemporalDB(cfg.TemporalDB); err != nil {
		return err
	}
	var err error
	if cfg.Log, err = lf.logger(stderr); err != nil {
		return err
	}
	return bench.RunAPI(ctx, cfg, stdout)
}

func runBenchParked(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		lf            logFlags
		cfg           bench.ParkedConfig
		workerProcess bool
	)
	fs := flag.NewFlagSet("bench parked", flag.ContinueOnError)
	fs.SetOutput(stderr)
	registerBenchLog(fs, &lf)
	fs.IntVar(&cfg.Servers, "servers", 10000, "servers registered; each lifecycle parks waiting for racked")
	fs.BoolVar(&workerProcess, "worker-process", false, "run the lifecycle worker as a separate 'metalflow worker' process and report its memory apart")
	fs.StringVar(&cfg.WorkerBinary, "worker-binary", "", "metalflow binary for --worker-process (default: this one)")
	fs.IntVar(&cfg.PageSize, "page-size", 1000, "page size of the timed GET /api/v1/servers listing (1 to 1000)")
	fs.IntVar(&cfg.Concurrency, "concurrency", 32, "concurrent registrations")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Minute, "give up when the servers are not all parked by then")
	registerTemporalDB(fs, &cfg.TemporalDB, "sqlite")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case cfg.Servers < 1:
		return usageError{errors.New("--servers must be at least 1")}
	case cfg.PageSize < 1 || cfg.PageSize > 1000:
		return usageError{errors.New("--page-size must be 1 to 1000 (the API's limit)")}
	case cfg.Concurrency < 1:
		return usageError{errors.New("--concurrency must be at least 1")}
	case cfg.Timeout <= 0:
		return usageError{errors.New("--timeout must be positive")}
	case cfg.WorkerBinary != "" && !workerProcess:
		return usageError{errors.New("--worker-binary needs --worker-process")}
	}
	if err := checkTemporalDB(cfg.TemporalDB); err != nil {
		return err
	}
	var err error
	if cfg.Log, err = lf.logger(stderr); err != nil {
		return err
	}
	if workerProcess && cfg.WorkerBinary == "" {
		if cfg.WorkerBinary, err = os.Executable(); err != nil {
			return fmt.Errorf("find this binary for --worker-process: %w", err)
		}
	}
	cfg.WorkerOutput = stderr
	return bench.RunParked(ctx, cfg, stdout)
}

func runBenchDeploy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var (
		lf  logFlags
		cfg bench.DeployConfig
	)
	fs := flag.NewFlagSet("bench deploy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	registerBenchLog(fs, &lf)
	fs.StringVar(&cfg.Image, "image", "", "raw disk image to deploy (scripts/build-image.sh builds a small Debian one)")
	fs.StringVar(&cfg.AgentKernel, "agent-kernel", "", "deploy agent kernel (scripts/build-agent-initramfs.sh)")
	fs.StringVar(&cfg.AgentInitrd, "agent-initrd", "", "deploy agent initramfs (scripts/build-agent-initramfs.sh)")
	fs.BoolVar(&cfg.Legacy, "legacy", false, "boot the VM in legacy BIOS mode (SeaBIOS) instead of UEFI (OVMF)")
	fs.IntVar(&cfg.DiskBenchmarkMiB, "disk-benchmark-mib", 512, "MiB of plain sequential writes the agent makes to the same disk first: the limit the image write is compared with")
	fs.StringVar(&cfg.Accel, "qemu-accel", "auto", "the VM's accelerator: auto (KVM if it works, else TCG), kvm or tcg")
	fs.IntVar(&cfg.CPUs, "qemu-cpus", 2, "the VM's vCPUs (under TCG each is a host thread: the agent hashes on one while it receives and writes on another)")
	fs.IntVar(&cfg.MemoryMiB, "qemu-memory", 1024, "the VM's memory, in MiB")
	fs.DurationVar(&cfg.Timeout, "timeout", 20*time.Minute, "give up when the server is not installed by then")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := cfg.Check(); err != nil {
		return usageError{err}
	}
	var err error
	if cfg.Log, err = lf.logger(stderr); err != nil {
		return err
	}
	return bench.RunDeploy(ctx, cfg, stdout)
}
