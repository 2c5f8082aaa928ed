//go:build !agent

package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/metalflow/metalflow/client"
)

// runTokens is `metalflow tokens ...` (admin): API tokens for people and
// tools.
func runTokens(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runNoun(ctx, "tokens", map[string]verb{
		"create": {"issue a token (--role); its secret is printed once", tokensCreate},
		"list":   {"every token's details (never the secret)", tokensList},
	}, args, stdout, stderr, cliEnvFromOS())
}

func tokensCreate(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	var req client.NewToken
	fs := newFlagSet("tokens create", out, &r)
	fs.StringVar(&req.Role, "role", "", "viewer, technician, operator, approver or admin")
	fs.StringVar(&req.User, "user", "", "who the token acts as (default: its name)")
	fs.StringVar(&req.Project, "project", "", "tenant project the token is limited to")
	pos, err := parseArgs(fs, args, 1, 1, "metalflow tokens create NAME --role ROLE [--user U] [--project P]")
	if err != nil {
		return err
	}
	if req.Role == "" {
		return usageError{errors.New("--role is required")}
	}
	req.Name = pos[0]
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.CreateToken(ctx, req)
	if err != nil {
		return err
	}
	if r.output == "json" {
		return printJSON(out.stdout, a.Raw)
	}
	// The one place a secret is printed: the operator asked for it, and
	// the API keeps only its hash.
	fmt.Fprintf(out.stdout, "%s\n", a.Value.Token)
	fmt.Fprintf(out.stderr, "token %s (%s, role %s): store it now, it is not shown again\n", a.Value.Details.ID, a.Value.Details.Name, a.Value.Details.Role)
	return nil
}

func tokensList(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	fs := newFlagSet("tokens list", out, &r)
	if _, err := parseArgs(fs, args, 0, 0, "metalflow tokens list [-o json]"); err != nil {
		return err
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	a, err := c.Tokens(ctx)
	if err != nil {
		return err
	}
	if r.output == "json" {
		return printJSON(out.stdout, a.Raw)
	}
	t := newTable(out.stdout, "ID", "NAME", "USER", "ROLE", "PROJECT", "CREATED", "REVOKED")
	for _, tk := range a.Value.Tokens {
		revoked := ""
		if tk.RevokedAt != nil {
			revoked = tk.RevokedAt.UTC().Format("2006-01-02 15:04")
		}
		t.row(tk.ID, tk.Name, tk.User, tk.Role, tk.Project, tk.CreatedAt.UTC().Format("2006-01-02 15:04"), revoked)
	}
	return t.flush()
}
