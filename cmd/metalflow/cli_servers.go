//go:build !agent

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/metalflow/metalflow/client"
)

// runServers is `metalflow servers ...`: the fleet from a terminal.
func runServers(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runNoun(ctx, "servers", serverVerbs(), args, stdout, stderr, cliEnvFromOS())
}

func serverVerbs() map[string]verb {
	return map[string]verb{
		"add":    {"register a server and start its lifecycle (--wait to follow it)", serversAdd},
		"list":   {"the fleet: state, step, time in step and since start (--state, --rack)", serversList},
		"show":   {"one server: state, location, attention and its step timeline", serversShow},
		"racked": {"tell a waiting server where it was racked (--wait to follow it)", serversRacked},
		"retry":  {"answer an attention: run the failed step again", serversRetry},
		"skip":   {"answer an attention: go past the failed step", serversSkip},
		"abort":  {"answer an attention: end the lifecycle (--reason)", serversAbort},
	}
}

// locationFlags name a rack position.
type locationFlags struct {
	site, room, rack, face string
	unit                   int
}

func (l *locationFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.site, "site", "", "site of the rack")
	fs.StringVar(&l.room, "room", "", "room of the rack (optional)")
	fs.StringVar(&l.rack, "rack", "", "rack name")
	fs.IntVar(&l.unit, "unit", 0, "lowest rack unit the server occupies (1 = bottom)")
	fs.StringVar(&l.face, "face", "front", "front or rear")
}

// location is nil when no location flag is given.
func (l *locationFlags) location() *client.Location {
	if l.site == "" && l.rack == "" && l.unit == 0 && l.room == "" {
		return nil
	}
	return &client.Location{Site: l.site, Room: l.room, Rack: l.rack, Unit: l.unit, Face: l.face}
}

// waitFlags make a verb follow the workflow it started.
type waitFlags struct {
	wait  bool
	every time.Duration
}

func (w *waitFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&w.wait, "wait", false, "follow the lifecycle, printing each step, until it is done or needs a human")
	fs.DurationVar(&w.every, "poll", time.Second, "how often --wait asks the API")
}

// manifestEntry is one server of a fleet manifest (`metalflow bmcsim
// --manifest`, or one written by hand for a delivery).
type manifestEntry struct {
	Serial   string `json:"serial"`
	Address  string `json:"address"`
	Username string `json:"username"`
	Password string `json:"password"`
}

func serversAdd(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var (
		r                        remoteFlags
		loc                      locationFlags
		w                        waitFlags
		bmc, user, pwFile, manif string
		profile                  string
		pools                    stringList
	)
	fs := newFlagSet("servers add", out, &r)
	loc.register(fs)
	w.register(fs)
	fs.StringVar(&bmc, "bmc", "", "BMC address (host[:port] or https://...)")
	fs.StringVar(&user, "bmc-user", "", "BMC username")
	fs.StringVar(&pwFile, "bmc-password-file", "", "file holding the BMC password ('-' reads stdin); kept off the command line so it stays out of shell history")
	fs.StringVar(&manif, "manifest", "", "fleet manifest (JSON list of {serial,address,username,password}): take the BMC of SERIAL from it")
	fs.StringVar(&profile, "profile", "", "hardware profile (default: the API's)")
	fs.Var(&pools, "pool", "VIP whose backends this server joins once installed (repeatable)")
	pos, err := parseArgs(fs, args, 1, 1, "metalflow servers add SERIAL (--manifest FILE | --bmc ADDR --bmc-user U --bmc-password-file F) [--site S --rack R --unit N] [--wait]")
	if err != nil {
		return err
	}
	req := client.NewServer{Serial: pos[0], Profile: profile, Location: loc.location(), Pools: pools}
	switch {
	case manif != "":
		if bmc != "" || user != "" || pwFile != "" {
			return usageError{errors.New("--manifest and --bmc/--bmc-user/--bmc-password-file exclude each other")}
		}
		e, err := manifestBMC(manif, pos[0])
		if err != nil {
			return usageError{err}
		}
		req.BMC = &client.BMC{Address: e.Address, Username: e.Username, Password: e.Password}
	case bmc != "":
		if user == "" || pwFile == "" {
			return usageError{errors.New("--bmc needs --bmc-user and --bmc-password-file")}
		}
		pw, err := readSecret(pwFile)
		if err != nil {
			return usageError{err}
		}
		req.BMC = &client.BMC{Address: bmc, Username: user, Password: pw}
	default:
		return usageError{errors.New("the server's BMC is needed: --manifest FILE or --bmc ADDR --bmc-user U --bmc-password-file F")}
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.AddServer(ctx, req)
	if err != nil {
		return err
	}
	if r.output == "json" && !w.wait {
		return printJSON(out.stdout, a.Raw)
	}
	fmt.Fprintf(out.progress(r.output), "%s: lifecycle started (workflow %s)\n", a.Value.Serial, a.Value.WorkflowID)
	if !w.wait {
		return nil
	}
	return followServer(ctx, c, a.Value.Serial, w.every, out, r.output, req.Location == nil)
}

// manifestBMC finds serial's BMC in a fleet manifest.
func manifestBMC(path, serial string) (manifestEntry, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return manifestEntry{}, fmt.Errorf("manifest: %w", err)
	}
	var entries []manifestEntry
	if err := json.Unmarshal(raw, &entries); err != nil {
		return manifestEntry{}, fmt.Errorf("manifest %s: %w", path, err)
	}
	for _, e := range entries {
		if e.Serial == serial {
			return e, nil
		}
	}
	return manifestEntry{}, fmt.Errorf("manifest %s has no server %q", path, serial)
}

// readSecret reads a one-line secret from a file or stdin ("-").
func readSecret(path string) (string, error) {
	var raw []byte
	var err error
	if path == "-" {
		raw, err = io.ReadAll(io.LimitReader(os.Stdin, 4096))
	} else {
		raw, err = os.ReadFile(path)
	}
	if err != nil {
		return "", fmt.Errorf("password: %w", err)
	}
	pw := strings.TrimRight(string(raw), "\r\n")
	if pw == "" {
		return "", errors.New("password: empty")
	}
	return pw, nil
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func serversList(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	var f client.ServerFilter
	fs := newFlagSet("servers list", out, &r)
	fs.StringVar(&f.State, "state", "", "only servers in this state (e.g. attention)")
	fs.StringVar(&f.Rack, "rack", "", "only servers in this rack")
	if _, err := parseArgs(fs, args, 0, 0, "metalflow servers list [--state S] [--rack R] [-o json]"); err != nil {
		return err
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	var servers []client.ServerSummary
	page := ""
	for {
		a, err := c.ListServers(ctx, f, page)
		if err != nil {
			return err
		}
		if r.output == "json" {
			// One page is the API's answer; more pages would be several
			// documents, so -o json prints the first and says so.
			if a.Value.NextPageToken != "" {
				fmt.Fprintln(out.stderr, "more servers follow: narrow with --state/--rack")
			}
			return printJSON(out.stdout, a.Raw)
		}
		servers = append(servers, a.Value.Servers...)
		if a.Value.NextPageToken == "" {
			break
		}
		page = a.Value.NextPageToken
	}
	return renderServerList(out.stdout, servers, time.Now())
}

// renderServerList puts servers that need a human first: that is what the
// operator looks for.
func renderServerList(w io.Writer, servers []client.ServerSummary, now time.Time) error {
	t := newTable(w, "SERIAL", "STATE", "STEP", "IN STEP", "RACK", "AGE")
	for _, attention := range []bool{true, false} {
		for _, s := range servers {
			if (s.State == "attention") != attention {
				continue
			}
			age, inStep := "", ""
			if !s.StartedAt.IsZero() {
				age = ago(now.Sub(s.StartedAt))
			}
			if s.StepStartedAt != nil {
				inStep = ago(now.Sub(*s.StepStartedAt))
			}
			t.row(s.Serial, s.State, s.Step, inStep, s.Rack, age)
		}
	}
	return t.flush()
}

func serversShow(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	fs := newFlagSet("servers show", out, &r)
	pos, err := parseArgs(fs, args, 1, 1, "metalflow servers show SERIAL [-o json]")
	if err != nil {
		return err
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.Server(ctx, pos[0])
	if err != nil {
		return err
	}
	if r.output == "json" {
		return printJSON(out.stdout, a.Raw)
	}
	return renderServer(out.stdout, a.Value, time.Now())
}

func renderServer(w io.Writer, s client.Server, now time.Time) error {
	fmt.Fprintf(w, "Serial:    %s\nState:     %s\n", s.Serial, s.State)
	if s.Step != "" {
		if s.StepStartedAt != nil {
			fmt.Fprintf(w, "Step:      %s (for %s)\n", s.Step, ago(now.Sub(*s.StepStartedAt)))
		} else {
			fmt.Fprintf(w, "Step:      %s\n", s.Step)
		}
	}
	if s.Location != nil {
		fmt.Fprintf(w, "Location:  %s\n", formatLocation(*s.Location))
	}
	if len(s.Pools) > 0 {
		fmt.Fprintf(w, "Pools:     %s\n", strings.Join(s.Pools, ", "))
	}
	fmt.Fprintf(w, "Workflow:  %s\n", s.WorkflowID)
	if s.TemporalURL != "" {
		fmt.Fprintf(w, "Temporal:  %s\n", s.TemporalURL)
	}
	if s.Hardware != nil && len(s.Hardware.Warnings) > 0 {
		// What the BMC would not give: the inventory is partial there.
		fmt.Fprintf(w, "Inventory: %d part(s) the BMC would not give\n", len(s.Hardware.Warnings))
		for _, iw := range s.Hardware.Warnings {
			fmt.Fprintf(w, "  %s: %s\n", iw.Path, iw.Error)
		}
	}
	if s.Attention != nil {
		fmt.Fprintf(w, "Attention: %s failed: %s\n", s.Attention.Step, s.Attention.Error)
		for _, h := range attentionAnswers(s.Serial, *s.Attention) {
			fmt.Fprintf(w, "  %s\n", h)
		}
	}
	fmt.Fprintln(w)
	t := newTable(w, "STEP", "STATUS", "STARTED", "TOOK", "ERROR/NOTE")
	for _, st := range s.Steps {
		started, took := "", ""
		if st.StartedAt != nil {
			started = st.StartedAt.UTC().Format(time.TimeOnly)
			if st.FinishedAt != nil {
				took = st.FinishedAt.Sub(*st.StartedAt).Round(100 * time.Millisecond).String()
			}
		}
		note := st.Error
		if note == "" {
			note = st.Note
		}
		t.row(st.Name, st.Status, started, took, note)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if s.BIOS != nil {
		if err := renderBIOSReport(w, *s.BIOS); err != nil {
			return err
		}
	}
	if s.RAID != nil {
		return renderRAIDReport(w, *s.RAID)
	}
	return nil
}

// renderBIOSReport is the BIOS applied versus desired; the API has hidden
// password-like values already.
func renderBIOSReport(w io.Writer, r client.BIOSReport) error {
	fmt.Fprintln(w, "\nBIOS (applied vs desired):")
	t := newTable(w, "ATTRIBUTE", "DESIRED", "ACTUAL", "RESULT")
	for _, a := range r.Attributes {
		verdict, actual := "✓", a.Actual
		switch {
		case a.Missing:
			verdict, actual = "missing", "(none)"
		case !a.Match:
			verdict = "✗"
		}
		t.row(a.Name, a.Desired, actual, verdict)
	}
	return t.flush()
}

func renderRAIDReport(w io.Writer, r client.RAIDReport) error {
	head := "\nRAID (applied vs desired):"
	if r.Controller != "" {
		head = fmt.Sprintf("\nRAID on %s (applied vs desired):", r.Controller)
	}
	fmt.Fprintln(w, head)
	t := newTable(w, "VOLUME", "LEVEL", "SIZE", "DRIVES", "FOUND", "RESULT")
	for _, v := range r.Volumes {
		verdict := map[string]string{"match": "✓", "missing": "✗ missing", "unexpected": "✗ unexpected"}[v.Status]
		if verdict == "" {
			verdict = v.Status
		}
		shown, found := v.Desired, ""
		if shown == nil {
			shown = v.Actual
		}
		if v.Actual != nil {
			found = v.Actual.ID
			if found == "" {
				found = v.Actual.Name
			}
		}
		if shown == nil {
			t.row("", "", "", "", found, verdict)
			continue
		}
		name, drives := shown.Name, "any"
		if name == "" {
			name = shown.ID
		}
		if v.Actual != nil {
			drives = strings.Join(v.Actual.Drives, ",")
		} else if len(shown.Drives) > 0 {
			drives = strings.Join(shown.Drives, ",")
		}
		size := formatBytes(shown.SizeBytes)
		if v.Desired != nil && v.Desired.SizeBytes == 0 {
			size = "MAX"
		}
		t.row(name, shown.RAIDLevel, size, drives, found, verdict)
	}
	return t.flush()
}

// formatBytes is a size in decimal units, as drive labels give them.
func formatBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	v, suffix := float64(n), []string{"kB", "MB", "GB", "TB", "PB", "EB"}
	i := -1
	for v >= unit && i < len(suffix)-1 {
		v /= unit
		i++
	}
	return fmt.Sprintf("%.4g %s", v, suffix[i])
}

func formatLocation(l client.Location) string {
	where := l.Site
	if l.Room != "" {
		where += "/" + l.Room
	}
	return fmt.Sprintf("%s/%s U%d %s", where, l.Rack, l.Unit, l.Face)
}

// attentionAnswers are the commands that answer an attention.
func attentionAnswers(serial string, a client.Attention) []string {
	out := []string{"metalflow servers retry " + serial + "    # run " + a.Step + " again"}
	if a.Skippable {
		out = append(out, "metalflow servers skip "+serial+"     # go past "+a.Step)
	}
	out = append(out, "metalflow servers abort "+serial+" --reason '...'")
	return out
}

func serversRacked(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var (
		r   remoteFlags
		loc locationFlags
		w   waitFlags
	)
	fs := newFlagSet("servers racked", out, &r)
	loc.register(fs)
	w.register(fs)
	pos, err := parseArgs(fs, args, 1, 1, "metalflow servers racked SERIAL --site S --rack R --unit N [--face front|rear] [--wait]")
	if err != nil {
		return err
	}
	l := loc.location()
	if l == nil || l.Site == "" || l.Rack == "" || l.Unit < 1 {
		return usageError{errors.New("--site, --rack and --unit (1 or more) say where the server is")}
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.Racked(ctx, pos[0], *l)
	if err != nil {
		return err
	}
	if r.output == "json" && !w.wait {
		return printJSON(out.stdout, a.Raw)
	}
	fmt.Fprintf(out.progress(r.output), "%s: racked at %s\n", a.Value.Serial, formatLocation(a.Value.Location))
	if !w.wait {
		return nil
	}
	return followServer(ctx, c, pos[0], w.every, out, r.output, false)
}

// decide runs one of retry/skip/abort.
func decide(ctx context.Context, name string, args []string, out cliOut, env cliEnv,
	call func(ctx context.Context, c *client.Client, serial, reason string) (client.Answer[client.Decision], error)) error {
	var (
		r      remoteFlags
		w      waitFlags
		reason string
	)
	fs := newFlagSet("servers "+name, out, &r)
	w.register(fs)
	usage := "metalflow servers " + name + " SERIAL [--wait]"
	if name == "abort" {
		fs.StringVar(&reason, "reason", "", "why the lifecycle ends (kept in the audit log)")
		usage = "metalflow servers abort SERIAL --reason TEXT"
	}
	pos, err := parseArgs(fs, args, 1, 1, usage)
	if err != nil {
		return err
	}
	if name == "abort" && strings.TrimSpace(reason) == "" {
		return usageError{errors.New("--reason is required: say why the lifecycle ends")}
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := call(ctx, c, pos[0], reason)
	if err != nil {
		return err
	}
	if r.output == "json" && !w.wait {
		return printJSON(out.stdout, a.Raw)
	}
	fmt.Fprintf(out.progress(r.output), "%s: %s of %s sent\n", pos[0], name, a.Value.Step)
	if !w.wait || name == "abort" {
		return nil
	}
	return followServer(ctx, c, pos[0], w.every, out, r.output, false)
}

func serversRetry(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	return decide(ctx, "retry", args, out, env, func(ctx context.Context, c *client.Client, serial, _ string) (client.Answer[client.Decision], error) {
		return c.Retry(ctx, serial)
	})
}

func serversSkip(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	return decide(ctx, "skip", args, out, env, func(ctx context.Context, c *client.Client, serial, _ string) (client.Answer[client.Decision], error) {
		return c.Skip(ctx, serial)
	})
}

func serversAbort(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	return decide(ctx, "abort", args, out, env, func(ctx context.Context, c *client.Client, serial, reason string) (client.Answer[client.Decision], error) {
		return c.Abort(ctx, serial, reason)
	})
}
