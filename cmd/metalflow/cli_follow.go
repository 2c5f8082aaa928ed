//go:build !agent

package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/metalflow/metalflow/client"
)

// stepProgress remembers what was last printed of each step, so following
// a lifecycle prints each start and finish once.
type stepProgress struct {
	seen map[string]string
}

// report writes the steps whose status changed since the last call.
func (p *stepProgress) report(w io.Writer, steps []client.Step) {
	if p.seen == nil {
		p.seen = map[string]string{}
	}
	for _, st := range steps {
		if p.seen[st.Name] == st.Status || st.Status == "pending" {
			continue
		}
		p.seen[st.Name] = st.Status
		switch st.Status {
		case "running":
			fmt.Fprintf(w, "  %-24s started\n", st.Name)
		case "waiting":
			fmt.Fprintf(w, "  %-24s waiting\n", st.Name)
		case "done":
			fmt.Fprintf(w, "  %-24s done%s\n", st.Name, took(st))
		case "skipped":
			fmt.Fprintf(w, "  %-24s skipped %s\n", st.Name, st.Note)
		case "failed":
			fmt.Fprintf(w, "  %-24s failed: %s\n", st.Name, st.Error)
		default:
			fmt.Fprintf(w, "  %-24s %s\n", st.Name, st.Status)
		}
	}
}

func took(st client.Step) string {
	if st.StartedAt == nil || st.FinishedAt == nil {
		return ""
	}
	return " in " + st.FinishedAt.Sub(*st.StartedAt).Round(100*time.Millisecond).String()
}

// followServer polls a server, printing step progress to stdout, until it
// is installed/ready (success), waits for racking when untilRack (success,
// with the next command), needs attention (error, with the commands that answer it) or
// ended otherwise (error). Transient API errors are retried: a lifecycle
// outlives a restart of the API.
func followServer(ctx context.Context, c *client.Client, serial string, every time.Duration, out cliOut, output string, untilRack bool) error {
	var p stepProgress
	// With -o json, stdout carries only the final answer, so a script can
	// parse it; progress goes to stderr.
	progress := out.progress(output)
	fails := 0
	for {
		a, err := c.Server(ctx, serial)
		switch {
		case err == nil:
			fails = 0
			s := a.Value
			p.report(progress, s.Steps)
			switch s.State {
			case "installed", "ready":
				fmt.Fprintf(progress, "%s: %s\n", serial, s.State)
				if output == "json" {
					return printJSON(out.stdout, a.Raw)
				}
				return nil
			case "waiting-rack":
				// A server registered with its location passes through
				// waiting-rack on its own; only one without waits for a
				// technician.
				if untilRack {
					fmt.Fprintf(progress, "%s: waiting to be racked; when it is in the rack run:\n  metalflow servers racked %s --site S --rack R --unit N --wait\n", serial, serial)
					return nil
				}
			case "attention":
				fmt.Fprintf(progress, "%s: needs attention\n", serial)
				if s.Attention != nil {
					fmt.Fprintf(progress, "  %s failed: %s\n  answer with one of:\n", s.Attention.Step, s.Attention.Error)
					for _, h := range attentionAnswers(serial, *s.Attention) {
						fmt.Fprintf(progress, "    %s\n", h)
					}
				}
				return fmt.Errorf("%s needs attention", serial)
			case "failed", "aborted", "cancelled", "decommissioned":
				return fmt.Errorf("%s ended %s", serial, s.State)
			}
		case client.StatusOf(err) != 0 && client.StatusOf(err) < 500:
			return err
		default:
			fails++
			if fails >= 10 {
				return fmt.Errorf("following %s: %w", serial, err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}
