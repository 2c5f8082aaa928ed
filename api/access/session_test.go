package access

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/auth"
)

// signIn posts a token to /api/v1/session and returns the cookies set.
func signIn(t *testing.T, h http.Handler, token string) (int, []*http.Cookie, string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/session", strings.NewReader(`{"token":"`+token+`"}`))
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Result().Cookies(), rec.Body.String()
}

func withCookies(req *http.Request, cookies []*http.Cookie) *http.Request {
	for _, c := range cookies {
		req.AddCookie(c)
	}
	return req
}

func TestSessionCookiesNeedCSRFForChanges(t *testing.T) {
	h, inv := newAccessAPI(t)
	admin := apitest.Token(t, inv, auth.Admin, "")

	code, cookies, body := signIn(t, h, admin)
	require.Equal(t, http.StatusOK, code, body)
	byName := map[string]*http.Cookie{}
	for _, c := range cookies {
		byName[c.Name] = c
	}
	require.True(t, byName[sessionCookie].HttpOnly, "page scripts must not read the session token")
	require.Equal(t, http.SameSiteStrictMode, byName[sessionCookie].SameSite)
	require.False(t, byName[csrfCookie].HttpOnly, "the page reads the CSRF token to echo it")
	require.Contains(t, body, `"csrf":"`+byName[csrfCookie].Value+`"`)

	// Reads ride on the cookie alone.
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, withCookies(httptest.NewRequest(http.MethodGet, "/api/v1/whoami", nil), cookies))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), `"role":"admin"`)

	// A change without the CSRF header (what a foreign form would send) is
	// refused and creates nothing; with it, it goes through.
	post := func(csrf string) *httptest.ResponseRecorder {
		req := withCookies(httptest.NewRequest(http.MethodPost, "/api/v1/tokens", strings.NewReader(`{"name":"bob","role":"viewer"}`)), cookies)
		req.Header.Set("Content-Type", "application/json")
		if csrf != "" {
			req.Header.Set(csrfHeader, csrf)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return rec
	}
	require.Equal(t, http.StatusForbidden, post("").Code)
	require.Equal(t, http.StatusForbidden, post("not-the-token").Code)
	list, err := inv.ListTokens(t.Context())
	require.NoError(t, err)
	require.Len(t, list, 1, "refused changes created nothing")
	require.Equal(t, http.StatusCreated, post(byName[csrfCookie].Value).Code)

	// Signing out clears both cookies.
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/api/v1/session", nil))
	require.Equal(t, http.StatusNoContent, rec.Code)
	for _, c := range rec.Result().Cookies() {
		require.Negative(t, c.MaxAge, c.Name)
	}
}

func TestSessionRefusesBadTokensAndIsRateLimited(t *testing.T) {
	h, _ := newAccessAPI(t)
	code, cookies, _ := signIn(t, h, "mft_000000000000_00")
	require.Equal(t, http.StatusUnauthorized, code)
	require.Empty(t, cookies)
	limited := false
	for range 40 {
		if code, _, _ := signIn(t, h, "mft_000000000000_00"); code == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	require.True(t, limited, "guessing tokens at full speed must hit the rate limit")
}
