//go:build !agent

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/metalflow/metalflow/client"
)

// runVIPs is `metalflow vips ...`: load-balanced addresses and their
// approvals.
func runVIPs(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runNoun(ctx, "vips", map[string]verb{
		"create":  {"ask for a VIP (--port, --backend/--server, --exposure); --wait follows the rollout", vipsCreate},
		"list":    {"every VIP with its state and approval", vipsList},
		"show":    {"one VIP: placement, backends, attention", vipsShow},
		"approve": {"let a public VIP go public (approver; not your own request)", vipsApprove},
		"reject":  {"refuse a public VIP (--reason)", vipsReject},
		"retry":   {"answer a VIP's attention: run the failed step again", vipsRetry},
		"abort":   {"answer a VIP's attention: end the rollout (--reason)", vipsAbort},
	}, args, stdout, stderr, cliEnvFromOS())
}

func vipsCreate(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var (
		r                 remoteFlags
		w                 waitFlags
		ports             stringList
		backends, servers stringList
		req               client.NewVIP
	)
	fs := newFlagSet("vips create", out, &r)
	w.register(fs)
	fs.StringVar(&req.Protocol, "protocol", "tcp", "tcp or udp")
	fs.Var(&ports, "port", "port the VIP answers on (repeatable)")
	fs.StringVar(&req.Exposure, "exposure", "internal", "internal or public (public waits for an approver)")
	fs.Var(&backends, "backend", "backend ADDRESS[:WEIGHT] (repeatable)")
	fs.Var(&servers, "server", "backend by server serial (repeatable)")
	fs.IntVar(&req.Clusters, "clusters", 0, "how many LB clusters to place the VIP on (0: the API's default)")
	pos, err := parseArgs(fs, args, 1, 1, "metalflow vips create NAME --port P (--backend ADDR | --server SERIAL)... [--exposure public] [--wait]")
	if err != nil {
		return err
	}
	req.Name = pos[0]
	for _, p := range ports {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return usageError{fmt.Errorf("--port %q: want 1 to 65535", p)}
		}
		req.Ports = append(req.Ports, n)
	}
	for _, b := range backends {
		be, err := parseBackend(b)
		if err != nil {
			return usageError{err}
		}
		req.Backends = append(req.Backends, be)
	}
	req.Servers = servers
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.CreateVIP(ctx, req)
	if err != nil {
		return err
	}
	if r.output == "json" && !w.wait {
		return printJSON(out.stdout, a.Raw)
	}
	fmt.Fprintf(out.progress(r.output), "%s: rollout started (workflow %s)\n", a.Value.Name, a.Value.WorkflowID)
	if !w.wait {
		return nil
	}
	return followVIP(ctx, c, a.Value.Name, w.every, out, r.output)
}

// parseBackend reads ADDRESS or ADDRESS:WEIGHT; an IPv6 address with a
// weight is written [ADDR]:WEIGHT.
func parseBackend(s string) (client.VIPBackend, error) {
	addr, weight := s, ""
	if strings.HasPrefix(s, "[") {
		end := strings.Index(s, "]")
		if end < 0 {
			return client.VIPBackend{}, fmt.Errorf("--backend %q: unclosed [", s)
		}
		addr, weight = s[1:end], strings.TrimPrefix(s[end+1:], ":")
	} else if strings.Count(s, ":") == 1 {
		addr, weight, _ = strings.Cut(s, ":")
	}
	b := client.VIPBackend{Address: addr}
	if weight != "" {
		n, err := strconv.Atoi(weight)
		if err != nil || n < 0 {
			return b, fmt.Errorf("--backend %q: weight must be a number 0 or more", s)
		}
		b.Weight = n
	}
	if addr == "" {
		return b, fmt.Errorf("--backend %q: no address", s)
	}
	return b, nil
}

// followVIP polls a VIP, printing each state change, until it is active,
// awaiting approval (success) or in attention (error).
func followVIP(ctx context.Context, c *client.Client, name string, every time.Duration, out cliOut, output string) error {
	progress := out.progress(output)
	last, fails := "", 0
	for {
		a, err := c.VIP(ctx, name, false)
		switch {
		case err == nil:
			fails = 0
			v := a.Value
			if v.State != last {
				fmt.Fprintf(progress, "  %s\n", v.State)
				last = v.State
			}
			switch v.State {
			case "active":
				fmt.Fprintf(progress, "%s: active at %s\n", name, v.Address)
				if output == "json" {
					return printJSON(out.stdout, a.Raw)
				}
				return nil
			case "awaiting-approval":
				fmt.Fprintf(progress, "%s: awaiting approval; an approver runs:\n  metalflow vips approve %s\n", name, name)
				if output == "json" {
					return printJSON(out.stdout, a.Raw)
				}
				return nil
			case "attention":
				fmt.Fprintf(progress, "%s: needs attention\n", name)
				if v.Attention != nil {
					fmt.Fprintf(progress, "  %s failed: %s\n", v.Attention.Step, v.Attention.Error)
				}
				fmt.Fprintf(progress, "  answer with one of:\n    metalflow vips retry %s\n    metalflow vips abort %s --reason '...'\n", name, name)
				return fmt.Errorf("VIP %s needs attention", name)
			case "rejected", "retired":
				return fmt.Errorf("VIP %s is %s", name, v.State)
			}
		case client.StatusOf(err) != 0 && client.StatusOf(err) < 500:
			return err
		default:
			fails++
			if fails >= 10 {
				return fmt.Errorf("following %s: %w", name, err)
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

func vipsList(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	fs := newFlagSet("vips list", out, &r)
	if _, err := parseArgs(fs, args, 0, 0, "metalflow vips list [-o json]"); err != nil {
		return err
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.VIPs(ctx)
	if err != nil {
		return err
	}
	if r.output == "json" {
		return printJSON(out.stdout, a.Raw)
	}
	t := newTable(out.stdout, "NAME", "ADDRESS", "EXPOSURE", "STATE", "REQUESTED BY", "APPROVED BY")
	for _, v := range a.Value.VIPs {
		state := v.State
		if v.AwaitingApproval {
			state += " (awaiting approval)"
		}
		t.row(v.Name, v.Address, v.Exposure, state, v.RequestedBy, v.ApprovedBy)
	}
	return t.flush()
}

func vipsShow(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	var counters bool
	fs := newFlagSet("vips show", out, &r)
	fs.BoolVar(&counters, "traffic", false, "ask every placed node for its traffic counters (-o json shows them)")
	pos, err := parseArgs(fs, args, 1, 1, "metalflow vips show NAME [--traffic] [-o json]")
	if err != nil {
		return err
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.VIP(ctx, pos[0], counters)
	if err != nil {
		return err
	}
	if r.output == "json" {
		return printJSON(out.stdout, a.Raw)
	}
	return renderVIP(out.stdout, a.Value)
}

func renderVIP(w io.Writer, v client.VIP) error {
	ports := make([]string, len(v.Ports))
	for i, p := range v.Ports {
		ports[i] = strconv.Itoa(p)
	}
	fmt.Fprintf(w, "Name:      %s\nState:     %s\nAddress:   %s\nExposure:  %s\nPorts:     %s/%s\n",
		v.Name, v.State, dash(v.Address), v.Exposure, dash(v.Protocol), dash(strings.Join(ports, ",")))
	if v.RequestedBy != "" {
		fmt.Fprintf(w, "Requested: %s\n", v.RequestedBy)
	}
	if v.ApprovedBy != "" {
		fmt.Fprintf(w, "Approved:  %s\n", v.ApprovedBy)
	}
	if v.AwaitingApproval {
		fmt.Fprintf(w, "Approval:  awaiting (metalflow vips approve %s)\n", v.Name)
	}
	if v.Attention != nil {
		fmt.Fprintf(w, "Attention: %s failed: %s\n", v.Attention.Step, v.Attention.Error)
	}
	for _, warn := range v.Warnings {
		fmt.Fprintf(w, "Warning:   %s\n", warn)
	}
	for _, p := range v.Placement {
		fmt.Fprintf(w, "Placement: %s\n", string(p))
	}
	fmt.Fprintln(w)
	t := newTable(w, "BACKEND", "WEIGHT", "STATE", "SERVER")
	for _, b := range v.Backends {
		t.row(b.Address, strconv.Itoa(b.Weight), b.State, b.Serial)
	}
	return t.flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func vipsApprove(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	fs := newFlagSet("vips approve", out, &r)
	pos, err := parseArgs(fs, args, 1, 1, "metalflow vips approve NAME")
	if err != nil {
		return err
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.ApproveVIP(ctx, pos[0])
	if err != nil {
		return err
	}
	if r.output == "json" {
		return printJSON(out.stdout, a.Raw)
	}
	fmt.Fprintf(out.stdout, "%s: approved (%s)\n", pos[0], a.Value.State)
	return nil
}

func vipsReject(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	var reason string
	fs := newFlagSet("vips reject", out, &r)
	fs.StringVar(&reason, "reason", "", "why the VIP may not go public")
	pos, err := parseArgs(fs, args, 1, 1, "metalflow vips reject NAME --reason TEXT")
	if err != nil {
		return err
	}
	if strings.TrimSpace(reason) == "" {
		return usageError{errors.New("--reason is required: say why the VIP may not go public")}
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.RejectVIP(ctx, pos[0], reason)
	if err != nil {
		return err
	}
	if r.output == "json" {
		return printJSON(out.stdout, a.Raw)
	}
	fmt.Fprintf(out.stdout, "%s: rejected (%s)\n", pos[0], a.Value.State)
	return nil
}

func vipsRetry(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	fs := newFlagSet("vips retry", out, &r)
	pos, err := parseArgs(fs, args, 1, 1, "metalflow vips retry NAME")
	if err != nil {
		return err
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.RetryVIP(ctx, pos[0])
	if err != nil {
		return err
	}
	if r.output == "json" {
		return printJSON(out.stdout, a.Raw)
	}
	fmt.Fprintf(out.stdout, "%s: retry of %s sent\n", pos[0], a.Value.Step)
	return nil
}

func vipsAbort(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	var reason string
	fs := newFlagSet("vips abort", out, &r)
	fs.StringVar(&reason, "reason", "", "why the rollout ends (kept in the audit log)")
	pos, err := parseArgs(fs, args, 1, 1, "metalflow vips abort NAME --reason TEXT")
	if err != nil {
		return err
	}
	if strings.TrimSpace(reason) == "" {
		return usageError{errors.New("--reason is required: say why the rollout ends")}
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.AbortVIP(ctx, pos[0], reason)
	if err != nil {
		return err
	}
	if r.output == "json" {
		return printJSON(out.stdout, a.Raw)
	}
	fmt.Fprintf(out.stdout, "%s: abort of %s sent\n", pos[0], a.Value.Step)
	return nil
}
