package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/lbnode/lbapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// startLBDev runs `metalflow dev` for the lab (its Temporal frontend on the
// management link the nodes reach), starts every node and waits until all
// of them are in the inventory: a VIP asked for earlier would be placed on
// whichever nodes happened to be registered by then.
func (x *lbLab) startLBDev(t *testing.T, extra ...string) *devStack {
	t.Helper()
	dev := startDev(t, append([]string{"--temporal-listen", x.temporal,
		"--vip-pool-internal", lbPoolInternal, "--vip-pool-public", lbPoolPublic}, extra...)...)
	// Its frontend is the lab's address, not the one startDev picked.
	dev.temporal = x.temporal
	for _, n := range x.nodes {
		n.mustStart(t)
	}
	x.waitRegistered(t)
	return dev
}

// waitRegistered waits until every node's registry has recorded it up in
// the inventory.
func (x *lbLab) waitRegistered(t *testing.T) {
	t.Helper()
	tc := temporalClient(t, x.temporal)
	t.Cleanup(tc.Close)
	for _, n := range x.nodes {
		id := lbapi.RegistryWorkflowID(n.cluster, n.name)
		eventually(t, lbTimeout, "node "+id+" registered", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			v, err := tc.QueryWorkflow(ctx, id, "", stepapi.QueryStatus)
			if err != nil {
				return err
			}
			var st vipapi.LBNodeRegistryState
			if err := v.Get(&st); err != nil {
				return err
			}
			if st.Recorded == nil || st.Down || !st.Recorded.Healthy {
				return fmt.Errorf("registry state %+v", st)
			}
			return nil
		})
	}
}

// lbToken has the admin create a token for user with role; it returns the
// token and a contract speaking with it.
func lbToken(t *testing.T, admin *contract, name, user, role string) (string, *contract) {
	t.Helper()
	a := admin.expect(t, http.StatusCreated, "POST", "/api/v1/tokens", jsonType,
		fmt.Sprintf(`{"name":%q,"user":%q,"role":%q}`, name, user, role), true)
	var res struct {
		Token string `json:"token"`
	}
	require.NoError(t, json.Unmarshal(a.body, &res))
	return res.Token, admin.as(res.Token)
}

// TestBrowserApprovesPublicVIPAsSecondUser is issue #8's last step in a
// real chromium against the namespace lab: Alice asks for a public VIP,
// her own approval is refused on the approvals page with a message that
// stays, Bob approves it there, and a client's TCP connection through the
// VIP reaches a backend.
func TestBrowserApprovesPublicVIPAsSecondUser(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping the load balancer browser test in -short mode")
	}
	x := newLBLab(t, false)
	t.Cleanup(func() {
		if t.Failed() {
			x.logs()
		}
	})
	dev := x.startLBDev(t, "--ephemeral")
	admin := newContract(t, dev.api)
	// Alice asks for VIPs and is an approver too, as in lb_test; Bob
	// approves.
	_, alice := lbToken(t, admin, "alice-op", "alice", "operator")
	aliceApprover, _ := lbToken(t, admin, "alice-approver", "alice", "approver")
	bobApprover, _ := lbToken(t, admin, "bob-approver", "bob", "approver")

	backends := make([]string, 0, len(x.backends))
	names := map[string]bool{}
	for _, b := range x.backends {
		backends = append(backends, fmt.Sprintf(`{"address":%q,"weight":100}`, b.addr))
		names[b.name] = true
	}
	// The page has no form to ask for a VIP: Alice uses the API.
	alice.createVIP(t, "shop", "public", strings.Join(backends, ","), "")
	st := alice.waitVIP(t, "shop", "awaiting-approval", func(st vipapi.VIPStatus) error { return allAnnounced(st, 2) })
	require.Equal(t, "alice", st.RequestedBy)
	shop := st.Address

	u, err := url.Parse(dev.api)
	require.NoError(t, err)
	page := "http://" + u.Host + "/"
	b := startBrowser(t, page)
	b.run(t, "open the page", chromedp.Navigate(page+"#/approvals"))
	b.signIn(t, aliceApprover, "approver")
	item := `#approvals .item[data-vip="shop"]`
	b.waitFor(t, 30*time.Second, "shop in Alice's approvals queue", `document.querySelector('`+item+`')`)
	var text string
	b.eval(t, `document.querySelector('`+item+`').innerText`, &text)
	require.Contains(t, text, "requested by alice")
	b.screenshot(t, "lb-01-alice-approvals")

	b.run(t, "Alice approves", chromedp.Click(item+` button[data-action=approve]`))
	refused := `document.getElementById("approve-shop").classList.contains("error") && document.getElementById("approve-shop").textContent.includes("cannot approve")`
	b.waitFor(t, 30*time.Second, "the refusal shown", refused)
	// The queue redraws every few seconds: mark the item drawn now and wait
	// for a redraw to replace it; the refusal must still be there.
	b.eval(t, `document.querySelector('`+item+`').dataset.before = "refusal"`, nil)
	b.waitFor(t, 30*time.Second, "a redraw of the queue", `document.querySelector('`+item+`') && !document.querySelector('`+item+`').dataset.before`)
	var stays bool
	b.eval(t, refused, &stays)
	require.True(t, stays, "the refusal survives the queue's redraw")
	b.screenshot(t, "lb-02-alice-refused")
	require.Equal(t, vipapi.VIPStateAwaitingApproval, alice.getVIP(t, "shop").State, "the refusal changed nothing")

	b.signOut(t)
	b.signIn(t, bobApprover, "approver")
	b.open(t, "#/approvals")
	b.waitFor(t, 30*time.Second, "shop in Bob's approvals queue", `document.querySelector('`+item+`')`)
	b.screenshot(t, "lb-03-bob-approvals")
	b.run(t, "Bob approves", chromedp.Click(item+` button[data-action=approve]`))

	st = alice.waitVIP(t, "shop", "active", func(st vipapi.VIPStatus) error { return allAnnounced(st, 2) })
	assert.Equal(t, "bob", st.ApprovedBy)
	assert.Equal(t, lbapi.AnnouncePublic, st.Announce)
	b.open(t, "#/vips/shop")
	b.waitFor(t, 30*time.Second, "shop active on its page, approved by bob",
		`(document.querySelector("#vip-state .state")||{}).dataset?.state === "active" && document.getElementById("vip").innerText.includes("bob")`)
	b.screenshot(t, "lb-04-bob-approved")

	x.waitRoutes(t, shop, map[string][]string{"torA": {"n_a1", "n_a2"}, "torB": {"n_b1", "n_b2"}}, true)
	got, err := x.dial(shop)
	require.NoError(t, err, "a TCP connection from the client through %s", shop)
	assert.True(t, names[got], "the connection reached a backend, which greeted with %q", got)
	t.Logf("client → %s:%d reached %s", shop, lbVIPPort, got)
}
