package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/metalflow/metalflow/lbnode"
)

// benchmarks are the `metalflow bench` subcommands.
func benchmarks() map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) error{
		"xdp":    runBenchXDP,
		"fleet":  runBenchFleet,
		"api":    runBenchAPI,
		"parked": runBenchParked,
	}
}

// runBench dispatches `metalflow bench <name>`.
func runBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	benches := benchmarks()
	if len(args) == 0 {
		return usageError{errors.New("usage: metalflow bench fleet|api|parked|xdp [flags]")}
	}
	run, ok := benches[args[0]]
	if !ok {
		return usageError{fmt.Errorf("unknown benchmark %q (have: fleet, api, parked, xdp)", args[0])}
	}
	return run(ctx, args[1:], stdout, stderr)
}

// runBenchXDP is `metalflow bench xdp`: the data plane's per-packet cost
// against an XDP_PASS program in the same run, and Maglev's build time and
// disruption. The last line is machine-readable.
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
	if os.Geteuid() != 0 {
		return errors.New("bench xdp: must run as root: it loads XDP programs")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m, err := lbnode.Measure(*packets)
	if err != nil {
		return fmt.Errorf("bench xdp: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "measure\tvalue\tnote")
	fmt.Fprintf(tw, "baseline\t%.1f ns/packet\tXDP_PASS program, kernel repeat loop\n", m.BaselineNs)
	fmt.Fprintf(tw, "balancer\t%.1f ns/packet\tIPv4 TCP to a VIP with 100 backends, encap + XDP_TX, repeat loop (errs high: undoes encap each run)\n", m.BalancerNs)
	fmt.Fprintf(tw, "ratio\t%.2f\tbalancer / baseline\n", m.Ratio)
	fmt.Fprintf(tw, "baseline per call\t%.1f ns/packet\tone packet per BPF_PROG_TEST_RUN call, kernel timer cost included\n", m.PerCallBaselineNs)
	fmt.Fprintf(tw, "balancer per call\t%.1f ns/packet\tsame, balancer\n", m.PerCallBalancerNs)
	fmt.Fprintf(tw, "ratio per call\t%.2f\tbalancer / baseline, per call\n", m.PerCallRatio)
	fmt.Fprintf(tw, "maglev build\t%.2f ms\t1,000 backends, 65537 slots\n", m.MaglevBuildMs)
	fmt.Fprintf(tw, "disruption\t%.3f %%\tslots moved when 1 of 100 backends leaves (ideal 1%%)\n", m.DisruptionPct)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintln(stdout, m.ResultLine())
	return err
}
