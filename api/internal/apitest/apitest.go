// Package apitest is what the API's tests share: a real inventory, real
// tokens, and requests recorded for checking against the contract.
package apitest

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
)

// JSON is the content type of request bodies.
const JSON = "application/json"

// Inventory is an empty SQLite inventory, closed when the test ends.
func Inventory(t testing.TB) *inventory.Store {
	t.Helper()
	inv, err := inventory.Open(context.Background(), inventory.DialectSQLite, filepath.Join(t.TempDir(), "inv.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = inv.Close() })
	return inv
}

// Token creates a real token in inv.
func Token(t testing.TB, inv *inventory.Store, role auth.Role, project string) string {
	t.Helper()
	plain, _, err := (&auth.Tokens{Store: inv}).Issue(context.Background(), auth.IssueInput{
		Name: "test-" + string(role), Role: role, Project: project, By: "test",
	})
	require.NoError(t, err)
	return plain
}

// WithToken sends token with every request that carries none.
func WithToken(h http.Handler, token string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" {
			r.Header.Set("Authorization", "Bearer "+token)
		}
		h.ServeHTTP(w, r)
	})
}

// Echo is a bare Echo that answers errors as the API does, for mounting
// one domain's routes.
func Echo() *echo.Echo {
	e := echo.New()
	e.HTTPErrorHandler = httpx.ErrorHandler(slog.New(slog.DiscardHandler))
	return e
}

// Exchange is one request to the API and its answer.
type Exchange struct {
	Req     *http.Request
	ReqBody []byte
	Status  int
	Header  http.Header
	Body    []byte
}

// Call sends one request to h.
func Call(t testing.TB, h http.Handler, method, target, contentType, body string) Exchange {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, rd)
	if contentType != "" {
		req.Header.Set(echo.HeaderContentType, contentType)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	// A fresh request for the checks: the handler consumed the body.
	check := httptest.NewRequest(method, target, nil)
	check.Header = req.Header.Clone()
	return Exchange{Req: check, ReqBody: []byte(body), Status: rec.Code, Header: rec.Header(), Body: rec.Body.Bytes()}
}
