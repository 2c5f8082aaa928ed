package integration

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"
)

// browser is a headless Debian chromium at tablet size, driven over CDP.
type browser struct {
	ctx       context.Context
	artifacts string
	base      string
}

func startBrowser(t *testing.T, base string) *browser {
	t.Helper()
	var path string
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		t.Skip("no chromium on PATH: install Debian's chromium (apt-get install chromium) to run the browser tests")
	}
	artifacts := os.Getenv("METALFLOW_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	} else {
		artifacts = filepath.Join(artifacts, t.Name())
		require.NoError(t, os.MkdirAll(artifacts, 0o755))
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests run as root
		chromedp.WindowSize(768, 1024),
		chromedp.Flag("headless", "new"),
	)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithLogf(t.Logf))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	require.NoError(t, chromedp.Run(ctx, chromedp.EmulateViewport(768, 1024)))
	return &browser{ctx: ctx, artifacts: artifacts, base: base}
}

// run does actions with a bound, so a missing element fails the test
// instead of hanging it.
func (b *browser) run(t *testing.T, what string, actions ...chromedp.Action) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 60*time.Second)
	defer cancel()
	require.NoError(t, chromedp.Run(ctx, actions...), what)
}

// waitFor polls a JavaScript expression until it is true.
func (b *browser) waitFor(t *testing.T, timeout time.Duration, what, expr string) {
	t.Helper()
	eventually(t, timeout, what, func() error {
		var ok bool
		ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
		defer cancel()
		if err := chromedp.Run(ctx, chromedp.Evaluate("!!("+expr+")", &ok)); err != nil {
			return err
		}
		if !ok {
			var body string
			_ = chromedp.Run(ctx, chromedp.Evaluate(`document.getElementById("view").innerText.slice(0, 400)`, &body))
			return fmt.Errorf("not yet; page shows: %q", body)
		}
		return nil
	})
}

func (b *browser) eval(t *testing.T, expr string, v any) {
	t.Helper()
	b.run(t, "evaluate "+expr, chromedp.Evaluate(expr, v))
}

func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	var png []byte
	b.run(t, "screenshot "+name, chromedp.FullScreenshot(&png, 100))
	path := filepath.Join(b.artifacts, name+".png")
	require.NoError(t, os.WriteFile(path, png, 0o644))
	t.Logf("screenshot: %s", path)
}

func (b *browser) open(t *testing.T, hash string) {
	t.Helper()
	b.run(t, "open "+hash, chromedp.Evaluate(`location.hash = `+jsString(hash), nil))
}

func jsString(s string) string { return fmt.Sprintf("%q", s) }

func (b *browser) signIn(t *testing.T, token, role string) {
	t.Helper()
	b.run(t, "sign in", chromedp.WaitVisible(`#signin input[name=token]`), chromedp.SendKeys(`#signin input[name=token]`, token),
		chromedp.Click(`#signin button[type=submit]`))
	b.waitFor(t, 20*time.Second, "signed in as "+role, `document.getElementById("whoami").dataset.role === `+jsString(role))
}

func (b *browser) signOut(t *testing.T) {
	t.Helper()
	b.run(t, "sign out", chromedp.Click(`#signout`))
	b.waitFor(t, 20*time.Second, "the sign-in page", `!document.getElementById("signin-page").hidden`)
}

// fill types into a form's fields, replacing what was there.
func (b *browser) fill(t *testing.T, form string, fields map[string]string) {
	t.Helper()
	for name, value := range fields {
		sel := form + ` [name=` + name + `]`
		// Cleared by script, then typed as a technician would.
		b.run(t, "fill "+name, chromedp.WaitVisible(sel),
			chromedp.Evaluate(`document.querySelector(`+jsString(sel)+`).value = ""`, nil),
			chromedp.SendKeys(sel, value))
	}
}

func createToken(t *testing.T, api, name, role string) string {
	t.Helper()
	r := do(t, http.MethodPost, api+"/api/v1/tokens", fmt.Sprintf(`{"name":%q,"role":%q}`, name, role))
	require.Equal(t, http.StatusCreated, r.code, string(r.body))
	var tok struct {
		Token string `json:"token"`
	}
	r.json(t, &tok)
	return tok.Token
}

// TestBrowserOperatorPage clicks through the operator page in a real
// chromium at tablet width: sign in, register and rack a server through the
// forms, watch it install, answer an attention, and see what a viewer and
// the approvals queue show.
func TestBrowserOperatorPage(t *testing.T) {
	dir := t.TempDir()
	// A BIOS attribute no simulated BMC has: the server stops at
	// ConfigureBIOS in a skippable attention.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nobios.yaml"), []byte(
		"name: nobios\nrole: compute\nbios: {\"*\": {NoSuchAttribute: \"On\"}}\n"+
			"raid: {logical_disks: [{size_gb: MAX, raid_level: \"1\", is_root_volume: true}]}\n"), 0o644))
	f := startFleet(t, 3, "--profiles", dir)
	u, err := url.Parse(f.api)
	require.NoError(t, err)
	page := "http://" + u.Host + "/"
	b := startBrowser(t, page)

	b.run(t, "open the page", chromedp.Navigate(page))
	b.waitFor(t, 20*time.Second, "the sign-in form", `getComputedStyle(document.getElementById("signin-page")).display !== "none"`)
	var signOutShown bool
	b.eval(t, `document.getElementById("signout").checkVisibility()`, &signOutShown)
	require.False(t, signOutShown, "no sign-out button before signing in")
	b.screenshot(t, "01-signin")
	b.signIn(t, f.token, "admin")
	b.waitFor(t, 20*time.Second, "the fleet page", `document.getElementById("fleet-empty") && !document.getElementById("fleet-empty").hidden`)
	// A mark that survives only as long as the page is not reloaded: every
	// later check of progress happens on this same document.
	b.eval(t, `window.__sameDocument = true`, nil)

	// Register the first simulated server through the form, without a
	// location: it waits for a technician.
	first := f.fleet[0]
	b.open(t, "#/register")
	b.run(t, "register form", chromedp.WaitVisible(`#register`))
	b.fill(t, "#register", map[string]string{"serial": "bad serial"})
	b.run(t, "submit bad serial", chromedp.Click(`#register button[type=submit]`))
	b.waitFor(t, 10*time.Second, "inline serial error", `document.querySelector('#register .field-error[data-for=serial]').textContent.includes("letters, digits")`)
	b.fill(t, "#register", map[string]string{"serial": first.Serial, "address": first.Address, "username": first.Username, "password": first.Password})
	b.screenshot(t, "02-register")
	b.run(t, "submit register", chromedp.Click(`#register button[type=submit]`))
	b.waitFor(t, 20*time.Second, "registered", `document.getElementById("registered-link")`)
	// The API's own refusal shows inline too: the serial is taken now.
	b.run(t, "submit again", chromedp.Click(`#register button[type=submit]`))
	b.waitFor(t, 20*time.Second, "the API's refusal", `document.getElementById("register-msg").classList.contains("error") && document.getElementById("register-msg").textContent.includes("already")`)
	b.screenshot(t, "02b-register-refused")
	b.open(t, "#/servers/"+first.Serial)

	// Rack it through the racked form: a unit above the 42 U rack is
	// refused inline before anything is sent; then the right unit.
	b.waitFor(t, 30*time.Second, "the racked form", `document.querySelector("#racked")`)
	b.fill(t, "#racked", map[string]string{"rack": "R05", "unit": "50"})
	b.run(t, "submit unit 50", chromedp.Click(`#racked button[type=submit]`))
	b.waitFor(t, 10*time.Second, "inline unit error", `document.querySelector('#racked .field-error[data-for=unit]').textContent.includes("above")`)
	b.screenshot(t, "03-racked-invalid")
	require.Equal(t, "waiting-rack", getServer(t, f.api, first.Serial).State, "an invalid form sends nothing")
	b.fill(t, "#racked", map[string]string{"room": "B"})
	b.run(t, "submit room B", chromedp.Click(`#racked button[type=submit]`))
	b.waitFor(t, 10*time.Second, "inline room error", `document.querySelector('#racked .field-error[data-for=room]').textContent.includes("room A")`)
	b.fill(t, "#racked", map[string]string{"room": "A", "unit": "3"})
	b.run(t, "submit unit 3", chromedp.Click(`#racked button[type=submit]`))
	b.waitFor(t, 30*time.Second, "racked", `document.querySelector("#server-state .state").dataset.state !== "waiting-rack"`)
	b.screenshot(t, "04-server-provisioning")
	b.waitFor(t, 3*time.Minute, "installed on the page", `document.querySelector("#server-state .state").dataset.state === "installed"`)
	b.waitFor(t, 10*time.Second, "the timeline", `document.querySelector('#steps tr[data-step=InstallOS][data-status=done]')`)
	var same bool
	b.eval(t, `window.__sameDocument === true`, &same)
	require.True(t, same, "progress must show without reloading the page")
	b.waitFor(t, 10*time.Second, "hardware and history", `document.querySelector("#hardware dl") && document.querySelectorAll("#history tr").length > 0`)
	// Applied versus desired, read back from the BMC: the root mirror the
	// profile wants is there.
	b.waitFor(t, 10*time.Second, "the BIOS and RAID tables", `document.querySelector("#bios-report table") && document.querySelector("#raid-report table")`)
	var raidRows []string
	b.eval(t, `[...document.querySelectorAll("#raid-report tbody tr")].map((r) => [r.dataset.status, ...[...r.cells].map((c) => c.textContent)].join(" "))`, &raidRows)
	require.NotEmpty(t, raidRows)
	require.True(t, strings.HasPrefix(raidRows[0], "match metalflow-root RAID1 MAX"), "%q", raidRows)
	require.Contains(t, raidRows[0], "✓")
	b.screenshot(t, "05-server-installed")

	// The rack elevation shows it at U3.
	b.open(t, "#/racks")
	b.waitFor(t, 20*time.Second, "the rack picker", `document.querySelector('.racks-list a[href="#/racks/dc1/R05"]')`)
	b.screenshot(t, "06-racks")
	b.run(t, "pick R05", chromedp.Click(`.racks-list a[href="#/racks/dc1/R05"]`))
	b.waitFor(t, 20*time.Second, "U3 holds the server", `(document.querySelector('#rack [data-unit="3"]')||{}).dataset?.serial === `+jsString(first.Serial))
	b.waitFor(t, 10*time.Second, "U3 coloured by state", `document.querySelector('#rack [data-unit="3"]').classList.contains("s-installed")`)
	var units int
	b.eval(t, `document.querySelectorAll("#rack .unit").length`, &units)
	require.Equal(t, 42, units, "every unit of the 42 U rack is drawn")
	var topUnit string
	b.eval(t, `document.querySelector("#rack .unit").dataset.unit`, &topUnit)
	require.Equal(t, "42", topUnit, "units are drawn top to bottom")
	b.screenshot(t, "07-rack-elevation")

	// A server whose profile wants a BIOS attribute no BMC has: it parks
	// at ConfigureBIOS; skip from the fleet's attention list lets it go on.
	second := f.fleet[1]
	b.open(t, "#/register")
	b.run(t, "register form", chromedp.WaitVisible(`#register`))
	b.fill(t, "#register", map[string]string{"serial": second.Serial, "address": second.Address, "username": second.Username,
		"password": second.Password, "profile": "nobios", "rack": "R05", "unit": "10"})
	b.run(t, "submit register", chromedp.Click(`#register button[type=submit]`))
	b.waitFor(t, 20*time.Second, "registered", `document.getElementById("registered-link")`)
	b.open(t, "#/fleet")
	skip := `#attention .item[data-serial=` + jsString(second.Serial) + `] button[data-action=skip]`
	b.waitFor(t, 3*time.Minute, "the attention with a skip button", `document.querySelector('`+skip+`')`)
	var attText string
	b.eval(t, `document.querySelector('#attention .item[data-serial=`+jsString(second.Serial)+`]').innerText`, &attText)
	require.Contains(t, attText, "ConfigureBIOS")
	b.screenshot(t, "08-fleet-attention")
	b.run(t, "skip", chromedp.Click(skip))
	b.waitFor(t, 3*time.Minute, "the skipped server installs", `(document.querySelector('#fleet-rows tr[data-serial=`+jsString(second.Serial)+`]')||{}).dataset?.state === "installed"`)
	st := getServer(t, f.api, second.Serial)
	skipped := false
	for _, s := range st.Steps {
		if s.Name == "ConfigureBIOS" && s.Status == "skipped" {
			skipped = true
		}
	}
	require.True(t, skipped, "ConfigureBIOS was skipped by the button: %+v", st.Steps)
	b.screenshot(t, "09-fleet")

	// Leave a third server in attention and one waiting for the rack, for
	// the viewer to look at.
	third := f.fleet[2]
	f.register(t, third, third.Password, "nobios", nil)
	b.open(t, "#/servers/"+third.Serial)
	b.waitFor(t, 30*time.Second, "the racked form", `document.querySelector("#racked")`)
	b.fill(t, "#racked", map[string]string{"rack": "R05", "unit": "20"})
	b.run(t, "rack the third", chromedp.Click(`#racked button[type=submit]`))
	waitState(t, f.api, third.Serial, "attention")
	r := do(t, http.MethodPost, f.api+"/api/v1/servers", `{"serial":"SN-BROWSER-WAIT"}`)
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))

	// VIPs: a public VIP needs load-balancer nodes before it can await
	// approval; dev has none, so it stops in attention and the queue is
	// empty.
	r = do(t, http.MethodPost, f.api+"/api/v1/vips", `{"name":"web-public","protocol":"tcp","port":443,"exposure":"public","backends":[{"address":"10.1.0.1"}]}`)
	require.Equal(t, http.StatusAccepted, r.code, string(r.body))
	b.open(t, "#/vips")
	b.waitFor(t, 30*time.Second, "the VIP list", `document.querySelector('#vip-rows tr[data-vip="web-public"]')`)
	b.screenshot(t, "10-vips")
	// Fresh, roomy request timings: the VIP page's polls are read from them.
	b.eval(t, `performance.clearResourceTimings(); performance.setResourceTimingBufferSize(100000); true`, nil)
	b.open(t, "#/vips/web-public")
	b.waitFor(t, 2*time.Minute, "the VIP's attention or its approval", `document.querySelector("#vip-attention") || document.querySelector("#vip-approval")`)
	b.waitFor(t, 10*time.Second, "placement and backends", `document.querySelector("#placement") && document.querySelector('#backends tbody tr')`)
	// Counters are fetched on opening, then only every 30 s or on demand.
	b.waitFor(t, 10*time.Second, "the counters' time", `document.getElementById("vip-counters-at").dataset.refreshedAt`)
	var countersAt string
	b.eval(t, `document.getElementById("vip-counters-at").dataset.refreshedAt`, &countersAt)
	// Between counter refreshes the page polls the VIP without them.
	polls := `performance.getEntriesByType("resource").map((e) => e.name).filter((n) => n.includes("/api/v1/vips/web-public"))`
	b.waitFor(t, 20*time.Second, "a poll without counters", polls+`.some((n) => n.endsWith("?counters=false"))`)
	var withCounters int
	b.eval(t, polls+`.filter((n) => !n.includes("counters=")).length`, &withCounters)
	b.run(t, "refresh counters", chromedp.Click(`#vip-refresh-counters`))
	b.waitFor(t, 10*time.Second, "counters refreshed on demand", `document.getElementById("vip-counters-at").dataset.refreshedAt !== `+jsString(countersAt))
	b.waitFor(t, 10*time.Second, "the button asked for counters", polls+`.filter((n) => !n.includes("counters=")).length > `+fmt.Sprint(withCounters))
	b.screenshot(t, "11-vip")
	var awaiting bool
	b.eval(t, `!!document.querySelector("#vip-approval")`, &awaiting)
	if !awaiting {
		var later bool
		b.eval(t, `!!document.querySelector("#vip-attention") && !!document.querySelector("#vip-approval-later")`, &later)
		require.True(t, later, "a public VIP in attention says it still needs an approver, without buttons yet")
	}
	b.open(t, "#/approvals")
	if awaiting {
		b.waitFor(t, 20*time.Second, "the queue", `document.querySelector('#approvals .item[data-vip="web-public"]')`)
	} else {
		t.Log("no load-balancer nodes in dev: the public VIP is in attention and the approvals queue is empty")
		b.waitFor(t, 20*time.Second, "the empty queue", `document.getElementById("approvals-empty")`)
	}
	b.screenshot(t, "12-approvals")

	// A viewer sees the same fleet but no button that changes anything.
	viewer := createToken(t, f.api, "tablet-viewer", "viewer")
	b.signOut(t)
	b.signIn(t, viewer, "viewer")
	b.open(t, "#/fleet")
	b.waitFor(t, 30*time.Second, "the attention, read-only", `document.querySelector('#attention .item[data-serial=`+jsString(third.Serial)+`]')`)
	var buttons int
	b.eval(t, `document.querySelectorAll("#view button").length`, &buttons)
	require.Zero(t, buttons, "a viewer gets no action buttons on the fleet")
	var registerHidden bool
	b.eval(t, `getComputedStyle(document.querySelector('nav a[data-nav=register]')).display === "none"`, &registerHidden)
	require.True(t, registerHidden, "a viewer does not see the register link")
	// Time in step: the server in attention has one, and it counts up
	// between refreshes without a reload.
	inStep := `(document.querySelector('#fleet-rows tr[data-serial=` + jsString(third.Serial) + `] td.in-step')||{}).textContent || ""`
	b.waitFor(t, 20*time.Second, "a time in step", `/^(\d+s|\d+m \d+s)$/.test(`+inStep+`)`)
	var before string
	b.eval(t, inStep, &before)
	b.waitFor(t, 20*time.Second, "the time in step counting", inStep+` !== `+jsString(before)+` && /^(\d+s|\d+m \d+s)$/.test(`+inStep+`)`)
	b.screenshot(t, "13-viewer-fleet")
	// The state filter leaves only installed servers.
	b.run(t, "filter installed", chromedp.SetValue(`#filter-state`, "installed"),
		chromedp.Evaluate(`document.getElementById("filter-state").dispatchEvent(new Event("change"))`, nil))
	b.waitFor(t, 10*time.Second, "only installed rows", `[...document.querySelectorAll("#fleet-rows tr")].map((r) => r.dataset.state).join() === "installed,installed"`)
	b.open(t, "#/servers/SN-BROWSER-WAIT")
	b.waitFor(t, 30*time.Second, "the waiting server", `(document.querySelector("#server-state .state")||{}).dataset?.state === "waiting-rack"`)
	b.eval(t, `document.querySelectorAll("#view button").length + document.querySelectorAll("#racked").length`, &buttons)
	require.Zero(t, buttons, "a viewer gets no racked form")
	b.open(t, "#/servers/"+third.Serial)
	b.waitFor(t, 30*time.Second, "the server in attention", `document.querySelector("#server-attention")`)
	// The attention shows what the BMC has: the attribute it lacks, and
	// no RAID yet (the step did not run).
	b.waitFor(t, 10*time.Second, "how long it has been at ConfigureBIOS", `/^(\d+s|\d+m \d+s)$/.test((document.getElementById("server-in-step")||{}).textContent)`)
	b.waitFor(t, 10*time.Second, "the BIOS report of the failed step", `document.querySelector('#bios-report tr[data-attribute="NoSuchAttribute"]')`)
	var biosRow string
	b.eval(t, `[...document.querySelector('#bios-report tr[data-attribute="NoSuchAttribute"]').cells].map((c) => c.textContent).join(" ")`, &biosRow)
	require.Equal(t, "NoSuchAttribute On (none) ✗ missing", biosRow)
	var raidShown bool
	b.eval(t, `!!document.querySelector("#raid-report")`, &raidShown)
	require.False(t, raidShown, "no RAID report before ConfigureRAID ran")
	b.eval(t, `document.querySelectorAll("#view button").length`, &buttons)
	require.Zero(t, buttons, "a viewer gets no retry/skip/abort")
	b.screenshot(t, "14-viewer-server")
	var body string
	b.eval(t, `document.body.innerText`, &body)
	require.False(t, strings.Contains(body, viewer), "the token is never shown on the page")
}
