package access

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/auth"
)

// The operator page signs in once with a token and then rides on cookies:
// the token in an HttpOnly cookie page scripts cannot read, and a CSRF
// token (double submit) that every state-changing request must echo in a
// header, which another site's form cannot do.
const (
	sessionCookie = "mf_session"
	csrfCookie    = "mf_csrf"
	csrfHeader    = "X-CSRF-Token"
	sessionMaxAge = 12 * time.Hour
)

type sessionRequest struct {
	Token string `json:"token"`
}

type sessionResponse struct {
	auth.Principal
	// CSRF is the value to send in X-CSRF-Token with every change.
	CSRF string `json:"csrf"`
}

// createSession signs the operator page in with a token.
func (g *Guard) createSession(c echo.Context) error {
	var req sessionRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	if req.Token == "" {
		return httpx.Errorf(http.StatusBadRequest, "token is required")
	}
	if g.cfg.Tokens == nil {
		return httpx.Errorf(http.StatusUnauthorized, "authentication is not configured on this API")
	}
	p, err := g.cfg.Tokens.Authenticate(c.Request().Context(), "Bearer "+req.Token)
	if auth.IsUnauthenticated(err) {
		return httpx.Errorf(http.StatusUnauthorized, "%s", err)
	}
	if err != nil {
		return err
	}
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return err
	}
	csrf := hex.EncodeToString(b)
	secure := c.Request().TLS != nil
	c.SetCookie(&http.Cookie{Name: sessionCookie, Value: req.Token, Path: "/", HttpOnly: true, Secure: secure,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionMaxAge.Seconds())})
	c.SetCookie(&http.Cookie{Name: csrfCookie, Value: csrf, Path: "/", Secure: secure,
		SameSite: http.SameSiteStrictMode, MaxAge: int(sessionMaxAge.Seconds())})
	return c.JSON(http.StatusOK, sessionResponse{Principal: p, CSRF: csrf})
}

// deleteSession signs the page out.
func (g *Guard) deleteSession(c echo.Context) error {
	for _, name := range []string{sessionCookie, csrfCookie} {
		c.SetCookie(&http.Cookie{Name: name, Value: "", Path: "/", MaxAge: -1, SameSite: http.SameSiteStrictMode})
	}
	return c.NoContent(http.StatusNoContent)
}

// sessionToken returns the token of a cookie session, checking the CSRF
// header on anything that changes state. "" means no session cookie.
func sessionToken(c echo.Context) (string, error) {
	ck, err := c.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return "", nil
	}
	switch c.Request().Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return ck.Value, nil
	}
	want, err := c.Cookie(csrfCookie)
	got := c.Request().Header.Get(csrfHeader)
	if err != nil || want.Value == "" || subtle.ConstantTimeCompare([]byte(want.Value), []byte(got)) != 1 {
		return "", httpx.Errorf(http.StatusForbidden, "missing or wrong %s header: a signed-in page must send it with every change", csrfHeader)
	}
	return ck.Value, nil
}
