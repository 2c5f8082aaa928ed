package bmcsim

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// rawClient speaks plain HTTP to a BMC, for the protocol details that
// bmclib hides (status codes, headers) and for bad input.
type rawClient struct {
	t      testing.TB
	b      *BMC
	http   *http.Client
	token  string
	noAuth bool
}

type rawReply struct {
	status int
	header http.Header
	body   map[string]any
}

func newRawClient(t testing.TB, b *BMC) *rawClient {
	return &rawClient{t: t, b: b, http: &http.Client{Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}}
}

func (c *rawClient) do(method, path string, body any, header ...string) rawReply {
	c.t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	default:
		raw, err := json.Marshal(v)
		require.NoError(c.t, err)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, c.b.Address()+path, rd)
	require.NoError(c.t, err)
	req.Header.Set("Content-Type", "application/json")
	switch {
	case c.noAuth:
	case c.token != "":
		req.Header.Set("X-Auth-Token", c.token)
	default:
		req.SetBasicAuth(c.b.username, c.b.password)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	require.NoError(c.t, err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	require.NoError(c.t, err)
	rep := rawReply{status: resp.StatusCode, header: resp.Header}
	if len(data) > 0 {
		require.NoError(c.t, json.Unmarshal(data, &rep.body), "body of %s %s: %s", method, path, data)
	}
	return rep
}

func (r rawReply) errorCode() string {
	e := mapOf(r.body["error"])
	s, _ := e["code"].(string)
	return s
}

func TestSessions(t *testing.T) {
	b := startFleet(t, quickConfig(VendorGeneric)).BMCs()[0]
	anon := newRawClient(t, b)
	anon.noAuth = true
	const sessions = "/redfish/v1/SessionService/Sessions"

	assert.Equal(t, http.StatusOK, anon.do("GET", "/redfish/v1/", nil).status, "the service root is public")
	assert.Equal(t, http.StatusUnauthorized, anon.do("GET", "/redfish/v1/Systems", nil).status)
	bad := anon.do("POST", sessions, map[string]string{"UserName": b.username, "Password": "wrong"})
	assert.Equal(t, http.StatusUnauthorized, bad.status)
	assert.Contains(t, bad.errorCode(), "InsufficientPrivilege")
	assert.Equal(t, http.StatusBadRequest, anon.do("POST", sessions, map[string]string{"UserName": b.username}).status)
	assert.Equal(t, http.StatusBadRequest, anon.do("POST", sessions, "{not json").status)

	login := anon.do("POST", sessions, map[string]string{"UserName": b.username, "Password": b.password})
	require.Equal(t, http.StatusCreated, login.status)
	token := login.header.Get("X-Auth-Token")
	location := login.header.Get("Location")
	require.NotEmpty(t, token)
	assert.True(t, strings.HasPrefix(location, sessions+"/"), location)

	authed := newRawClient(t, b)
	authed.token = token
	assert.Equal(t, http.StatusOK, authed.do("GET", "/redfish/v1/Systems", nil).status)
	got := authed.do("GET", location, nil)
	assert.Equal(t, b.username, got.body["UserName"])
	assert.Len(t, memberLinks(authed.do("GET", sessions, nil).body), 1)
	assert.Equal(t, float64(1800), authed.do("GET", "/redfish/v1/SessionService", nil).body["SessionTimeout"])

	// The cap: 16 sessions, then the 17th login is refused until one ends.
	var more []string
	for i := 1; i < maxSessions; i++ {
		r := anon.do("POST", sessions, map[string]string{"UserName": b.username, "Password": b.password})
		require.Equal(t, http.StatusCreated, r.status)
		more = append(more, r.header.Get("Location"))
	}
	full := anon.do("POST", sessions, map[string]string{"UserName": b.username, "Password": b.password})
	assert.Equal(t, http.StatusServiceUnavailable, full.status)
	assert.Contains(t, full.errorCode(), "SessionLimitExceeded")
	assert.Equal(t, http.StatusNoContent, authed.do("DELETE", more[0], nil).status)
	assert.Equal(t, http.StatusCreated, anon.do("POST", sessions, map[string]string{"UserName": b.username, "Password": b.password}).status)

	assert.Equal(t, http.StatusNoContent, authed.do("DELETE", location, nil).status)
	assert.Equal(t, http.StatusUnauthorized, authed.do("GET", "/redfish/v1/Systems", nil).status, "a deleted session's token is dead")
	assert.Equal(t, http.StatusNotFound, newRawClient(t, b).do("DELETE", location, nil).status)
}

func TestSessionTimeout(t *testing.T) {
	cfg := quickConfig(VendorGeneric)
	cfg.SessionTimeout = 200 * time.Millisecond
	b := startFleet(t, cfg).BMCs()[0]
	c := newRawClient(t, b)
	login := c.do("POST", "/redfish/v1/SessionService/Sessions", map[string]string{"UserName": b.username, "Password": b.password})
	require.Equal(t, http.StatusCreated, login.status)
	c.token = login.header.Get("X-Auth-Token")
	assert.Equal(t, http.StatusOK, c.do("GET", "/redfish/v1/Systems", nil).status)
	time.Sleep(300 * time.Millisecond)
	assert.Equal(t, http.StatusUnauthorized, c.do("GET", "/redfish/v1/Systems", nil).status, "idle sessions expire")
}
