package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/metalflow/metalflow/lbnode"
)

// XDPConfig is `metalflow bench xdp`.
type XDPConfig struct {
	// Packets is how many packets each round sends through
	// BPF_PROG_TEST_RUN's repeat loop (5 rounds; a tenth as many single
	// calls).
	Packets int
}

// RunXDP measures the data plane's per-packet cost against an XDP_PASS
// program in the same run, and Maglev's build time and disruption, and
// writes a table whose last line is machine-readable.
func RunXDP(ctx context.Context, cfg XDPConfig, out io.Writer) error {
	if os.Geteuid() != 0 {
		return errors.New("bench xdp: must run as root: it loads XDP programs")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	m, err := lbnode.Measure(cfg.Packets)
	if err != nil {
		return fmt.Errorf("bench xdp: %w", err)
	}
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
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
	_, err = fmt.Fprintln(out, m.ResultLine())
	return err
}
