// Package inventory is metalflow's CMDB: sites, racks, which server sits in
// which rack unit, and every asset with its change history. SQLite backs it
// in `metalflow dev` (pure Go, no cgo), PostgreSQL in production; both run
// the same migrations.
package inventory

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // registers "pgx"
	"modernc.org/sqlite"               // registers "sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Dialects the store speaks.
const (
	DialectSQLite   = "sqlite"
	DialectPostgres = "postgres"
)

// Store is the inventory database.
type Store struct {
	db      *sql.DB
	dialect string
	now     func() time.Time
}

// Open connects and migrates. For SQLite, dsn is a file path (created if
// missing); for PostgreSQL, a connection URL.
func Open(ctx context.Context, dialect, dsn string) (*Store, error) {
	var (
		db  *sql.DB
		err error
	)
	switch dialect {
	case DialectSQLite:
		// WAL lets readers run beside the one writer; busy_timeout makes a
		// second writer wait instead of failing; foreign keys are off by
		// default in SQLite.
		db, err = sql.Open("sqlite", "file:"+dsn+"?_pragma=journal_mode(WAL)&_pragma=busy_timeout(10000)&_pragma=foreign_keys(1)&_txlock=immediate")
		if err == nil {
			// One writer at a time is all SQLite offers; a single connection
			// avoids lock upgrades failing between two of ours.
			db.SetMaxOpenConns(1)
		}
	case DialectPostgres:
		db, err = sql.Open("pgx", dsn)
	default:
		return nil, fmt.Errorf("inventory: unknown dialect %q (want %s or %s)", dialect, DialectSQLite, DialectPostgres)
	}
	if err != nil {
		return nil, fmt.Errorf("inventory: open %s: %w", dialect, err)
	}
	s := &Store{db: db, dialect: dialect, now: func() time.Time { return time.Now().UTC() }}
	if err := s.migrateWhenFree(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	if err := s.ensureIdentity(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return s, nil
}

// Close releases the database.
func (s *Store) Close() error { return s.db.Close() }

// Ping reports whether the database answers.
func (s *Store) Ping(ctx context.Context) error { return s.db.PingContext(ctx) }

// openBusyWait is how long Open waits for another process to let go of a
// SQLite file, the same as the connections' busy_timeout.
const openBusyWait = 10 * time.Second

// migrateWhenFree migrates, trying again while SQLite reports the file busy.
// The api and the worker of one install open the same file as they start;
// SQLite's busy_timeout covers statements but not the switch to WAL a new
// connection makes, which fails at once while the other process holds the
// lock. Migrations are idempotent transactions, so another try is safe.
func (s *Store) migrateWhenFree(ctx context.Context) error {
	deadline := time.Now().Add(openBusyWait)
	for {
		err := s.migrate(ctx)
		var e *sqlite.Error
		if err == nil || !errors.As(err, &e) || e.Code()&0xff != sqlite3.SQLITE_BUSY || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Store) migrate(ctx context.Context) error {
	// In a transaction, which SQLite begins IMMEDIATE: a bare statement
	// reads the schema first and then asks for the write lock, and SQLite
	// does not wait for a lock it could deadlock on.
	if err := s.inTx(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
			version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)`)
		return err
	}); err != nil {
		return fmt.Errorf("inventory: create schema_migrations: %w", err)
	}
	names, err := fs.Glob(migrations, "migrations/*.sql")
	if err != nil {
		return err
	}
	sort.Strings(names)
	for _, name := range names {
		version, err := strconv.Atoi(strings.SplitN(strings.TrimPrefix(name, "migrations/"), "_", 2)[0])
		if err != nil {
			return fmt.Errorf("inventory: migration %s has no version number", name)
		}
		if err := s.applyMigration(ctx, version, name); err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) applyMigration(ctx context.Context, version int, name string) error {
	return s.inTx(ctx, func(tx *sql.Tx) error {
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT COUNT(*) FROM schema_migrations WHERE version = $1`, version).Scan(&n); err != nil {
			return fmt.Errorf("inventory: read schema version: %w", err)
		}
		if n > 0 {
			return nil
		}
		body, err := migrations.ReadFile(name)
		if err != nil {
			return err
		}
		for _, stmt := range splitStatements(s.portable(string(body))) {
			if _, err := tx.ExecContext(ctx, stmt); err != nil {
				return fmt.Errorf("inventory: migration %s: %w\n%s", name, err, stmt)
			}
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)`, version, s.now())
		return err
	})
}

// portable fills in the few spellings SQLite and PostgreSQL disagree on.
func (s *Store) portable(sqlText string) string {
	autoID := "INTEGER PRIMARY KEY"
	if s.dialect == DialectPostgres {
		autoID = "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"
	}
	return strings.ReplaceAll(sqlText, "@AUTO_ID@", autoID)
}

// splitStatements splits a migration on semicolons that end a line; the
// migrations hold no procedural code, so that is enough.
func splitStatements(body string) []string {
	var out []string
	var cur strings.Builder
	for _, line := range strings.Split(body, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "--") || trimmed == "" {
			continue
		}
		cur.WriteString(line)
		cur.WriteString("\n")
		if strings.HasSuffix(trimmed, ";") {
			out = append(out, strings.TrimSuffix(strings.TrimSpace(cur.String()), ";"))
			cur.Reset()
		}
	}
	if rest := strings.TrimSpace(cur.String()); rest != "" {
		out = append(out, rest)
	}
	return out
}

func (s *Store) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("inventory: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("inventory: commit: %w", err)
	}
	return nil
}

// Errors callers branch on.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrOccupied = errors.New("rack unit occupied")
	ErrInvalid  = errors.New("invalid")
)
