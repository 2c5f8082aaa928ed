package api

import (
	"context"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
)

// access is what a route demands of its caller.
type access struct {
	need auth.Role
	// tenant lets a project-bound token through; the handler then shows
	// only that project's servers.
	tenant bool
}

// allow authenticates the caller and checks its role. A missing or bad
// token is 401, a role too low 403; every mutating call, allowed or
// refused, lands in the audit log with its outcome.
func (s *Server) allow(a access) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			p, err := s.authenticate(c)
			if err == nil && !p.Role.Allows(a.need) {
				err = httpx.Errorf(http.StatusForbidden, "role %s may not do this: it needs %s", p.Role, a.need)
			}
			if err == nil && p.Tenant() && !a.tenant {
				err = httpx.Errorf(http.StatusForbidden, "a token of project %s sees only that project's servers", p.Project)
			}
			if err == nil {
				httpx.SetCaller(c, p)
				err = next(c)
			}
			s.audit(c, p, err)
			return err
		}
	}
}

func (s *Server) authenticate(c echo.Context) (auth.Principal, error) {
	if s.cfg.Tokens == nil {
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
	p, err := s.cfg.Tokens.Authenticate(c.Request().Context(), header)
	if auth.IsUnauthenticated(err) {
		return auth.Principal{}, httpx.Errorf(http.StatusUnauthorized, "%s", err)
	}
	return p, err
}

// audit records a mutating call. The log must not fail the request it
// describes: a failure to write it is logged instead.
func (s *Server) audit(c echo.Context, p auth.Principal, err error) {
	switch c.Request().Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return
	}
	if s.cfg.Inventory == nil {
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
	if aerr := s.cfg.Inventory.RecordAudit(ctx, inventory.AuditEntry{
		User: user, Role: role, Method: c.Request().Method, Path: c.Request().URL.Path, Status: status,
	}); aerr != nil {
		s.cfg.Logger.Error("audit log write failed", "user", user, "path", c.Request().URL.Path, "error", aerr)
	}
}
