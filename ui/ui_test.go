package ui

import (
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	require.NoError(t, err)
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(body)
}

func TestHandlerServesEmbeddedPage(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for path, want := range map[string]string{
		"/":           "<title>metalflow</title>",
		"/index.html": `<script src="app.js">`,
		"/app.js":     "/api/v1/servers",
		"/style.css":  "--accent",
	} {
		code, body := get(t, srv.URL+path)
		require.Equal(t, http.StatusOK, code, path)
		require.Contains(t, body, want, path)
	}
	code, _ := get(t, srv.URL+"/nope.js")
	require.Equal(t, http.StatusNotFound, code)
}

// Every page of the single-page app is drawn by app.js from the API; each
// must have its route and the API calls it depends on.
func TestEveryPageHasItsRouteAndAPI(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	_, js := get(t, srv.URL+"/app.js")
	_, html := get(t, srv.URL+"/")
	for _, want := range []string{
		`"/api/v1/session"`, `"/api/v1/whoami"`, `"X-CSRF-Token"`, "mf_csrf",
		`"/api/v1/servers"`, `"/racked"`, `"/asset"`, `"/decommission"`,
		`"/api/v1/racks"`, `"/api/v1/vips"`, `act("approve")`, `act("reject"`,
		"function fleetPage", "function racksPage", "function rackPage", "function serverPage",
		"function registerPage", "function vipsPage", "function vipPage", "function approvalsPage",
		"visibilitychange",
	} {
		if !strings.Contains(js, want) {
			t.Errorf("app.js lacks %s", want)
		}
	}
	for _, page := range []string{"fleet", "racks", "register", "vips", "approvals"} {
		require.Contains(t, html, `href="#/`+page+`"`)
	}
	require.Contains(t, html, `name="viewport"`)
}

// urlPattern finds absolute URLs; the page must load nothing from other
// hosts (no CDN: the binary serves everything).
var urlPattern = regexp.MustCompile(`(?i)https?://[^\s"'<>)]*`)

func TestNoExternalURLInAnyServedFile(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	sub, err := fs.Sub(static, "static")
	require.NoError(t, err)
	served := 0
	require.NoError(t, fs.WalkDir(sub, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		code, body := get(t, srv.URL+"/"+path)
		require.Equal(t, http.StatusOK, code, path)
		served++
		for _, u := range urlPattern.FindAllString(body, -1) {
			// A placeholder showing what a BMC address looks like is
			// text, not something the page loads; the pattern literal that
			// validates such addresses has no host at all.
			if strings.HasPrefix(u, "https://10.") {
				continue
			}
			t.Errorf("%s refers to another host: %s", path, u)
		}
		for _, attr := range []string{`src="//`, `href="//`, "url(//"} {
			require.NotContains(t, body, attr, path)
		}
		return nil
	}))
	require.GreaterOrEqual(t, served, 3)
}
