//go:build !agent

package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/metalflow/metalflow/client"
)

// cliEnv is what a CLI command may learn from its environment; main fills
// it (only main reads env), tests fill it by hand.
type cliEnv struct {
	api, token      string // METALFLOW_API, METALFLOW_TOKEN
	xdgConfig, home string // XDG_CONFIG_HOME, HOME: where the config file lives
}

func cliEnvFromOS() cliEnv {
	return cliEnv{
		api: os.Getenv("METALFLOW_API"), token: os.Getenv("METALFLOW_TOKEN"),
		xdgConfig: os.Getenv("XDG_CONFIG_HOME"), home: os.Getenv("HOME"),
	}
}

// remoteFlags are every CLI command's way to the API and its output form.
type remoteFlags struct {
	api, token, config, output string
	timeout                    time.Duration
}

func (r *remoteFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&r.api, "api", "", "API base URL (else $METALFLOW_API, else the config file's api:)")
	fs.StringVar(&r.token, "token", "", "API token (else $METALFLOW_TOKEN, else the config file's token:)")
	fs.StringVar(&r.config, "config", "", "config file with api: and token: (default $XDG_CONFIG_HOME/metalflow/cli.yaml or ~/.config/metalflow/cli.yaml)")
	fs.StringVar(&r.output, "o", "table", "output: table or json (the API's answer as is)")
	fs.DurationVar(&r.timeout, "timeout", 30*time.Second, "timeout of each API call")
}

// cliConfig is the config file's shape.
type cliConfig struct {
	API   string `yaml:"api"`
	Token string `yaml:"token"`
}

// defaultConfigPath follows the XDG base directory convention.
func (e cliEnv) defaultConfigPath() string {
	if e.xdgConfig != "" {
		return filepath.Join(e.xdgConfig, "metalflow", "cli.yaml")
	}
	if e.home != "" {
		return filepath.Join(e.home, ".config", "metalflow", "cli.yaml")
	}
	return ""
}

// resolve picks the API and token: flag, then environment, then config
// file. A config file named by --config must exist; the default one may not.
func (r *remoteFlags) resolve(env cliEnv) (client.Config, error) {
	if r.output != "table" && r.output != "json" {
		return client.Config{}, usageError{fmt.Errorf("-o %q: want table or json", r.output)}
	}
	cfg := client.Config{API: r.api, Token: r.token, Timeout: r.timeout}
	if cfg.API == "" {
		cfg.API = env.api
	}
	if cfg.Token == "" {
		cfg.Token = env.token
	}
	if cfg.API != "" && cfg.Token != "" {
		return cfg, nil
	}
	path, explicit := r.config, r.config != ""
	if !explicit {
		path = env.defaultConfigPath()
	}
	if path == "" {
		return cfg, nil
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, os.ErrNotExist) {
			return cfg, nil
		}
		return cfg, usageError{fmt.Errorf("config file: %w", err)}
	}
	var file cliConfig
	if err := yaml.Unmarshal(raw, &file); err != nil {
		return cfg, usageError{fmt.Errorf("config file %s: %w", path, err)}
	}
	if cfg.API == "" {
		cfg.API = file.API
	}
	if cfg.Token == "" {
		cfg.Token = file.Token
	}
	return cfg, nil
}

// connect resolves the flags and builds the client.
func (r *remoteFlags) connect(env cliEnv) (*client.Client, error) {
	cfg, err := r.resolve(env)
	if err != nil {
		return nil, err
	}
	c, err := client.New(cfg)
	if err != nil {
		return nil, usageError{err}
	}
	return c, nil
}

// verb is one action of a CLI noun (servers add, vips show, ...).
type verb struct {
	summary string
	run     func(ctx context.Context, args []string, out cliOut, env cliEnv) error
}

// cliOut is where a verb writes: tables and results to stdout, progress
// and hints to stderr.
type cliOut struct {
	stdout, stderr io.Writer
}

// progress is where running commentary goes: stdout for people, stderr
// under -o json so stdout carries only the API's answer.
func (o cliOut) progress(output string) io.Writer {
	if output == "json" {
		return o.stderr
	}
	return o.stdout
}

// runNoun dispatches `metalflow <noun> <verb> ...`.
func runNoun(ctx context.Context, noun string, verbs map[string]verb, args []string, stdout, stderr io.Writer, env cliEnv) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		nounUsage(stderr, noun, verbs)
		if len(args) == 0 {
			return usageError{fmt.Errorf("missing action")}
		}
		return flag.ErrHelp
	}
	v, ok := verbs[args[0]]
	if !ok {
		nounUsage(stderr, noun, verbs)
		return usageError{fmt.Errorf("unknown action %q", args[0])}
	}
	return v.run(ctx, args[1:], cliOut{stdout: stdout, stderr: stderr}, env)
}

func nounUsage(w io.Writer, noun string, verbs map[string]verb) {
	fmt.Fprintf(w, "usage: metalflow %s <action> [flags] [args]\n\nactions:\n", noun)
	for _, n := range slices.Sorted(maps.Keys(verbs)) {
		fmt.Fprintf(w, "  %-8s %s\n", n, verbs[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'metalflow %s <action> -h' for its flags.\n", noun)
}

// parseArgs parses flags wherever they appear among the positional
// arguments (`servers show SN-1 -o json` as well as `-o json SN-1`), then
// checks the positional count is between min and max.
func parseArgs(fs *flag.FlagSet, args []string, minArgs, maxArgs int, usage string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, usageError{err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if rest[0] == "--" {
			pos = append(pos, rest[1:]...)
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	if len(pos) < minArgs || len(pos) > maxArgs {
		return nil, usageError{fmt.Errorf("usage: %s", usage)}
	}
	return pos, nil
}

// newFlagSet is a verb's flag set with the remote flags on it.
func newFlagSet(name string, out cliOut, r *remoteFlags) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out.stderr)
	r.register(fs)
	return fs
}

// printJSON writes the API's answer as it came, indented for reading.
func printJSON(w io.Writer, raw json.RawMessage) error {
	var buf strings.Builder
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		_, err := w.Write(raw)
		return err
	}
	if err := enc.Encode(v); err != nil {
		return err
	}
	_, err := io.WriteString(w, buf.String())
	return err
}

// table renders rows under a header with aligned columns.
type table struct {
	tw *tabwriter.Writer
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// ago is a duration in the operator's words: 3s, 4m12s, 2h5m, 3d4h.
func ago(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return d.String()
	case d < time.Hour:
		return fmt.Sprintf("%dm%02ds", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd%02dh", int(d.Hours())/24, int(d.Hours())%24)
	}
}
