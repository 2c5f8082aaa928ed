package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/internal/openapicheck"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/server"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/vip/vipapi"
)

// newContractServer is the API over a real inventory (seeded like
// `metalflow dev`) and the built-in profiles, without Temporal: enough for
// every answer that does not need a workflow. Those are the integration
// test's.
func newContractServer(t *testing.T) (http.Handler, *inventory.Store) {
	t.Helper()
	ctx := context.Background()
	inv := apitest.Inventory(t)
	require.NoError(t, inv.ApplyLayout(ctx, inventory.DevLayout()))
	cat, err := profiles.NewCatalog()
	require.NoError(t, err)
	s := New(Config{
		Inventory: inv,
		Profiles:  cat,
		Registry:  prometheus.NewRegistry(),
		Logger:    slog.New(slog.DiscardHandler),
		Namespace: "default",
		Boot:      BootConfig{PublicURL: "http://10.0.0.1:8080"},
		Tokens:    &auth.Tokens{Store: inv},
		Images:    ImagesConfig{Dir: t.TempDir()},
	})
	return apitest.WithToken(s.Handler(), apitest.Token(t, inv, auth.Admin, "")), inv
}

func loadDoc(t *testing.T, raw []byte) *openapicheck.Document {
	t.Helper()
	doc, err := openapicheck.Load(raw)
	require.NoError(t, err)
	return doc
}

func TestOpenAPIDocumentIsValid(t *testing.T) {
	doc := loadDoc(t, openAPIDocument)
	require.NotEmpty(t, doc.Operations())
	// Every operation says what it answers when things go wrong, not only
	// its success.
	for _, op := range doc.Operations() {
		codes := doc.Statuses(op)
		require.NotEmpty(t, codes, op.String())
		for _, c := range codes {
			require.NotEqual(t, "default", c, "%s: a default response would let any status through the contract test", op)
		}
	}
	_, err := openapicheck.Load([]byte(`{"openapi": "3.0.3", "info": {"title": "x", "version": "1"}, "paths": {"/a": {"get": {"responses": {"200": {"$ref": "#/components/responses/Missing"}}}}}}`))
	require.Error(t, err, "a dangling reference makes a document invalid")
}

// echoParam is Echo's :name path parameter.
var echoParam = regexp.MustCompile(`:([A-Za-z0-9_]+)`)

// routeCoverage compares Echo's routes with the documented operations:
// routes nobody documented, and documented operations no route serves. The
// catch-alls (JSON 404 for unknown API paths, the operator page for the
// rest) are not operations and are returned apart.
func routeCoverage(routes []*echo.Route, ops []openapicheck.Operation) (undocumented, unserved, wildcards []string) {
	registered := map[string]bool{}
	for _, r := range routes {
		if strings.HasSuffix(r.Path, "/*") {
			wildcards = append(wildcards, r.Path)
			continue
		}
		registered[r.Method+" "+echoParam.ReplaceAllString(r.Path, "{$1}")] = true
	}
	documented := map[string]bool{}
	for _, op := range ops {
		documented[op.String()] = true
	}
	for r := range registered {
		if !documented[r] {
			undocumented = append(undocumented, r)
		}
	}
	for d := range documented {
		if !registered[d] {
			unserved = append(unserved, d)
		}
	}
	sort.Strings(undocumented)
	sort.Strings(unserved)
	sort.Strings(wildcards)
	return undocumented, unserved, compact(wildcards)
}

func compact(s []string) []string {
	var out []string
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

func TestOpenAPICoversEveryRoute(t *testing.T) {
	doc := loadDoc(t, openAPIDocument)
	// Routes only need registering: no collaborator is called.
	s := New(Config{Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	routes := s.echo.Routes()
	require.Greater(t, len(routes), 20)

	undocumented, unserved, wildcards := routeCoverage(routes, doc.Operations())
	require.Empty(t, undocumented, "routes missing from api/openapi.json")
	require.Empty(t, unserved, "api/openapi.json documents operations no route serves")
	// A new catch-all must be a decision, not a way around this test.
	require.Equal(t, []string{"/*", "/api/v1/*"}, wildcards)
}

// TestOpenAPIRouteCoverageDetectsDrift shows the coverage test fails both
// ways: a route the document lacks and a documented path that is gone.
func TestOpenAPIRouteCoverageDetectsDrift(t *testing.T) {
	doc := loadDoc(t, openAPIDocument)
	s := New(Config{Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	s.echo.PUT("/api/v1/servers/:serial", func(c echo.Context) error { return nil })
	undocumented, _, _ := routeCoverage(s.echo.Routes(), doc.Operations())
	require.Equal(t, []string{"PUT /api/v1/servers/{serial}"}, undocumented)

	wrong := mutate(t, func(d map[string]any) {
		paths := d["paths"].(map[string]any)
		paths["/api/v1/servers/{serial}/decommission"] = map[string]any{
			"parameters": []any{map[string]any{"$ref": "#/components/parameters/Serial"}},
			"post":       map[string]any{"responses": map[string]any{"200": map[string]any{"description": "gone"}}},
		}
	})
	s = New(Config{Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	_, unserved, _ := routeCoverage(s.echo.Routes(), loadDoc(t, wrong).Operations())
	require.Equal(t, []string{"POST /api/v1/servers/{serial}/decommission"}, unserved)
}

func TestOpenAPIServedAtAPIPath(t *testing.T) {
	s, _ := newContractServer(t)
	x := apitest.Call(t, s, http.MethodGet, "/api/v1/openapi.json", "", "")
	require.Equal(t, http.StatusOK, x.Status)
	require.Equal(t, "application/json", x.Header.Get(echo.HeaderContentType))
	require.JSONEq(t, string(openAPIDocument), string(x.Body))
	require.NoError(t, loadDoc(t, x.Body).CheckResponse(x.Req, x.Status, x.Header, x.Body))
}

// contractCase is a request, the status the handler must answer, and
// whether the document accepts the request: bad input the schema can
// express must be refused by the schema too, so clients validating against
// the document find out before the API tells them.
type contractCase struct {
	name, method, target, contentType, body string
	status                                  int
	docAccepts                              bool
}

// sshKey is a well-formed public key.
const sshKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKv2oMjPcLITFgW6Mdmj3zGef2jF3wuncBd/8JOAXvHS ops@example"

// inProcessCases are the answers the API gives without Temporal.
func inProcessCases(mac string) []contractCase {
	return []contractCase{
		{"healthz", "GET", "/healthz", "", "", 200, true},
		{"info", "GET", "/api/v1/info", "", "", 200, true},
		{"metrics", "GET", "/metrics", "", "", 200, true},

		{"list racks", "GET", "/api/v1/racks", "", "", 200, true},
		{"list racks of a site", "GET", "/api/v1/racks?site=dc1", "", "", 200, true},
		{"rack", "GET", "/api/v1/racks/dc1/R01", "", "", 200, true},
		{"rack with a server", "GET", "/api/v1/racks/dc1/R02", "", "", 200, true},
		{"unknown rack", "GET", "/api/v1/racks/dc1/R99", "", "", 404, true},
		{"create rack", "POST", "/api/v1/racks", apitest.JSON, `{"site":"dc1","room":"B","name":"R21","heightU":48}`, 201, true},
		{"create rack again", "POST", "/api/v1/racks", apitest.JSON, `{"site":"dc1","room":"B","name":"R21","heightU":48}`, 201, true},
		{"create conflicting rack", "POST", "/api/v1/racks", apitest.JSON, `{"site":"dc1","room":"C","name":"R21","heightU":42}`, 409, true},
		{"rack too high", "POST", "/api/v1/racks", apitest.JSON, `{"site":"dc1","name":"R22","heightU":99}`, 422, false},
		{"rack without height", "POST", "/api/v1/racks", apitest.JSON, `{"site":"dc1","name":"R22"}`, 422, false},
		{"rack name with a space", "POST", "/api/v1/racks", apitest.JSON, `{"site":"dc1","name":"bad name","heightU":42}`, 400, false},
		{"rack in unknown site", "POST", "/api/v1/racks", apitest.JSON, `{"site":"dc9","name":"R01","heightU":42}`, 404, true},
		{"rack with unknown field", "POST", "/api/v1/racks", apitest.JSON, `{"site":"dc1","name":"R23","heightU":42,"colour":"red"}`, 400, false},
		{"rack as text", "POST", "/api/v1/racks", "text/plain", `{"site":"dc1","name":"R23","heightU":42}`, 415, false},
		{"rack malformed", "POST", "/api/v1/racks", apitest.JSON, `{"site":`, 400, false},

		{"server with bad serial", "GET", "/api/v1/servers/bad%20serial", "", "", 400, false},
		{"asset", "GET", "/api/v1/servers/SN-ASSET/asset", "", "", 200, true},
		{"asset unknown", "GET", "/api/v1/servers/SN-NONE/asset", "", "", 404, true},
		{"asset bad serial", "GET", "/api/v1/servers/-x/asset", "", "", 400, false},
		{"sd targets", "GET", "/api/v1/sd/targets", "", "", 200, true},

		{"create server malformed", "POST", "/api/v1/servers", apitest.JSON, `{"serial":`, 400, false},
		{"create server empty body", "POST", "/api/v1/servers", apitest.JSON, ``, 400, false},
		{"create server without serial", "POST", "/api/v1/servers", apitest.JSON, `{}`, 400, false},
		{"create server long serial", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"` + strings.Repeat("x", 65) + `"}`, 400, false},
		{"create server as text", "POST", "/api/v1/servers", "text/plain", `{"serial":"SN-1"}`, 415, false},
		{"create server unknown field", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","colour":"red"}`, 400, false},
		{"create server unknown profile", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","profile":"nope"}`, 422, true},
		{"create server bad BMC address", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","bmc":{"address":"10.0.0.1","username":"u","password":"p"}}`, 400, false},
		{"create server BMC without password", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","bmc":{"address":"https://10.0.0.1","username":"u"}}`, 400, false},
		{"create server at unit 0", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","location":{"site":"dc1","rack":"R01","unit":0,"face":"front"}}`, 400, false},
		{"create server in unknown site", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","location":{"site":"dc9","rack":"R01","unit":1,"face":"front"}}`, 422, true},
		{"create server on a taken unit", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","location":{"site":"dc1","rack":"R02","unit":7,"face":"front"}}`, 409, true},
		{"create server with an SSH key's options", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","sshAuthorizedKeys":["command=\"id\" ` + sshKey + `"]}`, 400, false},
		{"create server with an SSH key of two lines", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","sshAuthorizedKeys":["` + sshKey + `\n` + sshKey + `"]}`, 400, false},
		{"create server with an SSH key mislabelled", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","sshAuthorizedKeys":["ssh-rsa ` + strings.Fields(sshKey)[1] + `"]}`, 400, true},
		{"create server with a shell script as user-data", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","userData":"#!/bin/sh\nreboot\n"}`, 400, false},
		{"create server with user-data that is not YAML", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","userData":"#cloud-config\npackages: [\n"}`, 400, true},
		{"create server with a link-local BMC", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","bmc":{"address":"https://169.254.169.254","username":"u","password":"p"}}`, 422, true},
		{"create server with user-data setting the hostname", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","userData":"#cloud-config\nhostname: mine\n"}`, 422, true},

		{"racked sideways", "POST", "/api/v1/servers/SN-1/racked", apitest.JSON, `{"site":"dc1","rack":"R01","unit":4,"face":"sideways"}`, 422, false},
		{"racked at unit -1", "POST", "/api/v1/servers/SN-1/racked", apitest.JSON, `{"site":"dc1","rack":"R01","unit":-1,"face":"front"}`, 422, false},
		{"racked malformed", "POST", "/api/v1/servers/SN-1/racked", apitest.JSON, `{"site":"dc1"`, 400, false},
		{"racked unknown rack", "POST", "/api/v1/servers/SN-1/racked", apitest.JSON, `{"site":"dc1","rack":"R99","unit":1,"face":"front"}`, 422, true},
		{"racked above the rack", "POST", "/api/v1/servers/SN-1/racked", apitest.JSON, `{"site":"dc1","rack":"R01","unit":43,"face":"front"}`, 422, true},
		{"racked on a taken unit", "POST", "/api/v1/servers/SN-1/racked", apitest.JSON, `{"site":"dc1","rack":"R02","unit":7,"face":"rear"}`, 409, true},
		{"racked bad serial", "POST", "/api/v1/servers/bad%20serial/racked", apitest.JSON, `{"site":"dc1","rack":"R01","unit":4,"face":"front"}`, 400, false},
		{"racked as text", "POST", "/api/v1/servers/SN-1/racked", "text/plain", `{"site":"dc1","rack":"R01","unit":4,"face":"front"}`, 415, false},

		{"retry unknown profile", "POST", "/api/v1/servers/SN-1/retry", apitest.JSON, `{"profile":"nope"}`, 422, true},
		{"retry username alone", "POST", "/api/v1/servers/SN-1/retry", apitest.JSON, `{"bmc":{"username":"root"}}`, 400, false},
		{"retry empty BMC", "POST", "/api/v1/servers/SN-1/retry", apitest.JSON, `{"bmc":{}}`, 400, false},
		{"retry as text", "POST", "/api/v1/servers/SN-1/retry", "text/plain", `{}`, 415, false},
		{"retry with a loopback BMC", "POST", "/api/v1/servers/SN-1/retry", apitest.JSON, `{"bmc":{"address":"https://127.0.0.1"}}`, 422, true},
		{"decommission retry with a multicast BMC", "POST", "/api/v1/servers/SN-1/decommission/retry", apitest.JSON, `{"bmc":{"address":"https://224.0.0.1"}}`, 422, true},
		{"skip with a field", "POST", "/api/v1/servers/SN-1/skip", apitest.JSON, `{"force":true}`, 400, false},
		{"skip bad serial", "POST", "/api/v1/servers/_x/skip", "", "", 400, false},
		{"abort without reason", "POST", "/api/v1/servers/SN-1/abort", apitest.JSON, `{}`, 400, false},

		{"batch without servers", "POST", "/api/v1/racks/dc1/R01/servers", apitest.JSON, `{"servers":[]}`, 400, false},
		{"batch unknown field", "POST", "/api/v1/racks/dc1/R01/servers", apitest.JSON, `{"servers":[{"serial":"SN-B1","bmc":{"address":"https://10.0.0.1","username":"u","password":"p"},"unit":1}],"parallel":2}`, 400, false},
		{"batch server without bmc", "POST", "/api/v1/racks/dc1/R01/servers", apitest.JSON, `{"servers":[{"serial":"SN-B1","unit":1}]}`, 400, false},
		{"batch serial twice", "POST", "/api/v1/racks/dc1/R01/servers", apitest.JSON, `{"servers":[{"serial":"SN-B1","bmc":{"address":"https://10.0.0.1","username":"u","password":"p"},"unit":1},{"serial":"SN-B1","bmc":{"address":"https://10.0.0.1","username":"u","password":"p"},"unit":2}]}`, 400, true},
		{"batch unit twice", "POST", "/api/v1/racks/dc1/R01/servers", apitest.JSON, `{"servers":[{"serial":"SN-B1","bmc":{"address":"https://10.0.0.1","username":"u","password":"p"},"unit":1},{"serial":"SN-B2","bmc":{"address":"https://10.0.0.2","username":"u","password":"p"},"unit":1}]}`, 400, true},
		{"batch bad grace", "POST", "/api/v1/racks/dc1/R01/servers", apitest.JSON, `{"servers":[{"serial":"SN-B1","bmc":{"address":"https://10.0.0.1","username":"u","password":"p"},"unit":1}],"attentionGrace":"soon"}`, 400, true},
		{"batch unknown profile", "POST", "/api/v1/racks/dc1/R01/servers", apitest.JSON, `{"servers":[{"serial":"SN-B1","bmc":{"address":"https://10.0.0.1","username":"u","password":"p"},"unit":1,"profile":"nope"}]}`, 422, true},
		{"batch above the rack", "POST", "/api/v1/racks/dc1/R01/servers", apitest.JSON, `{"servers":[{"serial":"SN-B1","bmc":{"address":"https://10.0.0.1","username":"u","password":"p"},"unit":1},{"serial":"SN-B2","bmc":{"address":"https://10.0.0.2","username":"u","password":"p"},"unit":43}]}`, 422, true},
		{"batch on a taken unit", "POST", "/api/v1/racks/dc1/R02/servers", apitest.JSON, `{"servers":[{"serial":"SN-B1","bmc":{"address":"https://10.0.0.1","username":"u","password":"p"},"unit":7}]}`, 409, true},
		{"batch with an unspecified BMC", "POST", "/api/v1/racks/dc1/R01/servers", apitest.JSON, `{"servers":[{"serial":"SN-B1","bmc":{"address":"https://0.0.0.0","username":"u","password":"p"},"unit":1}]}`, 422, true},
		{"batch as text", "POST", "/api/v1/racks/dc1/R01/servers", "text/plain", `{"servers":[{"serial":"SN-B1","bmc":{"address":"https://10.0.0.1","username":"u","password":"p"},"unit":1}]}`, 415, false},
		{"abort with empty reason", "POST", "/api/v1/servers/SN-1/abort", apitest.JSON, `{"reason":""}`, 400, false},
		{"abort without body", "POST", "/api/v1/servers/SN-1/abort", "", "", 400, false},

		{"list pageSize 0", "GET", "/api/v1/servers?pageSize=0", "", "", 400, false},
		{"list unknown state", "GET", "/api/v1/servers?state=lost", "", "", 400, false},
		{"list bad rack filter", "GET", "/api/v1/servers?rack=R%2001", "", "", 400, false},
		{"list bad pageToken", "GET", "/api/v1/servers?pageToken=%21%21", "", "", 400, false},

		{"ipxe without mac", "GET", "/boot/ipxe", "", "", 400, false},
		{"ipxe unknown mac", "GET", "/boot/ipxe?mac=00:00:5e:00:53:ff", "", "", 200, true},
		{"ipxe pending install", "GET", "/boot/ipxe?mac=" + mac, "", "", 200, true},
		{"meta-data", "GET", "/boot/nocloud/SN-BOOT/1/meta-data", "", "", 200, true},
		{"user-data", "GET", "/boot/nocloud/SN-BOOT/1/user-data", "", "", 200, true},
		{"vendor-data", "GET", "/boot/nocloud/SN-BOOT/1/vendor-data", "", "", 200, true},
		{"meta-data of another attempt", "GET", "/boot/nocloud/SN-BOOT/2/meta-data", "", "", 404, true},
		{"user-data of no install", "GET", "/boot/nocloud/SN-NONE/1/user-data", "", "", 404, true},
		{"vendor-data bad serial", "GET", "/boot/nocloud/-x/1/vendor-data", "", "", 400, false},
		{"meta-data attempt not a number", "GET", "/boot/nocloud/SN-BOOT/one/meta-data", "", "", 404, false},
		{"boot file", "GET", "/boot/files/vmlinuz", "", "", 200, true},
		{"boot file initrd", "GET", "/boot/files/initrd.img", "", "", 200, true},
		{"boot file unknown", "GET", "/boot/files/grub.efi", "", "", 404, false},
		{"phone-home without token", "POST", "/api/v1/boot/phone-home", "", "", 400, false},
		{"phone-home unknown token", "POST", "/api/v1/boot/phone-home?token=nope", "application/x-www-form-urlencoded", "instance_id=i-1&hostname=h", 403, true},
	}
}

// seedContract gives the in-process cases something to find: an asset with
// history, a monitoring target, a taken unit and a pending install.
func seedContract(t *testing.T, inv *inventory.Store) (mac string) {
	t.Helper()
	ctx := context.Background()
	_, err := inv.RegisterAsset(ctx, inventory.AssetRecord{
		Serial: "SN-ASSET", Vendor: "Dell Inc.", Model: "PowerEdge R650", State: "provisioning",
		BMCAddress: "https://10.0.0.21", MACs: []string{"52:54:00:00:00:01"}, Hardware: json.RawMessage(`{"cpus":2}`),
	}, "test")
	require.NoError(t, err)
	require.NoError(t, inv.PlaceAsset(ctx, "SN-ASSET", inventory.Placement{Site: "dc1", Room: "A", Rack: "R02", Unit: 7, Face: "front", HeightU: 1}, "test"))
	require.NoError(t, inv.UpsertTarget(ctx, inventory.Target{Serial: "SN-ASSET", Kind: inventory.TargetBMC, Address: "https://10.0.0.21",
		Labels: map[string]string{"site": "dc1", "rack": "R02", "role": "compute"}}))
	mac = "52:54:00:00:00:02"
	_, err = inv.RegisterAsset(ctx, inventory.AssetRecord{Serial: "SN-BOOT", State: "provisioning", MACs: []string{mac}}, "test")
	require.NoError(t, err)
	_, err = inv.IssueBoot(ctx, "SN-BOOT", 1, []string{mac}, time.Hour)
	require.NoError(t, err)
	return mac
}

func TestOpenAPIContractInProcess(t *testing.T) {
	s, inv := newContractServer(t)
	mac := seedContract(t, inv)
	doc := loadDoc(t, openAPIDocument)
	for _, c := range inProcessCases(mac) {
		t.Run(c.name, func(t *testing.T) {
			x := apitest.Call(t, s, c.method, c.target, c.contentType, c.body)
			require.Equal(t, c.status, x.Status, string(x.Body))
			require.NoError(t, doc.CheckResponse(x.Req, x.Status, x.Header, x.Body), string(x.Body))
			err := doc.CheckRequest(x.Req, x.ReqBody)
			if c.docAccepts {
				require.NoError(t, err, "the document refuses a request the API takes as well-formed")
			} else {
				require.Error(t, err, "the document accepts input the API refuses as malformed")
			}
		})
	}
	// The pending install's script is the installer, not the local disk.
	x := apitest.Call(t, s, "GET", "/boot/ipxe?mac="+mac, "", "")
	require.Contains(t, string(x.Body), "kernel http://10.0.0.1:8080/boot/files/vmlinuz")
}

// mutate returns a copy of the document changed by fn.
func mutate(t *testing.T, fn func(doc map[string]any)) []byte {
	t.Helper()
	var d map[string]any
	require.NoError(t, json.Unmarshal(openAPIDocument, &d))
	fn(d)
	b, err := json.Marshal(d)
	require.NoError(t, err)
	return b
}

func dig(d map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		d = d[k].(map[string]any)
	}
	return d
}

// TestOpenAPICheckFailsOnWrongDocument shows the contract check used by
// the integration test catches a document that no longer describes the
// API: each wrong copy passes the document check yet fails on a real
// answer that the true document accepts.
func TestOpenAPICheckFailsOnWrongDocument(t *testing.T) {
	s, inv := newContractServer(t)
	seedContract(t, inv)
	truth := loadDoc(t, openAPIDocument)
	cases := []struct {
		name        string
		x           apitest.Exchange
		change      func(d map[string]any)
		checkReq    bool
		wantMessage string
	}{
		{
			name: "a required field the API does not send",
			x:    apitest.Call(t, s, "GET", "/healthz", "", ""),
			change: func(d map[string]any) {
				h := dig(d, "components", "schemas", "Health")
				h["required"] = []any{"status", "version"}
			},
			wantMessage: `property "version" is missing`,
		},
		{
			name: "a field the document does not know",
			x:    apitest.Call(t, s, "GET", "/api/v1/info", "", ""),
			change: func(d map[string]any) {
				delete(dig(d, "components", "schemas", "Info", "properties"), "namespace")
				delete(dig(d, "components", "schemas", "Info"), "required")
			},
			wantMessage: `property "namespace" is unsupported`,
		},
		{
			name: "a status the operation does not list",
			x:    apitest.Call(t, s, "POST", "/api/v1/servers", "text/plain", `{"serial":"SN-1"}`),
			change: func(d map[string]any) {
				delete(dig(d, "paths", "/api/v1/servers", "post", "responses"), "415")
			},
			wantMessage: "status is not supported",
		},
		{
			name: "a field of another type",
			x:    apitest.Call(t, s, "GET", "/api/v1/racks/dc1/R99", "", ""),
			change: func(d map[string]any) {
				dig(d, "components", "schemas", "Error", "properties", "error")["type"] = "integer"
			},
			wantMessage: "value must be an integer",
		},
		{
			name: "a limit the API's values exceed",
			x:    apitest.Call(t, s, "GET", "/api/v1/racks/dc1/R02", "", ""),
			change: func(d map[string]any) {
				dig(d, "components", "schemas", "RackDetail", "properties", "units", "items", "properties", "unit")["maximum"] = 5
			},
			wantMessage: "number must be at most 5",
		},
		{
			name: "another content type",
			x:    apitest.Call(t, s, "GET", "/boot/ipxe?mac=00:00:5e:00:53:ff", "", ""),
			change: func(d map[string]any) {
				ok := dig(d, "paths", "/boot/ipxe", "get", "responses", "200")
				ok["content"] = map[string]any{"application/json": map[string]any{"schema": map[string]any{"type": "object"}}}
			},
			wantMessage: "response header Content-Type has unexpected value",
		},
		{
			name:     "a request constraint the API does not have",
			x:        apitest.Call(t, s, "POST", "/api/v1/servers/SN-1/racked", apitest.JSON, `{"site":"dc1","rack":"R99","unit":4,"face":"front"}`),
			checkReq: true,
			change: func(d map[string]any) {
				dig(d, "components", "schemas", "Location", "properties", "unit")["minimum"] = 10
			},
			wantMessage: "number must be at least 10",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			wrong := loadDoc(t, mutate(t, c.change))
			check := func(d *openapicheck.Document) error {
				if c.checkReq {
					return d.CheckRequest(c.x.Req, c.x.ReqBody)
				}
				return d.CheckResponse(c.x.Req, c.x.Status, c.x.Header, c.x.Body)
			}
			require.NoError(t, check(truth), "the true document accepts the exchange")
			err := check(wrong)
			require.Error(t, err, "the wrong document must fail the exchange")
			require.Contains(t, err.Error(), c.wantMessage)
		})
	}
}

// TestOpenAPIStepNamesCoverEveryStep: a server's attention or status, or
// its decommission's, names any of their steps; the document must allow
// every one. (VIP steps have their own schema, VIPAttention.)
func TestOpenAPIStepNamesCoverEveryStep(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Enum []string `json:"enum"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(openAPIDocument, &doc))
	allowed := doc.Components.Schemas["StepName"].Enum
	steps := append(server.Steps(), server.DecommissionSteps()...)
	steps = append(steps, serverapi.StepCancelProvisioning, serverapi.StepLeaveLoadBalancer)
	for _, s := range steps {
		require.Contains(t, allowed, s, "StepName in api/openapi.json lacks %s", s)
	}
}

// TestOpenAPIVIPAttentionNamesEveryVIPStep: a VIP waiting for staff shows
// the step of its own workflow that failed, which the document must accept
// (the lifecycle's step names are not the VIP's).
func TestOpenAPIVIPAttentionNamesEveryVIPStep(t *testing.T) {
	doc := loadDoc(t, openAPIDocument)
	req := httptest.NewRequest(http.MethodGet, "/api/v1/vips/web", nil)
	header := http.Header{"Content-Type": []string{"application/json"}}
	for _, step := range vipapi.VIPSteps() {
		// A VIP's answer is its workflow's status and the workflow's ID.
		body, err := json.Marshal(struct {
			vipapi.VIPStatus
			WorkflowID string `json:"workflowId"`
		}{VIPStatus: vipapi.VIPStatus{
			Name: "web", Exposure: "internal", State: vipapi.VIPStateAttention, Protocol: "tcp", Ports: []uint16{80},
			Placement: []vipapi.ClusterPlacement{}, Backends: []vipapi.BackendStatus{},
			Attention: &stepapi.Attention{Step: step, Error: "the node took no task"},
		}, WorkflowID: "vip/web"})
		require.NoError(t, err)
		require.NoError(t, doc.CheckResponse(req, http.StatusOK, header, body), step)
	}
	body := []byte(`{"name":"web","exposure":"internal","state":"attention","placement":[],"backends":[],"awaitingApproval":false,` +
		`"attention":{"step":"InstallOS","error":"x","skippable":false},"workflowId":"vip/web"}`)
	require.Error(t, doc.CheckResponse(req, http.StatusOK, header, body), "a lifecycle step is no VIP step")
}

// TestOpenAPIServerStepIsALifecycleStep: a server's status names its
// current step, any of the lifecycle's, or "" once ended.
func TestOpenAPIServerStepIsALifecycleStep(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Enum []string `json:"enum"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(openAPIDocument, &doc))
	require.ElementsMatch(t, append([]string{""}, server.Steps()...), doc.Components.Schemas["Server"].Properties["step"].Enum,
		"Server.step in api/openapi.json against server.Steps()")
}

// TestOpenAPIStateIsEveryServerState: the list filters by every state a
// server's status can report, and the document names exactly those, for
// the filter and for the answers.
func TestOpenAPIStateIsEveryServerState(t *testing.T) {
	var doc struct {
		Components struct {
			Schemas map[string]struct {
				Enum []string `json:"enum"`
			} `json:"schemas"`
		} `json:"components"`
	}
	require.NoError(t, json.Unmarshal(openAPIDocument, &doc))
	require.ElementsMatch(t, serverapi.States(), doc.Components.Schemas["State"].Enum, "State in api/openapi.json against serverapi.States()")
}
