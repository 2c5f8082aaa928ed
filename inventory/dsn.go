package inventory

import (
	"context"
	"strings"
)

// OpenURL opens the store named by one string, as flags give it:
// "postgres://…" (or "postgresql://…") for PostgreSQL, anything else is a
// SQLite file path (an optional "sqlite:" prefix is dropped).
func OpenURL(ctx context.Context, url string) (*Store, error) {
	if strings.HasPrefix(url, "postgres://") || strings.HasPrefix(url, "postgresql://") {
		return Open(ctx, DialectPostgres, url)
	}
	return Open(ctx, DialectSQLite, strings.TrimPrefix(url, "sqlite:"))
}
