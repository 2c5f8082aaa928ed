// Command metalflow is every metalflow process role in one binary: `dev`
// runs the whole system in one process; `api` and `worker` are the roles
// production runs separately against an external Temporal.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand: it parses its own flags from args and runs
// until ctx is cancelled (SIGINT/SIGTERM) or its work is done.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() map[string]command {
	return map[string]command{
		"dev":     {"run everything in one process: embedded Temporal + Web UI, API, workers", runDev},
		"api":     {"run the REST API and operator UI against an external Temporal", runAPI},
		"worker":  {"run the lifecycle worker against an external Temporal", runWorker},
		"boot":    {"serve netbooting machines next to them: proxyDHCP (or full DHCP), TFTP of iPXE, the boot service's HTTP", runBoot},
		"probe":   {"GET a URL and fail unless it answers 2xx (container health checks)", runProbe},
		"agent":   {"deploy agent in the agent initramfs: inventory, plan, image to disk, seed (reads metalflow.url/token from the kernel command line)", runAgent},
		"lbnode":  {"run the XDP load balancer data plane on an interface as a Temporal worker on its own task queue (--temporal), or standalone from YAML (--config)", runLBNode},
		"decap":   {"install the IP-in-IP/GUE decapsulation program on a backend's interface", runDecap},
		"bench":   {"run a benchmark and print a table: bench fleet|api|parked|xdp", runBench},
		"bmcsim":  {"run a simulated fleet of Redfish BMCs (and the hosts behind them)", runBMCSim},
		"bmc":     {"talk to one BMC over Redfish: power, boot, bios, inventory, raid, media", runBMC},
		"servers": {"the fleet through the API: add, list, show, racked, retry, skip, abort", runServers},
		"racks":   {"racks through the API: show [SITE/RACK]", runRacks},
		"vips":    {"VIPs through the API: create, list, show, approve, reject, retry, abort", runVIPs},
		"tokens":  {"API tokens (admin): create, list", runTokens},
		"images":  {"the OS image catalog through the API: list, show, add, rm", runImages},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := cmds[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "metalflow: unknown command %q\n\n", args[0])
		usage(stderr, cmds)
		return 2
	}
	if err := cmd.run(ctx, args[1:], stdout, stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		var usageErr usageError
		if errors.As(err, &usageErr) {
			fmt.Fprintf(stderr, "metalflow %s: %v\n", args[0], err)
			return 2
		}
		fmt.Fprintf(stderr, "metalflow %s: %v\n", args[0], err)
		return 1
	}
	return 0
}

func usage(w io.Writer, cmds map[string]command) {
	fmt.Fprintln(w, "usage: metalflow <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-8s %s\n", n, cmds[n].summary)
	}
	fmt.Fprintln(w, "\nRun 'metalflow <command> -h' for its flags.")
}

// usageError marks bad flags or arguments (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// parseFlags parses a subcommand's flags, reporting errors as usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("unexpected arguments: %v", fs.Args())}
	}
	return nil
}
