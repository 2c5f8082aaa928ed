package devserver

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"strings"

	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/metrics"
	"go.temporal.io/server/common/persistence"
	"go.temporal.io/server/common/persistence/sql"
	"go.temporal.io/server/common/persistence/sql/sqlplugin"
	pgplugin "go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	"go.temporal.io/server/common/resolver"
	dbschemas "go.temporal.io/server/schema"
	pgschema "go.temporal.io/server/schema/postgresql/v12"
	sqliteschema "go.temporal.io/server/schema/sqlite"
)

// postgresStores are the two databases Temporal keeps in PostgreSQL: its
// own state in the URL's database, visibility in "<database>_visibility"
// (each schema has its own version table, so they cannot share one).
type postgresStores struct {
	main, visibility *config.SQL
}

// parsePostgresURL builds the SQL configs of postgres://user:pass@host:port/db;
// query parameters (sslmode=disable, say) become connection attributes.
func parsePostgresURL(raw string) (postgresStores, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" {
		return postgresStores{}, fmt.Errorf("devserver: PostgreSQL URL: want postgres://user:password@host:port/database")
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" || strings.Contains(db, "/") {
		return postgresStores{}, errors.New("devserver: PostgreSQL URL names no database")
	}
	host := u.Host
	if u.Port() == "" {
		host += ":5432"
	}
	password, _ := u.User.Password()
	attrs := map[string]string{}
	for k, v := range u.Query() {
		attrs[k] = v[len(v)-1]
	}
	conf := func(name string) *config.SQL {
		return &config.SQL{
			PluginName: pgplugin.PluginName, DatabaseName: name, ConnectAddr: host, ConnectProtocol: "tcp",
			User: u.User.Username(), Password: password, ConnectAttributes: attrs,
			MaxConns: 20, MaxIdleConns: 20,
		}
	}
	return postgresStores{main: conf(db), visibility: conf(db + "_visibility")}, nil
}

// preparePostgres creates both databases with their schemas when missing,
// and the namespace, as prepareSQLite does for a SQLite file; an existing
// schema is left as it is.
func preparePostgres(opts Options) (postgresStores, error) {
	stores, err := parsePostgresURL(opts.PostgresURL)
	if err != nil {
		return stores, err
	}
	for _, s := range []struct {
		conf    *config.SQL
		schema  string
		version string
	}{
		{stores.main, "postgresql/v12/temporal/schema.sql", pgschema.Version},
		{stores.visibility, "postgresql/v12/visibility/schema.sql", pgschema.VisibilityVersion},
	} {
		if err := setupPostgresSchema(s.conf, s.schema, s.version); err != nil {
			return stores, fmt.Errorf("devserver: PostgreSQL database %q: %w", s.conf.DatabaseName, err)
		}
	}
	// The namespace writer is generic SQL, whatever its package's name.
	ns, err := sqliteschema.NewNamespaceConfig(clusterName, opts.Namespace, false, opts.SearchAttributes)
	if err != nil {
		return stores, fmt.Errorf("devserver: namespace config: %w", err)
	}
	if err := sqliteschema.CreateNamespaces(stores.main, ns); err != nil {
		return stores, fmt.Errorf("devserver: create namespace %q: %w", opts.Namespace, err)
	}
	return stores, nil
}

func adminDB(conf *config.SQL) (sqlplugin.AdminDB, error) {
	return sql.NewSQLAdminDB(sqlplugin.DbKindUnknown, conf, resolver.NewNoopResolver(), log.NewNoopLogger(), metrics.NoopMetricsHandler)
}

// setupPostgresSchema loads the full current schema (what Temporal's
// versioned updates add up to) and records its version, which the server
// checks at start.
func setupPostgresSchema(conf *config.SQL, schemaFile, version string) error {
	server := *conf
	server.DatabaseName = "postgres"
	admin, err := adminDB(&server)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	err = admin.CreateDatabase(conf.DatabaseName)
	_ = admin.Close()
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		return fmt.Errorf("create: %w", err)
	}
	db, err := adminDB(conf)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = db.Close() }()
	if v, err := db.ReadSchemaVersion(conf.DatabaseName); err == nil && v != "" {
		return nil
	}
	raw, err := fs.ReadFile(dbschemas.Assets(), schemaFile)
	if err != nil {
		return err
	}
	stmts, err := persistence.LoadAndSplitQueryFromReaders([]io.Reader{bytes.NewReader(raw)})
	if err != nil {
		return fmt.Errorf("%s: %w", schemaFile, err)
	}
	if err := db.CreateSchemaVersionTables(); err != nil {
		return fmt.Errorf("schema version tables: %w", err)
	}
	for _, stmt := range stmts {
		if err := db.Exec(stmt); err != nil {
			return fmt.Errorf("schema statement %q: %w", stmt, err)
		}
	}
	return db.UpdateSchemaVersion(conf.DatabaseName, version, version)
}
