// Package access decides who may call what: it authenticates tokens and
// session cookies, checks the caller's role on every protected route,
// audits every change, and serves what an administrator manages (tokens,
// the audit log) and what a client asks about itself (session, whoami).
package access

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
)

// Store is what access keeps in the inventory: token records and the
// audit log.
type Store interface {
	ListTokens(ctx context.Context) ([]inventory.Token, error)
	RevokeToken(ctx context.Context, id string) error
	RecordAudit(ctx context.Context, e inventory.AuditEntry) error
	AuditLog(ctx context.Context, limit int) ([]inventory.AuditEntry, error)
}

// Config wires access to the token system.
type Config struct {
	// Tokens authenticates callers; without it every protected route
	// answers 401 (fail closed).
	Tokens *auth.Tokens
	Store  Store
	Logger *slog.Logger
}

// Guard admits callers to routes by role.
type Guard struct {
	cfg Config
}

// New builds the guard.
func New(cfg Config) *Guard {
	return &Guard{cfg: cfg}
}

// Allow admits callers whose role allows need; project-bound tokens are
// refused.
func (g *Guard) Allow(need auth.Role) echo.MiddlewareFunc {
	return g.allow(need, false)
}

// AllowTenant is Allow that lets a project-bound token through too; the
// handler then shows only that project's servers.
func (g *Guard) AllowTenant(need auth.Role) echo.MiddlewareFunc {
	return g.allow(need, true)
}

// Register mounts the routes of sessions, tokens and the audit log.
func (g *Guard) Register(v1 *echo.Group) {
	// Signing in is open, but slow to guess at: a few tries a second.
	v1.POST("/session", g.createSession, middleware.RateLimiterWithConfig(middleware.RateLimiterConfig{
		Store: middleware.NewRateLimiterMemoryStoreWithConfig(middleware.RateLimiterMemoryStoreConfig{Rate: 2, Burst: 10}),
	}))
	v1.DELETE("/session", g.deleteSession)
	v1.GET("/whoami", g.whoami, g.AllowTenant(auth.Viewer))
	admin := g.Allow(auth.Admin)
	v1.POST("/tokens", g.createToken, admin)
	v1.GET("/tokens", g.listTokens, admin)
	v1.DELETE("/tokens/:id", g.revokeToken, admin)
	v1.GET("/audit", g.auditLog, admin)
}

// allow authenticates the caller and checks its role. A missing or bad
// token is 401, a role too low 403; every mutating call, allowed or
// refused, lands in the audit log with its outcome.
func (g *Guard) allow(need auth.Role, tenant bool) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p, err := g.authenticate(c)
			if err == nil && !p.Role.Allows(need) {
				err = httpx.Errorf(http.StatusForbidden, "role %s may not do this: it needs %s", p.Role, need)
			}
			if err == nil && p.Tenant() && !tenant {
				err = httpx.Errorf(http.StatusForbidden, "a token of project %s sees only that project's servers", p.Project)
			}
			if err == nil {
				httpx.SetCaller(c, p)
				err = next(c)
			}
			g.audit(c, p, err)
			return err
		}
	}
}

func (g *Guard) authenticate(c echo.Context) (auth.Principal, error) {
	if g.cfg.Tokens == nil {
		// Fail closed: a misconfigured API must not serve everyone.
		return auth.Principal{}, httpx.Errorf(http.StatusUnauthorized, "authentication is not configured on this API")
	}
	header := c.Request().Header.Get(echo.HeaderAuthorization)
	if header == "" {
		tok, err := sessionToken(c)
		if err != nil {
			return auth.Principal{}, err
		}
		if tok == "" {
			return auth.Principal{}, httpx.Errorf(http.StatusUnauthorized, "missing token: send Authorization: Bearer <token>")
		}
		header = "Bearer " + tok
	}
	p, err := g.cfg.Tokens.Authenticate(c.Request().Context(), header)
	if auth.IsUnauthenticated(err) {
		return auth.Principal{}, httpx.Errorf(http.StatusUnauthorized, "%s", err)
	}
	return p, err
}

// audit records a mutating call. The log must not fail the request it
// describes: a failure to write it is logged instead.
func (g *Guard) audit(c echo.Context, p auth.Principal, err error) {
	switch c.Request().Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return
	}
	status := c.Response().Status
	if err != nil {
		status = http.StatusInternalServerError
		if he, ok := err.(*echo.HTTPError); ok {
			status = he.Code
		}
	}
	user, role := p.User, string(p.Role)
	if user == "" {
		user, role = "-", "-"
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(c.Request().Context()), 5*time.Second)
	defer cancel()
	if aerr := g.cfg.Store.RecordAudit(ctx, inventory.AuditEntry{
		User: user, Role: role, Method: c.Request().Method, Path: c.Request().URL.Path, Status: status,
	}); aerr != nil {
		g.cfg.Logger.Error("audit log write failed", "user", user, "path", c.Request().URL.Path, "error", aerr)
	}
}
