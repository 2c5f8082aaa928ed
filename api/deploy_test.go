package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/boot/agentapi"
	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// TestOpenAPIContractDeployAgent walks the deploy agent's plan through the
// API's own boot service, as the install step and the lifecycle leave the
// inventory: 202 until released, then a plan whose image URL the image
// route serves to the attempt's token, 409 once refused. Every answer is
// the document's.
func TestOpenAPIContractDeployAgent(t *testing.T) {
	s, inv := newContractServer(t)
	doc := loadDoc(t, openAPIDocument)
	ctx := context.Background()
	image := strings.Repeat("a disk image ", 100)
	sum := sha256.Sum256([]byte(image))
	digest := hex.EncodeToString(sum[:])
	x := apitest.Call(t, s, http.MethodPost, "/api/v1/images?name=debian-12&format=raw&osFamily=debian&sha256="+digest, "application/octet-stream", image)
	require.Equal(t, http.StatusCreated, x.Status, string(x.Body))

	_, err := inv.RegisterAsset(ctx, inventory.AssetRecord{Serial: "SN-DEP"}, "test")
	require.NoError(t, err)
	boot, err := inv.IssueBoot(ctx, "SN-DEP", 1, []string{"52:54:00:00:00:0d"}, time.Hour)
	require.NoError(t, err)
	plan, err := json.Marshal(serverapi.DeployPlan{Image: "debian-12", Hostname: "sn-dep"})
	require.NoError(t, err)
	require.NoError(t, inv.SetDeployPlan(ctx, "SN-DEP", 1, plan))
	require.NoError(t, inv.SetBootImage(ctx, "SN-DEP", 1, "debian-12"))

	// as sends a request with the given bearer, as the agent does.
	as := func(token, target string, status int) []byte {
		t.Helper()
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		require.Equal(t, status, rec.Code, "%s: %s", target, rec.Body)
		require.NoError(t, doc.CheckResponse(req, rec.Code, rec.Header(), rec.Body.Bytes()), "%s: %s", target, rec.Body)
		require.NoError(t, doc.CheckRequest(req, nil))
		return rec.Body.Bytes()
	}
	as("nope", agentapi.PathPlan, http.StatusForbidden)
	as(boot.Token, agentapi.PathPlan, http.StatusAccepted)

	require.NoError(t, inv.DecideDeploy(ctx, "SN-DEP", 1, true, ""))
	var got agentapi.Plan
	require.NoError(t, json.Unmarshal(as(boot.Token, agentapi.PathPlan, http.StatusOK), &got))
	require.Equal(t, agentapi.Image{URL: "http://10.0.0.1:8080/boot/images/debian-12?token=" + url.QueryEscape(boot.Token),
		SHA256: digest, Format: agentapi.FormatRaw, Size: int64(len(image))}, got.Image)

	// The agent fetches the URL as given: its ?token= is what counts,
	// whatever Authorization says (here the test's API token).
	u, err := url.Parse(got.Image.URL)
	require.NoError(t, err)
	req := httptest.NewRequest(http.MethodGet, u.RequestURI(), nil)
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, image, rec.Body.String())

	require.NoError(t, inv.DecideDeploy(ctx, "SN-DEP", 1, false, "DMI serial differs"))
	var e agentapi.Error
	require.NoError(t, json.Unmarshal(as(boot.Token, agentapi.PathPlan, http.StatusConflict), &e))
	require.Equal(t, "DMI serial differs", e.Message)
}
