package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/internal/openapicheck"
	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// contract sends requests to a live API and holds every answer to the
// OpenAPI document that same API serves: the published contract, not a
// copy in the test.
type contract struct {
	api string
	doc *openapicheck.Document
	// seen is every status each documented operation answered.
	seen map[openapicheck.Operation][]int
}

type liveAnswer struct {
	code   int
	header http.Header
	body   []byte
}

func newContract(t *testing.T, api string) *contract {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	res, err := client.Get(api + "/api/v1/openapi.json")
	require.NoError(t, err)
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, res.StatusCode, string(raw))
	require.Equal(t, "application/json", res.Header.Get("Content-Type"))
	doc, err := openapicheck.Load(raw)
	require.NoError(t, err)
	return &contract{api: api, doc: doc, seen: map[openapicheck.Operation][]int{}}
}

const (
	jsonType = "application/json"
	formType = "application/x-www-form-urlencoded"
)

// expect sends one request, requires the status, and checks the exchange
// against the document: the status is one the operation lists, the body
// matches its schema, and the document accepts the request exactly when
// docAccepts says so (input the API refuses as malformed must be refused
// by the document too).
func (c *contract) expect(t *testing.T, status int, method, path, contentType, body string, docAccepts bool) liveAnswer {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.api+path, rd)
	require.NoError(t, err)
	bearerFromURL(req)
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	a := liveAnswer{code: res.StatusCode, header: res.Header, body: b}
	what := method + " " + path + " " + body

	require.Equal(t, status, a.code, "%s: %s", what, b)
	op, err := c.doc.Operation(req)
	require.NoError(t, err, what)
	c.seen[op] = append(c.seen[op], a.code)
	require.NoError(t, c.doc.CheckResponse(req, a.code, a.header, a.body), "%s: %s", what, b)
	reqErr := c.doc.CheckRequest(req, []byte(body))
	if docAccepts {
		require.NoError(t, reqErr, "%s: the document refuses a request the API takes as well-formed", what)
	} else {
		require.Error(t, reqErr, "%s: the document accepts input the API refuses as malformed", what)
	}
	return a
}

// as is the contract seen by another caller: token "" sends none.
func (c *contract) as(token string) *contract {
	u, err := url.Parse(c.api)
	if err != nil {
		panic(err) // c.api was built by the test itself
	}
	u.User = nil
	if token != "" {
		u.User = url.UserPassword("test", token)
	}
	return &contract{api: u.String(), doc: c.doc, seen: c.seen}
}

// refusals sends every documented operation that lists 401 without a token
// and requires the documented 401: no protected route is reachable
// anonymously, whatever its body would have been.
func (c *contract) refusals(t *testing.T) {
	t.Helper()
	anon := c.as("")
	fill := strings.NewReplacer("{serial}", "SN-OA-NOBODY", "{site}", "dc1", "{rack}", "R01", "{batch}", "b1",
		"{id}", "abc", "{attempt}", "1", "{name}", "x")
	for _, op := range c.doc.Operations() {
		// Signing in is how one gets credentials: it answers 401 for a
		// bad token, checked by the test itself.
		if !slices.Contains(c.doc.Statuses(op), "401") || op.Path == "/api/v1/session" {
			continue
		}
		req, err := http.NewRequest(op.Method, anon.api+fill.Replace(op.Path), nil)
		require.NoError(t, err)
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		b, err := io.ReadAll(res.Body)
		res.Body.Close()
		require.NoError(t, err)
		require.Equal(t, http.StatusUnauthorized, res.StatusCode, "%s without a token: %s", op, b)
		got, err := c.doc.Operation(req)
		require.NoError(t, err)
		c.seen[got] = append(c.seen[got], res.StatusCode)
		require.NoError(t, c.doc.CheckResponse(req, res.StatusCode, res.Header, b), "%s: %s", op, b)
	}
}

// waitServer polls a server's status through the contract until fn is
// satisfied; every answer on the way is checked too.
func (c *contract) waitServer(t *testing.T, serial string, what string, fn func(st serverStatus) error) serverStatus {
	t.Helper()
	var st serverStatus
	eventually(t, 3*time.Minute, serial+" "+what, func() error {
		a := c.expect(t, http.StatusOK, "GET", "/api/v1/servers/"+serial, "", "", true)
		var s serverStatus
		if err := json.Unmarshal(a.body, &s); err != nil {
			return err
		}
		st = s
		return fn(s)
	})
	return st
}

// seedPath is the NoCloud seed an iPXE install script points at.
var seedPath = regexp.MustCompile(`s=\S*(/boot/nocloud/([^/]+)/(\d+)/)`)

// phoneHomeToken is the one-time token in the installer's user-data.
var phoneHomeToken = regexp.MustCompile(`phone-home\?token=([A-Za-z0-9%._~-]+)`)

// TestOpenAPIContractAgainstLiveAPI runs every documented operation of a
// real `metalflow dev` with a simulated server, with good and bad input,
// and checks every answer against the document the API serves.
func TestOpenAPIContractAgainstLiveAPI(t *testing.T) {
	dir := t.TempDir()
	// A BIOS attribute no simulated BMC has: the server stops at
	// ConfigureBIOS in a skippable attention, which is what skip needs.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "nobios.yaml"), []byte(
		"name: nobios\nrole: compute\nbios: {\"*\": {NoSuchAttribute: \"On\"}}\n"+
			"raid: {logical_disks: [{size_gb: MAX, raid_level: \"1\", is_root_volume: true}]}\n"), 0o644))
	// Speed 10: the simulated installer takes about 30 s, time enough to
	// read its boot config and phone home before it does.
	f := startFleet(t, 1, "--profiles", dir, "--sim-speed", "10")
	sim := f.fleet[0]
	c := newContract(t, f.api)
	const good, bad = true, false

	// Operations.
	c.expect(t, 200, "GET", "/healthz", "", "", good)
	c.expect(t, 200, "GET", "/readyz", "", "", good)
	c.expect(t, 200, "GET", "/metrics", "", "", good)
	c.expect(t, 200, "GET", "/api/v1/info", "", "", good)
	c.expect(t, 200, "GET", "/api/v1/openapi.json", "", "", good)

	// Access: who the token is, issuing a token of lower rank, what that
	// rank may not do, the audit log, revocation.
	c.refusals(t)
	c.expect(t, 200, "GET", "/api/v1/whoami", "", "", good)
	u, err := url.Parse(c.api)
	require.NoError(t, err)
	admin, _ := u.User.Password()
	c.expect(t, 200, "POST", "/api/v1/session", jsonType, `{"token":"`+admin+`"}`, good)
	c.expect(t, 401, "POST", "/api/v1/session", jsonType, `{"token":"mft_000000000000_00"}`, good)
	c.expect(t, 400, "POST", "/api/v1/session", jsonType, `{"token":""}`, bad)
	c.expect(t, 204, "DELETE", "/api/v1/session", "", "", good)
	a := c.expect(t, 201, "POST", "/api/v1/tokens", jsonType, `{"name":"oa-viewer","role":"viewer"}`, good)
	var issued struct {
		Token   string `json:"token"`
		Details struct {
			ID string `json:"id"`
		} `json:"details"`
	}
	require.NoError(t, json.Unmarshal(a.body, &issued))
	c.expect(t, 422, "POST", "/api/v1/tokens", jsonType, `{"name":"oa-x","role":"operator","project":"acme"}`, good)
	c.expect(t, 422, "POST", "/api/v1/tokens", jsonType, `{"name":"oa-x","role":"root"}`, bad)
	c.expect(t, 200, "GET", "/api/v1/tokens", "", "", good)
	viewer := c.as(issued.Token)
	viewer.expect(t, 200, "GET", "/api/v1/whoami", "", "", good)
	viewer.expect(t, 403, "POST", "/api/v1/racks", jsonType, `{"site":"dc1","room":"B","name":"R30","heightU":42}`, good)
	viewer.expect(t, 403, "GET", "/api/v1/tokens", "", "", good)
	c.expect(t, 200, "GET", "/api/v1/audit", "", "", good)
	c.expect(t, 204, "DELETE", "/api/v1/tokens/"+issued.Details.ID, "", "", good)
	c.expect(t, 404, "DELETE", "/api/v1/tokens/nosuch", "", "", good)
	viewer.expect(t, 401, "GET", "/api/v1/whoami", "", "", good)

	// Racks.
	c.expect(t, 200, "GET", "/api/v1/racks", "", "", good)
	c.expect(t, 200, "GET", "/api/v1/racks?site=dc1", "", "", good)
	c.expect(t, 200, "GET", "/api/v1/racks/dc1/R01", "", "", good)
	c.expect(t, 404, "GET", "/api/v1/racks/dc1/R99", "", "", good)
	c.expect(t, 201, "POST", "/api/v1/racks", jsonType, `{"site":"dc1","room":"B","name":"R21","heightU":48}`, good)
	c.expect(t, 409, "POST", "/api/v1/racks", jsonType, `{"site":"dc1","room":"C","name":"R21","heightU":42}`, good)
	c.expect(t, 422, "POST", "/api/v1/racks", jsonType, `{"site":"dc1","name":"R22","heightU":99}`, bad)
	c.expect(t, 400, "POST", "/api/v1/racks", jsonType, `{"site":"dc1","name":"bad name","heightU":42}`, bad)
	c.expect(t, 404, "POST", "/api/v1/racks", jsonType, `{"site":"dc9","name":"R01","heightU":42}`, good)
	c.expect(t, 415, "POST", "/api/v1/racks", "text/plain", `{"site":"dc1","name":"R23","heightU":42}`, bad)

	// Registering servers: the simulated one, racked, with its BMC; two
	// without a BMC that wait for a technician.
	c.expect(t, 202, "POST", "/api/v1/servers", jsonType, fmt.Sprintf(
		`{"serial":%q,"bmc":{"address":%q,"username":%q,"password":%q},"profile":"nobios","location":{"site":"dc1","rack":"R08","unit":1,"face":"front"}}`,
		sim.Serial, sim.Address, sim.Username, sim.Password), good)
	c.expect(t, 409, "POST", "/api/v1/servers", jsonType, fmt.Sprintf(`{"serial":%q}`, sim.Serial), good)
	c.expect(t, 202, "POST", "/api/v1/servers", jsonType, `{"serial":"SN-OA-B"}`, good)
	c.expect(t, 202, "POST", "/api/v1/servers", jsonType, `{"serial":"SN-OA-C"}`, good)
	c.expect(t, 400, "POST", "/api/v1/servers", jsonType, `{"serial":`, bad)
	c.expect(t, 400, "POST", "/api/v1/servers", jsonType, `{"serial":"SN 1"}`, bad)
	c.expect(t, 400, "POST", "/api/v1/servers", jsonType, `{"serial":"SN-OA-X","colour":"red"}`, bad)
	c.expect(t, 400, "POST", "/api/v1/servers", jsonType, `{"serial":"SN-OA-X","bmc":{"address":"https://10.0.0.1"}}`, bad)
	c.expect(t, 415, "POST", "/api/v1/servers", "text/plain", `{"serial":"SN-OA-X"}`, bad)
	c.expect(t, 422, "POST", "/api/v1/servers", jsonType, `{"serial":"SN-OA-X","profile":"nope"}`, good)
	c.expect(t, 422, "POST", "/api/v1/servers", jsonType, `{"serial":"SN-OA-X","location":{"site":"dc9","rack":"R01","unit":1,"face":"front"}}`, good)

	// Status.
	c.waitServer(t, "SN-OA-B", "waits to be racked", func(st serverStatus) error {
		if st.State != serverapi.StateWaitingRack {
			return fmt.Errorf("state %s", st.State)
		}
		return nil
	})
	c.expect(t, 404, "GET", "/api/v1/servers/SN-OA-NONE", "", "", good)
	c.expect(t, 400, "GET", "/api/v1/servers/bad%20serial", "", "", bad)

	// Racking.
	c.expect(t, 422, "POST", "/api/v1/servers/SN-OA-B/racked", jsonType, `{"site":"dc1","rack":"R08","unit":5,"face":"sideways"}`, bad)
	c.expect(t, 422, "POST", "/api/v1/servers/SN-OA-B/racked", jsonType, `{"site":"dc1","rack":"R08","unit":0,"face":"front"}`, bad)
	c.expect(t, 422, "POST", "/api/v1/servers/SN-OA-B/racked", jsonType, `{"site":"dc1","rack":"R99","unit":5,"face":"front"}`, good)
	c.expect(t, 400, "POST", "/api/v1/servers/SN-OA-B/racked", jsonType, `{"site":"dc1"`, bad)
	c.expect(t, 415, "POST", "/api/v1/servers/SN-OA-B/racked", "text/plain", `{"site":"dc1","rack":"R08","unit":5,"face":"front"}`, bad)
	c.expect(t, 404, "POST", "/api/v1/servers/SN-OA-NONE/racked", jsonType, `{"site":"dc1","rack":"R08","unit":5,"face":"front"}`, good)
	c.expect(t, 400, "POST", "/api/v1/servers/-x/racked", jsonType, `{"site":"dc1","rack":"R08","unit":5,"face":"front"}`, bad)
	c.expect(t, 200, "POST", "/api/v1/servers/SN-OA-B/racked", jsonType, `{"site":"dc1","room":"A","rack":"R08","unit":5,"face":"rear"}`, good)
	c.expect(t, 409, "POST", "/api/v1/servers/SN-OA-B/racked", jsonType, `{"site":"dc1","rack":"R08","unit":6,"face":"rear"}`, good)
	c.expect(t, 409, "POST", "/api/v1/servers/SN-OA-C/racked", jsonType, `{"site":"dc1","rack":"R08","unit":5,"face":"front"}`, good)
	c.expect(t, 409, "POST", "/api/v1/servers", jsonType, `{"serial":"SN-OA-X","location":{"site":"dc1","rack":"R08","unit":5,"face":"front"}}`, good)

	// Decisions. B has no BMC: inspection needs attention, not skippable.
	c.waitServer(t, "SN-OA-B", "needs attention at inspection", func(st serverStatus) error {
		if st.State != serverapi.StateAttention || st.Attention == nil || st.Attention.Step != serverapi.StepInspect {
			return fmt.Errorf("state %s at %s", st.State, st.Step)
		}
		return nil
	})
	c.expect(t, 409, "POST", "/api/v1/servers/SN-OA-B/skip", "", "", good)
	c.expect(t, 400, "POST", "/api/v1/servers/SN-OA-B/skip", jsonType, `{"force":true}`, bad)
	c.expect(t, 415, "POST", "/api/v1/servers/SN-OA-B/skip", "text/plain", `{}`, bad)
	c.expect(t, 404, "POST", "/api/v1/servers/SN-OA-NONE/skip", "", "", good)
	c.expect(t, 422, "POST", "/api/v1/servers/SN-OA-B/retry", jsonType, `{"profile":"nope"}`, good)
	c.expect(t, 400, "POST", "/api/v1/servers/SN-OA-B/retry", jsonType, `{"bmc":{"username":"root"}}`, bad)
	c.expect(t, 404, "POST", "/api/v1/servers/SN-OA-NONE/retry", jsonType, `{}`, good)
	c.expect(t, 409, "POST", "/api/v1/servers/SN-OA-C/retry", "", "", good)
	c.expect(t, 200, "POST", "/api/v1/servers/SN-OA-B/retry", jsonType, `{}`, good)
	c.expect(t, 400, "POST", "/api/v1/servers/SN-OA-C/abort", jsonType, `{}`, bad)
	c.expect(t, 400, "POST", "/api/v1/servers/SN-OA-C/abort", "", "", bad)
	c.expect(t, 404, "POST", "/api/v1/servers/SN-OA-NONE/abort", jsonType, `{"reason":"never arrived"}`, good)
	// C waits to be racked: abort is allowed there, and then it is over.
	c.expect(t, 200, "POST", "/api/v1/servers/SN-OA-C/abort", jsonType, `{"reason":"sent back to the vendor"}`, good)
	c.waitServer(t, "SN-OA-C", "aborted", func(st serverStatus) error {
		if st.State != serverapi.StateAborted {
			return fmt.Errorf("state %s", st.State)
		}
		return nil
	})
	c.expect(t, 409, "POST", "/api/v1/servers/SN-OA-C/abort", jsonType, `{"reason":"twice"}`, good)

	// The simulated server: skip the BIOS step it cannot do.
	c.waitServer(t, sim.Serial, "needs attention at ConfigureBIOS", func(st serverStatus) error {
		if st.State != serverapi.StateAttention || st.Attention == nil || st.Attention.Step != serverapi.StepConfigureBIOS {
			return fmt.Errorf("state %s at %s (attention %+v)", st.State, st.Step, st.Attention)
		}
		return nil
	})
	// The attention carries what the BMC has against the profile.
	st := c.waitServer(t, sim.Serial, "shows its BIOS report", func(st serverStatus) error {
		if st.BIOS == nil || st.StepStartedAt == nil {
			return fmt.Errorf("no BIOS report or step start: %+v %v", st.BIOS, st.StepStartedAt)
		}
		return nil
	})
	lacking := 0
	for _, a := range st.BIOS.Attributes {
		if a.Missing {
			lacking++
		}
	}
	require.Positive(t, lacking, "the attribute the BMC lacks: %+v", st.BIOS.Attributes)
	c.expect(t, 200, "POST", "/api/v1/servers/"+sim.Serial+"/skip", jsonType, `{}`, good)

	// Assets, discovery and listing, now that there is something in them.
	c.expect(t, 200, "GET", "/api/v1/servers/"+sim.Serial+"/asset", "", "", good)
	c.expect(t, 200, "GET", "/api/v1/servers/SN-OA-B/asset", "", "", good)
	c.expect(t, 404, "GET", "/api/v1/servers/SN-OA-NONE/asset", "", "", good)
	c.expect(t, 400, "GET", "/api/v1/servers/_x/asset", "", "", bad)
	a = c.expect(t, 200, "GET", "/api/v1/sd/targets", "", "", good)
	require.Contains(t, string(a.body), sim.Serial, "the simulated server's BMC is discovered")
	c.expect(t, 200, "GET", "/api/v1/racks/dc1/R08", "", "", good)
	eventually(t, 20*time.Second, "visibility lists the servers", func() error {
		a := c.expect(t, 200, "GET", "/api/v1/servers?rack=R08", "", "", good)
		var list struct {
			Servers []struct {
				Serial        string
				StepStartedAt *time.Time
			}
		}
		if err := json.Unmarshal(a.body, &list); err != nil {
			return err
		}
		if len(list.Servers) != 2 {
			return fmt.Errorf("%d servers in R08", len(list.Servers))
		}
		for _, s := range list.Servers {
			if s.StepStartedAt == nil || s.StepStartedAt.IsZero() {
				return fmt.Errorf("%s has no stepStartedAt", s.Serial)
			}
		}
		return nil
	})
	c.expect(t, 200, "GET", "/api/v1/servers", "", "", good)
	c.expect(t, 200, "GET", "/api/v1/servers?state=aborted&pageSize=1", "", "", good)
	c.expect(t, 400, "GET", "/api/v1/servers?pageSize=0", "", "", bad)
	c.expect(t, 400, "GET", "/api/v1/servers?rack=R%2008", "", "", bad)
	c.expect(t, 400, "GET", "/api/v1/servers?pageToken=%21%21", "", "", bad)

	// The boot service, while the simulated server installs.
	mac := sim.MACs[0]
	c.expect(t, 400, "GET", "/boot/ipxe", "", "", bad)
	c.expect(t, 200, "GET", "/boot/ipxe?mac=00:00:5e:00:53:ff", "", "", good)
	var seed []string
	eventually(t, 3*time.Minute, "an install is pending for "+sim.Serial, func() error {
		a := c.expect(t, 200, "GET", "/boot/ipxe?mac="+mac, "", "", good)
		if seed = seedPath.FindStringSubmatch(string(a.body)); seed == nil {
			return fmt.Errorf("script: %s", a.body)
		}
		return nil
	})
	require.Equal(t, sim.Serial, seed[2])
	c.expect(t, 200, "GET", seed[1]+"meta-data", "", "", good)
	c.expect(t, 200, "GET", seed[1]+"vendor-data", "", "", good)
	userData := c.expect(t, 200, "GET", seed[1]+"user-data", "", "", good)
	c.expect(t, 404, "GET", "/boot/nocloud/"+sim.Serial+"/99/meta-data", "", "", good)
	c.expect(t, 404, "GET", "/boot/nocloud/"+sim.Serial+"/one/user-data", "", "", bad)
	c.expect(t, 400, "GET", "/boot/nocloud/-x/1/vendor-data", "", "", bad)
	c.expect(t, 200, "GET", "/boot/files/vmlinuz", "", "", good)
	c.expect(t, 404, "GET", "/boot/files/grub.efi", "", "", bad)
	token := phoneHomeToken.FindStringSubmatch(string(userData.body))
	require.NotNil(t, token, string(userData.body))
	c.expect(t, 400, "POST", "/api/v1/boot/phone-home", formType, "hostname=x", bad)
	c.expect(t, 403, "POST", "/api/v1/boot/phone-home?token=not-a-token", formType, "hostname=x", good)
	c.expect(t, 200, "POST", "/api/v1/boot/phone-home?token="+token[1], formType,
		"instance_id="+sim.Serial+"-install-"+seed[3]+"&hostname="+strings.ToLower(sim.Serial), good)
	c.expect(t, 403, "POST", "/api/v1/boot/phone-home?token="+token[1], formType, "hostname=x", good)
	st = c.waitServer(t, sim.Serial, "installed", func(st serverStatus) error {
		if st.State != serverapi.StateInstalled {
			return fmt.Errorf("state %s at %s (attention %+v)", st.State, st.Step, st.Attention)
		}
		return nil
	})
	require.NotNil(t, st.RAID, "the RAID read back after ConfigureRAID")
	require.NotEmpty(t, st.RAID.Volumes)
	for _, v := range st.RAID.Volumes {
		if v.Desired != nil {
			require.Equal(t, "match", v.Status, "%+v", v)
		}
	}

	// A rack batch naming the server registered above: accepted, and the
	// batch reports it as already existing instead of starting it again.
	batch := fmt.Sprintf(`{"servers":[{"serial":%q,"bmc":{"address":%q,"username":%q,"password":%q},"unit":40}]}`,
		sim.Serial, sim.Address, sim.Username, sim.Password)
	a = c.expect(t, 202, "POST", "/api/v1/racks/dc1/R15/servers", jsonType, batch, good)
	var created struct {
		BatchID string `json:"batchId"`
	}
	require.NoError(t, json.Unmarshal(a.body, &created))
	c.expect(t, 409, "POST", "/api/v1/racks/dc1/R15/servers", jsonType, batch, good)
	c.expect(t, 400, "POST", "/api/v1/racks/dc1/R15/servers", jsonType, `{"servers":[]}`, bad)
	c.expect(t, 422, "POST", "/api/v1/racks/dc9/R15/servers", jsonType, batch, good)
	eventually(t, time.Minute, "the batch reports the existing server", func() error {
		a := c.expect(t, 200, "GET", "/api/v1/racks/dc1/R15/batches/"+created.BatchID, "", "", good)
		var st batchapi.RackBatchStatus
		if err := json.Unmarshal(a.body, &st); err != nil {
			return err
		}
		if st.State != batchapi.BatchFinished || st.AlreadyExisting != 1 {
			return fmt.Errorf("batch %s, %d already existing", st.State, st.AlreadyExisting)
		}
		return nil
	})
	c.expect(t, 404, "GET", "/api/v1/racks/dc1/R15/batches/b-000000000000", "", "", good)
	c.expect(t, 400, "GET", "/api/v1/racks/dc1/R15/batches/-x", "", "", bad)

	// Decommissioning the installed server: refused for servers still at
	// work or unknown; unracked refused until the workflow waits for it.
	c.expect(t, 404, "GET", "/api/v1/servers/"+sim.Serial+"/decommission", "", "", good)
	c.expect(t, 404, "POST", "/api/v1/servers/"+sim.Serial+"/unracked", "", "", good)
	c.expect(t, 404, "DELETE", "/api/v1/servers/SN-OA-NONE", "", "", good)
	c.expect(t, 400, "DELETE", "/api/v1/servers/-x", "", "", bad)
	c.expect(t, 409, "DELETE", "/api/v1/servers/SN-OA-C", "", "", good)
	c.expect(t, 404, "POST", "/api/v1/servers/SN-OA-NONE/decommission/retry", "", "", good)
	c.expect(t, 404, "POST", "/api/v1/servers/SN-OA-NONE/decommission/abort", jsonType, `{"reason":"x"}`, good)
	// The simulated BMC (a Dell: volume deletes run as tasks) fails its
	// tasks, so the wipe parks in attention: what retry and abort answer.
	r := do(t, http.MethodPut, f.admin+"/bmcs/"+sim.ID+"/faults", `{"task_exception":true}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	c.expect(t, 202, "DELETE", "/api/v1/servers/"+sim.Serial, "", "", good)
	c.expect(t, 409, "DELETE", "/api/v1/servers/"+sim.Serial, "", "", good)
	c.expect(t, 409, "POST", "/api/v1/servers/"+sim.Serial+"/unracked", jsonType, `{}`, good)
	c.expect(t, 400, "GET", "/api/v1/servers/-x/decommission", "", "", bad)
	waitDecommission := func(state string) {
		t.Helper()
		eventually(t, 3*time.Minute, sim.Serial+" decommission "+state, func() error {
			a := c.expect(t, 200, "GET", "/api/v1/servers/"+sim.Serial+"/decommission", "", "", good)
			var d serverapi.DecommissionStatus
			if err := json.Unmarshal(a.body, &d); err != nil {
				return err
			}
			if d.State != state {
				return fmt.Errorf("decommission %s at %s (attention %+v)", d.State, d.Step, d.Attention)
			}
			return nil
		})
	}
	waitDecommission(serverapi.StateAttention)
	c.expect(t, 400, "POST", "/api/v1/servers/"+sim.Serial+"/decommission/retry", jsonType, `{"profile":"default"}`, good)
	c.expect(t, 400, "POST", "/api/v1/servers/"+sim.Serial+"/decommission/abort", jsonType, `{}`, bad)
	// Retried with the fault still there: attention again; then aborted.
	c.expect(t, 200, "POST", "/api/v1/servers/"+sim.Serial+"/decommission/retry", jsonType, `{}`, good)
	waitDecommission(serverapi.StateAttention)
	c.expect(t, 200, "POST", "/api/v1/servers/"+sim.Serial+"/decommission/abort", jsonType, `{"reason":"BMC tasks fail"}`, good)
	waitDecommission(serverapi.StateAborted)
	c.expect(t, 409, "POST", "/api/v1/servers/"+sim.Serial+"/decommission/retry", "", "", good)
	// The BMC fixed, an aborted decommission may be started again.
	r = do(t, http.MethodPut, f.admin+"/bmcs/"+sim.ID+"/faults", `{}`)
	require.Equal(t, http.StatusOK, r.code, string(r.body))
	c.expect(t, 202, "DELETE", "/api/v1/servers/"+sim.Serial, "", "", good)
	eventually(t, 3*time.Minute, sim.Serial+" waits to be unracked", func() error {
		a := c.expect(t, 200, "GET", "/api/v1/servers/"+sim.Serial+"/decommission", "", "", good)
		var d serverapi.DecommissionStatus
		if err := json.Unmarshal(a.body, &d); err != nil {
			return err
		}
		if d.State != serverapi.StateWaitingUnrack {
			return fmt.Errorf("decommission %s at %s (attention %+v)", d.State, d.Step, d.Attention)
		}
		return nil
	})
	c.expect(t, 200, "POST", "/api/v1/servers/"+sim.Serial+"/unracked", "", "", good)

	// VIPs: with no LB node registered, a rollout parks in attention at
	// placement; retry and abort answer it. Publishing, backends and
	// retirement need LB nodes: TestLoadBalancerEndToEnd holds those
	// operations to the document.
	c.expect(t, 202, "POST", "/api/v1/vips", jsonType, `{"name":"oa-web","protocol":"tcp","port":80,"exposure":"internal","backends":[{"address":"10.1.0.1","weight":1}]}`, good)
	c.expect(t, 409, "POST", "/api/v1/vips", jsonType, `{"name":"oa-web","protocol":"tcp","port":80,"exposure":"internal","backends":[{"address":"10.1.0.1","weight":1}]}`, good)
	c.expect(t, 422, "POST", "/api/v1/vips", jsonType, `{"name":"oa-bad","protocol":"tcp","port":80,"exposure":"internal","backends":[{"address":"10.1.0.1"},{"address":"10.1.0.1"}]}`, good)
	c.expect(t, 422, "POST", "/api/v1/vips", jsonType, `{"name":"Not A Label","port":80,"backends":[{"address":"10.1.0.1"}]}`, bad)
	c.expect(t, 400, "POST", "/api/v1/vips", jsonType, `{"name":"oa-x","port":80,"colour":"red"}`, bad)
	c.expect(t, 404, "GET", "/api/v1/vips/oa-none", "", "", good)
	eventually(t, 90*time.Second, "oa-web waits for attention at placement", func() error {
		a := c.expect(t, 200, "GET", "/api/v1/vips/oa-web", "", "", good)
		var v vipapi.VIPStatus
		if err := json.Unmarshal(a.body, &v); err != nil {
			return err
		}
		if v.State != vipapi.VIPStateAttention {
			return fmt.Errorf("VIP %s", v.State)
		}
		return nil
	})
	c.expect(t, 200, "GET", "/api/v1/vips", "", "", good)
	// Without counters the answer is the status alone: no traffic.
	a = c.expect(t, 200, "GET", "/api/v1/vips/oa-web?counters=false", "", "", good)
	require.NotContains(t, string(a.body), `"traffic"`)
	c.expect(t, 200, "GET", "/api/v1/vips/oa-web?counters=true", "", "", good)
	c.expect(t, 400, "GET", "/api/v1/vips/oa-web?counters=yes", "", "", bad)
	c.expect(t, 400, "GET", "/api/v1/vips/oa-none?counters=0", "", "", bad)
	c.expect(t, 409, "POST", "/api/v1/vips/oa-web/approve", "", "", good)
	c.expect(t, 409, "POST", "/api/v1/vips/oa-web/backends", jsonType, `{"drain":["10.1.0.1"]}`, good)
	c.expect(t, 200, "POST", "/api/v1/vips/oa-web/retry", "", "", good)
	eventually(t, 90*time.Second, "oa-web back in attention", func() error {
		a := c.expect(t, 200, "GET", "/api/v1/vips/oa-web", "", "", good)
		if !strings.Contains(string(a.body), `"state":"attention"`) {
			return fmt.Errorf("%s", a.body)
		}
		return nil
	})
	c.expect(t, 400, "POST", "/api/v1/vips/oa-web/abort", jsonType, `{}`, bad)
	c.expect(t, 200, "POST", "/api/v1/vips/oa-web/abort", jsonType, `{"reason":"no LB nodes in this test"}`, good)

	// OS images: a URL image recorded, refused a second time, listed,
	// shown, unknown, deleted.
	image := `{"name":"oa-debian","url":"https://mirror.invalid/debian.raw","sha256":"` + strings.Repeat("ab", 32) + `","format":"raw","osFamily":"debian"}`
	c.expect(t, 201, "POST", "/api/v1/images", jsonType, image, good)
	c.expect(t, 409, "POST", "/api/v1/images", jsonType, image, good)
	c.expect(t, 200, "GET", "/api/v1/images", "", "", good)
	c.expect(t, 200, "GET", "/api/v1/images/oa-debian", "", "", good)
	c.expect(t, 404, "GET", "/api/v1/images/oa-nothing", "", "", good)
	c.expect(t, 204, "DELETE", "/api/v1/images/oa-debian", "", "", good)
	c.expect(t, 404, "DELETE", "/api/v1/images/oa-debian", "", "", good)
	// This dev serves no deploy agent.
	c.expect(t, 404, "GET", "/boot/agent/vmlinuz", "", "", good)
	c.expect(t, 404, "GET", "/boot/agent/initrd.img", "", "", good)

	liveOnlyWithLBNodes := map[string]bool{
		"POST /api/v1/vips/{name}/approve": true, "POST /api/v1/vips/{name}/reject": true,
		"POST /api/v1/vips/{name}/backends": true, "DELETE /api/v1/vips/{name}": true,
	}
	// What only a deploy agent on a machine with a pending deploy gets a
	// success from: TestRealDeploy runs them against a real VM. Their
	// refusals (401 without the attempt's token) are exercised here.
	liveOnlyWithADeploy := map[string]bool{
		"GET /boot/agent/plan": true, "POST /boot/agent/inventory": true, "POST /boot/agent/progress": true,
		"POST /boot/agent/result": true, "GET /boot/agent/vmlinuz": true, "GET /boot/agent/initrd.img": true,
		"GET /boot/images/{name}": true, "HEAD /boot/images/{name}": true,
	}

	// Every documented operation was answered well at least once, and
	// every one that documents client errors gave one.
	var missing []string
	for _, op := range c.doc.Operations() {
		var ok, clientErr bool
		for _, code := range c.seen[op] {
			ok = ok || code < 300
			clientErr = clientErr || (code >= 400 && code < 500)
		}
		documentsClientErr := false
		for _, s := range c.doc.Statuses(op) {
			documentsClientErr = documentsClientErr || strings.HasPrefix(s, "4")
		}
		if !ok && !liveOnlyWithLBNodes[op.String()] && !liveOnlyWithADeploy[op.String()] {
			missing = append(missing, op.String()+": no success")
		}
		if documentsClientErr && !clientErr {
			missing = append(missing, op.String()+": no client error")
		}
	}
	sort.Strings(missing)
	require.Empty(t, missing, "operations the contract test did not exercise")
}

// TestOpenAPIContractWithoutTemporal checks the documented 503s: the API
// process runs, Temporal does not answer, and clients are told to retry
// in the documented shape.
func TestOpenAPIContractWithoutTemporal(t *testing.T) {
	apiAddr := freeAddr(t)
	dir := t.TempDir()
	// A rack, so that racking gets past the inventory check to Temporal.
	layout := filepath.Join(dir, "layout.yaml")
	require.NoError(t, os.WriteFile(layout, []byte("sites: [{name: dc1}]\nracks:\n  - {site: dc1, name: R01, heightU: 42}\n"), 0o644))
	// Nothing listens on the Temporal address.
	apiProc := startProcess(t, "api", "api", "--temporal", freeAddr(t), "--http", apiAddr, "--layout", layout,
		"--inventory-db", filepath.Join(dir, "inv.db"), "--credentials-key", filepath.Join(dir, "key"))
	waitHTTP(t, "http://"+apiAddr+"/healthz", http.StatusOK, 20*time.Second)
	api := apiURL(apiAddr, apiProc.adminToken(t))
	c := newContract(t, api)
	const good = true

	c.expect(t, 200, "GET", "/healthz", "", "", good)
	c.expect(t, 503, "GET", "/readyz", "", "", good)
	c.expect(t, 503, "POST", "/api/v1/servers", jsonType, `{"serial":"SN-DOWN"}`, good)
	c.expect(t, 503, "GET", "/api/v1/servers/SN-DOWN", "", "", good)
	c.expect(t, 503, "GET", "/api/v1/servers", "", "", good)
	c.expect(t, 503, "POST", "/api/v1/servers/SN-DOWN/racked", jsonType, `{"site":"dc1","rack":"R01","unit":1,"face":"front"}`, good)
	c.expect(t, 503, "POST", "/api/v1/servers/SN-DOWN/retry", "", "", good)
	c.expect(t, 503, "POST", "/api/v1/servers/SN-DOWN/skip", "", "", good)
	c.expect(t, 503, "POST", "/api/v1/servers/SN-DOWN/abort", jsonType, `{"reason":"no Temporal"}`, good)
	c.expect(t, 503, "DELETE", "/api/v1/servers/SN-DOWN", "", "", good)
	c.expect(t, 503, "GET", "/api/v1/servers/SN-DOWN/decommission", "", "", good)
	c.expect(t, 503, "POST", "/api/v1/servers/SN-DOWN/unracked", "", "", good)
	// What does not need Temporal still answers.
	c.expect(t, 200, "GET", "/api/v1/racks/dc1/R01", "", "", good)
}
