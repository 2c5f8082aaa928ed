package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/internal/testpg"
)

// openChildEnv names the file a child test process opens.
const openChildEnv = "METALFLOW_INVENTORY_OPEN_CHILD"

// One PostgreSQL server for the package: initdb costs seconds.
var (
	pg    *testpg.Server
	pgErr error
)

func TestMain(m *testing.M) {
	if os.Getenv(openChildEnv) != "" {
		// A child of TestProcessesOpeningOneNewFileTogetherAllSucceed
		// needs no PostgreSQL.
		os.Exit(m.Run())
	}
	pg, pgErr = testpg.Start()
	code := m.Run()
	if pg != nil {
		pg.Stop()
	}
	os.Exit(code)
}

// forEachDialect runs a test against SQLite and a real PostgreSQL: the same
// migrations and queries must behave the same on both.
func forEachDialect(t *testing.T, fn func(t *testing.T, s *Store)) {
	t.Run("sqlite", func(t *testing.T) {
		s, err := Open(context.Background(), DialectSQLite, filepath.Join(t.TempDir(), "inventory.db"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		fn(t, s)
	})
	t.Run("postgres", func(t *testing.T) {
		if pg == nil {
			t.Skipf("skipping PostgreSQL case: %v", pgErr)
		}
		s, err := Open(context.Background(), DialectPostgres, pg.NewDatabase(t))
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		fn(t, s)
	})
}

func seed(t *testing.T, s *Store) {
	t.Helper()
	ctx := context.Background()
	require.NoError(t, s.EnsureSite(ctx, Site{Name: "dc1"}))
	require.NoError(t, s.CreateRack(ctx, Rack{Site: "dc1", Room: "A", Name: "R01", HeightU: 42}))
	require.NoError(t, s.CreateRack(ctx, Rack{Site: "dc1", Room: "A", Name: "R02", HeightU: 42}))
}

func TestMigrationsAreIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "inventory.db")
	ctx := context.Background()
	s, err := Open(ctx, DialectSQLite, path)
	require.NoError(t, err)
	seed(t, s)
	require.NoError(t, s.Close())
	s, err = Open(ctx, DialectSQLite, path)
	require.NoError(t, err, "reopening must not re-run migrations")
	defer s.Close()
	racks, err := s.ListRacks(ctx, "dc1")
	require.NoError(t, err)
	require.Len(t, racks, 2)
}

// The API and the worker of a production install are two processes opening
// one SQLite file at the same moment; each must wait for the other's
// migration, not fail. The test binary opens the store in child processes
// (SQLite's locks between connections of one process are not file locks).
func TestProcessesOpeningOneNewFileTogetherAllSucceed(t *testing.T) {
	if path := os.Getenv(openChildEnv); path != "" {
		s, err := Open(context.Background(), DialectSQLite, path)
		if err == nil {
			err = s.Close()
		}
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	for round := range 10 {
		path := filepath.Join(t.TempDir(), "inventory.db")
		var wg sync.WaitGroup
		outs := make([][]byte, 4)
		errs := make([]error, len(outs))
		for i := range outs {
			wg.Go(func() {
				cmd := exec.Command(os.Args[0], "-test.run=^TestProcessesOpeningOneNewFileTogetherAllSucceed$", "-test.count=1")
				cmd.Env = append(os.Environ(), openChildEnv+"="+path)
				outs[i], errs[i] = cmd.CombinedOutput()
			})
		}
		wg.Wait()
		for i, err := range errs {
			require.NoError(t, err, "round %d, process %d: %s", round, i, outs[i])
		}
	}
}

func TestRacks(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		seed(t, s)
		// Seeding twice (every dev start) is fine; a conflicting rack is not.
		require.NoError(t, s.CreateRack(ctx, Rack{Site: "dc1", Room: "A", Name: "R01", HeightU: 42}))
		require.ErrorIs(t, s.CreateRack(ctx, Rack{Site: "dc1", Room: "B", Name: "R01", HeightU: 48}), ErrExists)
		require.ErrorIs(t, s.CreateRack(ctx, Rack{Site: "nowhere", Name: "R01", HeightU: 42}), ErrNotFound)
		require.ErrorIs(t, s.CreateRack(ctx, Rack{Site: "dc1", Name: "R99", HeightU: 0}), ErrInvalid)
		r, err := s.GetRack(ctx, "dc1", "R02")
		require.NoError(t, err)
		require.Equal(t, Rack{Site: "dc1", Room: "A", Name: "R02", HeightU: 42}, r)
		_, err = s.GetRack(ctx, "dc1", "R77")
		require.ErrorIs(t, err, ErrNotFound)
	})
}

func TestPlacement(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		seed(t, s)
		p := Placement{Site: "dc1", Room: "A", Rack: "R01", Unit: 10, Face: "front", HeightU: 2}
		require.NoError(t, s.PlaceAsset(ctx, "SN-A", p, "tech-1"))
		// Idempotent: a retried activity changes nothing.
		require.NoError(t, s.PlaceAsset(ctx, "SN-A", p, "tech-1"))
		occ, err := s.Occupancy(ctx, "dc1", "R01")
		require.NoError(t, err)
		require.Equal(t, []UnitOccupant{{10, "SN-A"}, {11, "SN-A"}}, occ)

		cases := []struct {
			name string
			p    Placement
			want error
			msg  string
		}{
			{"overlaps the top unit", Placement{Site: "dc1", Rack: "R01", Unit: 11, Face: "front"}, ErrOccupied, "unit 11 of rack dc1/R01 holds server SN-A"},
			{"2U reaching into it", Placement{Site: "dc1", Rack: "R01", Unit: 9, Face: "front", HeightU: 2}, ErrOccupied, "holds server SN-A"},
			{"above the rack", Placement{Site: "dc1", Rack: "R01", Unit: 43, Face: "front"}, ErrInvalid, "has units 1-42"},
			{"2U at the top unit", Placement{Site: "dc1", Rack: "R01", Unit: 42, Face: "front", HeightU: 2}, ErrInvalid, "outside rack"},
			{"unknown site", Placement{Site: "dc9", Rack: "R01", Unit: 1, Face: "front"}, ErrInvalid, `unknown site "dc9"`},
			{"unknown rack", Placement{Site: "dc1", Rack: "R55", Unit: 1, Face: "front"}, ErrInvalid, `unknown rack "R55"`},
			{"wrong room", Placement{Site: "dc1", Room: "B", Rack: "R01", Unit: 1, Face: "front"}, ErrInvalid, `is in room "A"`},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				require.ErrorIs(t, s.CheckPlacement(ctx, "SN-B", c.p), c.want)
				err := s.PlaceAsset(ctx, "SN-B", c.p, "tech-2")
				require.ErrorIs(t, err, c.want)
				require.Contains(t, err.Error(), c.msg)
			})
		}
		// Nothing above left a trace.
		_, err = s.GetAsset(ctx, "SN-B")
		require.ErrorIs(t, err, ErrNotFound)
		occ, err = s.Occupancy(ctx, "dc1", "R01")
		require.NoError(t, err)
		require.Len(t, occ, 2)

		// Moving frees the old units; releasing frees the new ones.
		moved := Placement{Site: "dc1", Room: "A", Rack: "R02", Unit: 1, Face: "rear", HeightU: 1}
		require.NoError(t, s.PlaceAsset(ctx, "SN-A", moved, "tech-1"))
		occ, err = s.Occupancy(ctx, "dc1", "R01")
		require.NoError(t, err)
		require.Empty(t, occ)
		require.NoError(t, s.ReleaseAsset(ctx, "SN-A", "operator", "aborted"))
		require.NoError(t, s.ReleaseAsset(ctx, "SN-A", "operator", "aborted"))
		occ, err = s.Occupancy(ctx, "dc1", "R02")
		require.NoError(t, err)
		require.Empty(t, occ)
		a, err := s.GetAsset(ctx, "SN-A")
		require.NoError(t, err)
		require.Nil(t, a.Placement)

		h, err := s.History(ctx, "SN-A")
		require.NoError(t, err)
		var actions []string
		for _, c := range h {
			actions = append(actions, c.Action)
		}
		require.Equal(t, []string{"racked", "racked", "unit released"}, actions)
		require.Contains(t, h[1].Detail, "moved from dc1/R01 U10")
		require.Equal(t, "operator", h[2].Actor)
	})
}

func TestConcurrentPlacementHasOneWinner(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		seed(t, s)
		const racers = 8
		var wg sync.WaitGroup
		errs := make([]error, racers)
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = s.PlaceAsset(ctx, "SN-RACE-"+string(rune('A'+i)), Placement{Site: "dc1", Rack: "R01", Unit: 20, Face: "front"}, "tech")
			}()
		}
		wg.Wait()
		won := 0
		for _, err := range errs {
			if err == nil {
				won++
				continue
			}
			require.True(t, errors.Is(err, ErrOccupied), "loser must see ErrOccupied, got %v", err)
		}
		require.Equal(t, 1, won)
		occ, err := s.Occupancy(ctx, "dc1", "R01")
		require.NoError(t, err)
		require.Len(t, occ, 1)
	})
}

func TestRegisterAssetIsIdempotentWithHistory(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		rec := AssetRecord{Serial: "SN-1", Vendor: "Dell Inc.", Model: "PowerEdge R650", BMCAddress: "https://127.0.0.1:8443",
			MACs: []string{"02:00:00:00:00:01"}, State: "registered"}
		changed, err := s.RegisterAsset(ctx, rec, "lifecycle")
		require.NoError(t, err)
		require.True(t, changed)
		changed, err = s.RegisterAsset(ctx, rec, "lifecycle")
		require.NoError(t, err)
		require.False(t, changed, "the same record twice is not a change")

		hw, _ := json.Marshal(map[string]any{"cpus": 2, "memoryGiB": 256})
		changed, err = s.RegisterAsset(ctx, AssetRecord{Serial: "SN-1", Hardware: hw, State: "inspected"}, "lifecycle")
		require.NoError(t, err)
		require.True(t, changed)
		require.NoError(t, s.SetState(ctx, "SN-1", "inspected", "lifecycle", ""))
		require.NoError(t, s.SetState(ctx, "SN-1", "installed", "lifecycle", "phoned home"))

		a, err := s.GetAsset(ctx, "SN-1")
		require.NoError(t, err)
		require.Equal(t, "Dell Inc.", a.Vendor, "empty fields keep what is there")
		require.Equal(t, "installed", a.State)
		require.JSONEq(t, string(hw), string(a.Hardware))
		require.Equal(t, []string{"02:00:00:00:00:01"}, a.MACs)

		h, err := s.History(ctx, "SN-1")
		require.NoError(t, err)
		require.Len(t, h, 3)
		require.Equal(t, "registered", h[0].Action)
		require.Equal(t, "updated", h[1].Action)
		require.Contains(t, h[1].Detail, `state "registered" → "inspected"`)
		require.Equal(t, "inspected → installed: phoned home", h[2].Detail)
		require.False(t, h[2].At.Before(h[0].At))

		_, err = s.RegisterAsset(ctx, AssetRecord{}, "x")
		require.ErrorIs(t, err, ErrInvalid)
		require.ErrorIs(t, s.SetState(ctx, "SN-NOPE", "x", "y", ""), ErrNotFound)
	})
}

func TestTenantIsRecordedOnceWithHistory(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		_, err := s.RegisterAsset(ctx, AssetRecord{Serial: "SN-T", State: "installed"}, "lifecycle")
		require.NoError(t, err)
		for range 2 {
			_, err = s.RegisterAsset(ctx, AssetRecord{Serial: "SN-T", Tenant: "proj-a"}, "lifecycle")
			require.NoError(t, err)
		}
		// A later record without a tenant keeps the assignment.
		_, err = s.RegisterAsset(ctx, AssetRecord{Serial: "SN-T", Vendor: "HPE"}, "lifecycle")
		require.NoError(t, err)
		a, err := s.GetAsset(ctx, "SN-T")
		require.NoError(t, err)
		require.Equal(t, "proj-a", a.Tenant)
		h, err := s.History(ctx, "SN-T")
		require.NoError(t, err)
		require.Len(t, h, 3, "registered, tenant once, vendor")
		require.Contains(t, h[1].Detail, `tenant "" → "proj-a"`)
	})
}
