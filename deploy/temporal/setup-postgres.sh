#!/bin/sh
# Creates Temporal's databases in PostgreSQL and migrates them to the schema
# of the admin-tools image's Temporal version. Safe to run again: an existing
# database is kept and only migrated forward.
set -eu
: "${POSTGRES_SEEDS:?}" "${POSTGRES_USER:?}" "${SQL_PASSWORD:?}"
port="${DB_PORT:-5432}"
schema=/etc/temporal/schema/postgresql/v12

nc -z -w 10 "$POSTGRES_SEEDS" "$port"
sqltool() {
  temporal-sql-tool --plugin postgres12 --ep "$POSTGRES_SEEDS" -u "$POSTGRES_USER" -p "$port" "$@"
}
for db in temporal temporal_visibility; do
  dir=temporal
  [ "$db" = temporal_visibility ] && dir=visibility
  sqltool --db "$db" create || echo "database $db exists"
  sqltool --db "$db" setup-schema -v 0.0 || echo "schema of $db already set up"
  sqltool --db "$db" update-schema -d "$schema/$dir/versioned"
done
# metalflow's inventory: only the database; metalflow runs its own migrations.
sqltool --db metalflow create || echo "database metalflow exists"
echo "temporal schema ready"
