package bench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/bmcsim"
	"github.com/metalflow/metalflow/client"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/internal/stack"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workers"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// site is the site every benchmark racks its servers in.
const site = "bench"

// rackUnits is how many 1U servers a bench rack holds: 42U racks
// with the top two units left for switches, as in a real rack.
const rackUnits = 40

// stackOptions describe one in-process metalflow for a benchmark.
type stackOptions struct {
	// Servers sizes the bench site: enough racks for this many servers.
	Servers int
	// SimServers is how many simulated BMCs to start (0: none).
	SimServers int
	// SimSpeed divides real hardware delays; 0 means no delays at all, so
	// that what is measured is metalflow, not the simulated hardware.
	SimSpeed float64
	// TemporalDB is memory, sqlite or a postgres:// URL.
	TemporalDB string
	// ExternalWorker leaves the lifecycle worker to another process, which
	// dials Stack.TemporalAddress and shares InventoryURL and CredentialsKey.
	ExternalWorker bool
	Log            *slog.Logger
	// tune changes the stack's configuration last, for a benchmark that
	// needs more than these options (a real VM, a boot service).
	tune func(*stack.Config)
}

// harness is the metalflow a benchmark runs against, with the API's rate
// limits off and an admin token issued directly, and the client the
// benchmark calls it with.
type harness struct {
	*stack.Stack
	API *client.Client
}

// CheckTemporalDB refuses a --temporal-db the stack cannot run on.
func CheckTemporalDB(db string) error {
	switch {
	case db == stack.TemporalInMemory, db == stack.TemporalSQLite:
		return nil
	case strings.HasPrefix(db, "postgres://"), strings.HasPrefix(db, "postgresql://"):
		u, err := url.Parse(db)
		if err != nil || u.Host == "" || strings.Trim(u.Path, "/") == "" {
			return errors.New("--temporal-db: want postgres://user:password@host:port/database")
		}
		return nil
	}
	return fmt.Errorf("--temporal-db %q: want memory, sqlite or postgres://user:password@host:port/database", db)
}

// startStack brings the stack up; on error nothing is left running.
func startStack(ctx context.Context, o stackOptions) (*harness, error) {
	if err := CheckTemporalDB(o.TemporalDB); err != nil {
		return nil, err
	}
	cfg := stack.Config{
		Log:      o.Log,
		Temporal: stack.TemporalConfig{Store: o.TemporalDB, LogLevel: slog.LevelError},
		Layouts:  []inventory.Layout{layout(o.Servers)},
		API: stack.APIConfig{
			// The benchmark is one client address making thousands of
			// calls; a per-address limit would measure the limiter.
			RateLimit: 0,
			Token:     &auth.IssueInput{Name: "bench", User: "bench", Role: auth.Admin, By: "metalflow bench"},
		},
	}
	if strings.HasPrefix(o.TemporalDB, "postgres") {
		fresh, err := freshDatabase(o.TemporalDB)
		if err != nil {
			return nil, err
		}
		cfg.Temporal.Store = fresh
		o.Log.Info("bench Temporal database", "url", redactURL(fresh))
	}
	if !o.ExternalWorker {
		cfg.Worker = &workers.LifecycleDependencies{
			Dial: hardware.Dial, InsecureBMCTLS: true,
			VIPPools: vipapi.Pools{
				Internal: netip.MustParsePrefix("10.255.0.0/24"),
				Public:   netip.MustParsePrefix("198.51.100.0/24"),
			},
		}
	}
	if o.SimServers > 0 {
		cfg.Fleet = &stack.FleetConfig{Servers: o.SimServers, Vendor: bmcsim.VendorMixed, Speed: o.SimSpeed, NoDelays: o.SimSpeed == 0}
	}
	if o.tune != nil {
		o.tune(&cfg)
	}
	// Temporal that is not ready within a minute will not be.
	startCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	st, err := stack.Start(startCtx, cfg)
	if err != nil {
		return nil, err
	}
	api, err := newAPIClient(st.APIURL, st.Token)
	if err != nil {
		_ = st.Close()
		return nil, err
	}
	return &harness{Stack: st, API: api}, nil
}

// freshDatabase names a database of its own for this run after the URL's,
// so that no earlier run's lifecycles (same serials) are in the way.
func freshDatabase(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return "", err
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return "", err
	}
	u.Path = "/" + strings.Trim(u.Path, "/") + "_" + hex.EncodeToString(suffix)
	return u.String(), nil
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "?"
	}
	return u.Redacted()
}

// layout is site bench with enough racks for servers.
func layout(servers int) inventory.Layout {
	l := inventory.Layout{Sites: []inventory.Site{{Name: site, Description: "metalflow bench"}}}
	for i := range (max(servers, 1) + rackUnits - 1) / rackUnits {
		l.Racks = append(l.Racks, inventory.Rack{Site: site, Room: "A", Name: rackName(i), HeightU: 42})
	}
	return l
}

func rackName(i int) string { return fmt.Sprintf("R%04d", i+1) }

// location is where the i-th server of a benchmark is racked.
func location(i int) (rack string, unit int) {
	return rackName(i / rackUnits), i%rackUnits + 1
}
