package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/metalflow/metalflow/api/boot/agent"
	"github.com/metalflow/metalflow/api/boot/agentapi"
)

// runAgent is the deploy agent in the agent initramfs. Its configuration
// is the kernel command line (metalflow.url, metalflow.token), since the
// netbooting server has nothing else; the flags are for running it by hand.
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cmdline := fs.String("cmdline", "/proc/cmdline", "kernel command line to read "+agentapi.ParamURL+" and "+agentapi.ParamToken+" from")
	baseURL := fs.String("url", "", "boot service base URL (overrides "+agentapi.ParamURL+")")
	token := fs.String("token", "", "install attempt token (overrides "+agentapi.ParamToken+")")
	if err := fs.Parse(args); err != nil {
		return usageError{err}
	}
	b, err := os.ReadFile(*cmdline)
	if err != nil && (*baseURL == "" || *token == "") {
		return err
	}
	params := kernelParams(string(b))
	cfg := agent.Config{
		URL:    firstNonEmpty(*baseURL, params[agentapi.ParamURL]),
		Token:  firstNonEmpty(*token, params[agentapi.ParamToken]),
		Logger: slog.New(slog.NewTextHandler(stderr, nil)),
	}
	if cfg.URL == "" || cfg.Token == "" {
		return usageError{fmt.Errorf("need %s and %s on the kernel command line (or --url and --token)", agentapi.ParamURL, agentapi.ParamToken)}
	}
	if params[paramCPUProfile] == "" {
		return agent.Run(ctx, cfg)
	}
	// The console is the only way out of the initramfs but the boot
	// service, so the profile goes there, one base64 line after the run.
	var prof bytes.Buffer
	cfg.CPUProfile = &prof
	err = agent.Run(ctx, cfg)
	fmt.Fprintf(stderr, "%s %s\n", paramCPUProfile, base64.StdEncoding.EncodeToString(prof.Bytes()))
	return err
}

// paramCPUProfile on the kernel command line (metalflow.cpuprofile=1) has
// the agent print a CPU profile of its run on the console: decode the
// line's second word with base64 -d and read it with go tool pprof.
const paramCPUProfile = "metalflow.cpuprofile"

// kernelParams reads key=value words of a kernel command line. Values with
// spaces are quoted there ("a b"); the agent's own never are.
func kernelParams(cmdline string) map[string]string {
	params := map[string]string{}
	for _, word := range strings.Fields(cmdline) {
		if key, value, ok := strings.Cut(word, "="); ok {
			params[key] = strings.Trim(value, `"`)
		}
	}
	return params
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
