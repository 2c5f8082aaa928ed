//go:build !agent

package main

import (
	"context"
	"flag"
	"io"
	"log/slog"

	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/internal/stack"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
)

// roleFlags are the flags every production role (api, worker) shares:
// logging, Temporal, the inventory database and what the provisioning
// activities need. Both roles must agree on them to share one CMDB and one
// credential key.
type roleFlags struct {
	log          logFlags
	temporal     temporalFlags
	inventoryURL string
	layoutFile   string
	provisioning provisioningFlags
}

func (r *roleFlags) register(fs *flag.FlagSet) {
	r.log.register(fs)
	r.temporal.register(fs)
	fs.StringVar(&r.inventoryURL, "inventory-db", "metalflow.db", "inventory database: postgres://… or a SQLite file path")
	fs.StringVar(&r.layoutFile, "layout", "", "YAML file of sites and racks to load into the inventory at start")
	r.provisioning.register(fs, "credentials.key", false)
}

// roleEnv is what a role opened from its flags; close it when done.
type roleEnv struct {
	log      *slog.Logger
	inv      *inventory.Store
	vault    *credentials.Vault
	profiles *profiles.Catalog
}

func (r *roleFlags) open(ctx context.Context, stderr io.Writer) (*roleEnv, error) {
	log, err := r.log.logger(stderr)
	if err != nil {
		return nil, err
	}
	if err := r.provisioning.parsePools(); err != nil {
		return nil, err
	}
	inv, err := stack.OpenInventory(ctx, log, r.inventoryURL, r.layoutFile)
	if err != nil {
		return nil, err
	}
	vault, err := stack.OpenVault(r.provisioning.credentialsKey, inv)
	if err != nil {
		_ = inv.Close()
		return nil, err
	}
	catalog, err := stack.OpenProfiles(r.provisioning.profilesDir)
	if err != nil {
		_ = inv.Close()
		return nil, err
	}
	return &roleEnv{log: log, inv: inv, vault: vault, profiles: catalog}, nil
}

func (e *roleEnv) close() { _ = e.inv.Close() }
