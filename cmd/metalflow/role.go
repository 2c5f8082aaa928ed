//go:build !agent

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	temporalclient "go.temporal.io/sdk/client"

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
	data         dataFlags
	inventoryURL string
	layoutFile   string
	provisioning provisioningFlags
}

func (r *roleFlags) register(fs *flag.FlagSet) {
	r.log.register(fs)
	r.temporal.register(fs)
	r.data.register(fs)
	fs.StringVar(&r.inventoryURL, "inventory-db", "", "inventory database: postgres://… or a SQLite file path (default: metalflow.db in --data)")
	fs.StringVar(&r.layoutFile, "layout", "", "YAML file of sites and racks to load into the inventory at start")
	r.provisioning.register(fs, "", false)
}

// roleEnv is what a role opened from its flags; close it when done.
type roleEnv struct {
	log *slog.Logger
	// where names the inventory for people (see stack.InventoryWhere).
	where    string
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
	if r.inventoryURL == "" {
		if r.inventoryURL, err = r.data.file("metalflow.db"); err != nil {
			return nil, err
		}
	}
	if r.provisioning.credentialsKey == "" {
		if r.provisioning.credentialsKey, err = r.data.file("credentials.key"); err != nil {
			return nil, err
		}
	}
	inv, err := stack.OpenInventory(ctx, log, r.inventoryURL, r.layoutFile)
	if err != nil {
		return nil, err
	}
	vault, err := stack.OpenVault(ctx, r.provisioning.credentialsKey, inv)
	if err != nil {
		_ = inv.Close()
		return nil, err
	}
	catalog, err := stack.OpenProfiles(r.provisioning.profilesDir)
	if err != nil {
		_ = inv.Close()
		return nil, err
	}
	return &roleEnv{log: log, where: stack.InventoryWhere(r.inventoryURL), inv: inv, vault: vault, profiles: catalog}, nil
}

// checkBinding refuses to run on an inventory other than the one the
// namespace's workflows act on (see stack.Binding); wait bounds how long
// an absent Temporal may hold the start back.
func (e *roleEnv) checkBinding(ctx context.Context, c temporalclient.Client, namespace string, wait time.Duration) error {
	b := stack.Binding{Namespace: namespace, Inventory: e.inv, Where: e.where, Wait: wait}
	return b.Check(ctx, e.log, c.WorkflowService())
}

// dataFlags name the directory a role keeps its files in unless told
// otherwise file by file: the same one metalflow dev uses, so that a
// worker or API started beside dev finds dev's inventory and key.
type dataFlags struct {
	dir string
}

func (d *dataFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&d.dir, "data", ".metalflow", "directory of the files not named apart: the inventory (metalflow.db), the credential key (credentials.key), uploaded images (images/); metalflow dev's --data")
}

// file is name in the data directory, which is created if missing.
func (d *dataFlags) file(name string) (string, error) {
	if d.dir == "" {
		return "", usageError{errors.New("--data is empty: name a directory, or every file apart (--inventory-db, --credentials-key, --images-dir)")}
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return "", fmt.Errorf("--data: %w", err)
	}
	return filepath.Join(d.dir, name), nil
}

func (e *roleEnv) close() { _ = e.inv.Close() }
