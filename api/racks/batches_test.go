package racks

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/access"
	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/api/internal/bmc"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/rackbatch/batchapi"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// countingStore is the real vault, counting what is put into it: a batch
// refused must leave no credential behind.
type countingStore struct {
	credentials.Store
	mu   sync.Mutex
	puts int
}

func (c *countingStore) Put(ctx context.Context, scope string, cred credentials.Credential) (string, error) {
	c.mu.Lock()
	c.puts++
	c.mu.Unlock()
	return c.Store.Put(ctx, scope, cred)
}

// newBatchAPI is the rack routes on a real SQLite CMDB with rack dc1/R01 of 42 U,
// U10 already holding SN-OLD, and no Temporal at all: every answer checked
// here must come before the API would start a workflow (a nil client would
// answer 500).
func newBatchAPI(t *testing.T) (*httptest.Server, *countingStore) {
	t.Helper()
	ctx := context.Background()
	inv := apitest.Inventory(t)
	require.NoError(t, inv.EnsureSite(ctx, inventory.Site{Name: "dc1"}))
	require.NoError(t, inv.CreateRack(ctx, inventory.Rack{Site: "dc1", Room: "A", Name: "R01", HeightU: 42}))
	require.NoError(t, inv.PlaceAsset(ctx, "SN-OLD", inventory.Placement{Site: "dc1", Rack: "R01", Unit: 10, Face: "front"}, "test"))
	vault, err := credentials.NewVault(make([]byte, credentials.KeySize), inv)
	require.NoError(t, err)
	creds := &countingStore{Store: vault}
	catalog, err := profiles.NewCatalog()
	require.NoError(t, err)
	e := apitest.Echo()
	guard := access.New(access.Config{Tokens: &auth.Tokens{Store: inv}, Store: inv, Logger: slog.New(slog.DiscardHandler)})
	// The simulated fleet's BMCs are on loopback.
	addrs := bmc.Addresses{Inventory: inv, AllowLoopback: true}
	Register(e.Group("/api/v1"), guard, Deps{Inventory: inv, Credentials: creds, BMCAddresses: addrs, Profiles: catalog})
	srv := httptest.NewServer(apitest.WithToken(e, apitest.Token(t, inv, auth.Operator, "")))
	t.Cleanup(srv.Close)
	return srv, creds
}

const goodServer = `{"serial":"SN-A","bmc":{"address":"https://127.0.0.1:9001","username":"root","password":"calvin"},"unit":1}`

func TestRackBatchRefusesBadBatchesBeforeStartingAnything(t *testing.T) {
	srv, creds := newBatchAPI(t)
	server := func(serial string, unit string, extra string) string {
		return `{"serial":"` + serial + `","bmc":{"address":"https://127.0.0.1:9001","username":"root","password":"calvin"},"unit":` + unit + extra + `}`
	}
	cases := []struct {
		name, path, body string
		code             int
		want             string
	}{
		{"no servers", "/dc1/R01", `{"servers":[]}`, 400, "at least one server"},
		{"not JSON", "/dc1/R01", `{"servers":`, 400, "invalid JSON body"},
		{"unknown field", "/dc1/R01", `{"servers":[` + goodServer + `],"parallel":3}`, 400, `unknown field "parallel"`},
		{"bad serial", "/dc1/R01", `{"servers":[` + server("SN A", "1", "") + `]}`, 400, "servers[0]: serial"},
		{"duplicate serial", "/dc1/R01", `{"servers":[` + server("SN-A", "1", "") + `,` + server("SN-A", "2", "") + `]}`, 400, "servers[1] (SN-A): serial SN-A is listed twice"},
		{"duplicate unit", "/dc1/R01", `{"servers":[` + server("SN-A", "3", "") + `,` + server("SN-B", "3", "") + `]}`, 400, "servers[1] (SN-B): unit 3 is also given to servers[0] (SN-A)"},
		{"unit 0", "/dc1/R01", `{"servers":[` + server("SN-A", "0", "") + `]}`, 400, "unit must be 1 or more"},
		{"bad face", "/dc1/R01", `{"servers":[` + server("SN-A", "1", `,"face":"top"`) + `]}`, 400, "face must be"},
		{"no bmc", "/dc1/R01", `{"servers":[{"serial":"SN-A","unit":1}]}`, 400, "servers[0] (SN-A): bmc is required"},
		{"bmc without password", "/dc1/R01", `{"servers":[{"serial":"SN-A","bmc":{"address":"https://127.0.0.1:9001","username":"root"},"unit":1}]}`, 400, "servers[0] (SN-A): bmc.username and bmc.password"},
		{"bmc address", "/dc1/R01", `{"servers":[{"serial":"SN-A","bmc":{"address":"ftp://x","username":"root","password":"p"},"unit":1}]}`, 400, "bmc.address must be"},
		{"unknown profile", "/dc1/R01", `{"servers":[` + server("SN-A", "1", `,"profile":"nope"`) + `]}`, 422, `unknown hardware profile "nope"`},
		{"concurrency", "/dc1/R01", `{"servers":[` + goodServer + `],"concurrency":-1}`, 400, "concurrency must be"},
		{"power concurrency", "/dc1/R01", `{"servers":[` + goodServer + `],"powerConcurrency":1000}`, 400, "powerConcurrency must be"},
		{"grace", "/dc1/R01", `{"servers":[` + goodServer + `],"attentionGrace":"soon"}`, 400, "attentionGrace must be"},
		{"unit above the rack", "/dc1/R01", `{"servers":[` + server("SN-A", "1", "") + `,` + server("SN-B", "43", "") + `]}`, 422, "servers[1] (SN-B): invalid: unit 43 (1 U) is outside rack dc1/R01, which has units 1-42"},
		{"bmc link-local", "/dc1/R01", `{"servers":[` + goodServer + `,{"serial":"SN-B","bmc":{"address":"https://169.254.169.254","username":"root","password":"p"},"unit":2}]}`, 422, "servers[1] (SN-B): bmc.address 169.254.169.254 is link-local"},
		{"unit taken", "/dc1/R01", `{"servers":[` + server("SN-A", "10", "") + `]}`, 409, "servers[0] (SN-A)"},
		{"unknown rack", "/dc1/R99", `{"servers":[` + goodServer + `]}`, 422, `unknown rack "R99"`},
		{"unknown site", "/dc9/R01", `{"servers":[` + goodServer + `]}`, 422, `unknown site "dc9"`},
		{"bad rack name", "/dc1/R%201", `{"servers":[` + goodServer + `]}`, 400, "rack is required"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res, err := http.Post(srv.URL+"/api/v1/racks"+c.path+"/servers", "application/json", strings.NewReader(c.body))
			require.NoError(t, err)
			defer res.Body.Close()
			var body struct{ Error string }
			require.NoError(t, json.NewDecoder(res.Body).Decode(&body))
			require.Equal(t, c.code, res.StatusCode, body.Error)
			require.Contains(t, body.Error, c.want)
		})
	}
	require.Zero(t, creds.puts, "a refused batch stores no credential")
}

func TestRackBatchIDIgnoresPasswordsAndFollowsTheRequest(t *testing.T) {
	in := batchapi.RackBatchInput{Site: "dc1", Rack: "R01", Servers: []batchapi.RackBatchServer{
		{Serial: "SN-A", BMC: nil, Location: serverapi.Location{Site: "dc1", Rack: "R01", Unit: 1, Face: "front"}},
	}}
	in.Servers[0].BMC = &serverapi.BMCRef{Address: "https://127.0.0.1:9001"}
	a := batchID(in)
	in.Servers[0].BMC.CredentialRef = "cred-123"
	require.Equal(t, a, batchID(in), "the same batch has the same id, whatever its credentials")
	require.NoError(t, stepapi.ValidateSerial(a), "usable in workflow IDs and URLs")
	in.Servers[0].Location.Unit = 2
	require.NotEqual(t, a, batchID(in))
}
