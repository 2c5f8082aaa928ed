package access

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
)

type createTokenRequest struct {
	Name string `json:"name"`
	// User defaults to the name: a token per person is the usual case.
	User string `json:"user,omitempty"`
	Role string `json:"role"`
	// Project binds the token to one cloud project's servers (viewer only).
	Project string `json:"project,omitempty"`
}

type createTokenResponse struct {
	// Token is shown once; only its hash is stored.
	Token   string          `json:"token"`
	Details inventory.Token `json:"details"`
}

type tokenList struct {
	Tokens []inventory.Token `json:"tokens"`
}

func (g *Guard) createToken(c echo.Context) error {
	var req createTokenRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	in := auth.IssueInput{Name: req.Name, User: req.User, Role: auth.Role(req.Role), Project: req.Project, By: httpx.Actor(c)}
	if err := in.Validate(); err != nil {
		return httpx.Errorf(http.StatusUnprocessableEntity, "%s", err)
	}
	plain, rec, err := g.cfg.Tokens.Issue(c.Request().Context(), in)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusCreated, createTokenResponse{Token: plain, Details: rec})
}

func (g *Guard) listTokens(c echo.Context) error {
	list, err := g.cfg.Store.ListTokens(c.Request().Context())
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, tokenList{Tokens: list})
}

func (g *Guard) revokeToken(c echo.Context) error {
	id := c.Param("id")
	if id == "" || len(id) > 64 {
		return httpx.Errorf(http.StatusBadRequest, "invalid token id")
	}
	if err := g.cfg.Store.RevokeToken(c.Request().Context(), id); err != nil {
		if errors.Is(err, inventory.ErrNotFound) {
			return httpx.Errorf(http.StatusNotFound, "no token %s", id)
		}
		return err
	}
	return c.NoContent(http.StatusNoContent)
}

// whoami tells a client (the operator page, the CLI) who its token says it is.
func (g *Guard) whoami(c echo.Context) error {
	return c.JSON(http.StatusOK, httpx.Caller(c))
}

type auditList struct {
	Entries []inventory.AuditEntry `json:"entries"`
}

func (g *Guard) auditLog(c echo.Context) error {
	list, err := g.cfg.Store.AuditLog(c.Request().Context(), 500)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, auditList{Entries: list})
}
