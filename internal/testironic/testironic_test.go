package testironic

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStartServesAliveConductorAndStopsByPID(t *testing.T) {
	s, err := StartWith(Options{ConductorGroup: "dc1"})
	if IsUnavailable(err) {
		t.Skipf("skipping: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer s.Stop()

	alive, err := conductorAlive(&http.Client{Timeout: 2 * time.Second}, s.URL(), "")
	if err != nil || !alive {
		t.Fatalf("conductor alive = %v, %v", alive, err)
	}
	conf, err := os.ReadFile(filepath.Join(s.Dir(), "ironic.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(conf), "port = "+strings.TrimPrefix(s.URL(), "http://127.0.0.1:")) {
		t.Fatalf("config does not name the port of %s", s.URL())
	}

	// Nodes of the conductor's group are accepted, others have no conductor.
	assert.Equal(t, http.StatusCreated, createNode(t, s.URL(), `{"name": "in-group", "driver": "fake-hardware", "conductor_group": "dc1"}`))
	assert.Equal(t, http.StatusBadRequest, createNode(t, s.URL(), `{"name": "no-group", "driver": "fake-hardware"}`))

	pid := s.proc.cmd.Process.Pid
	s.Halt()
	if s.Running() {
		t.Fatal("still running after Halt")
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Fatalf("process %d still exists after Halt", pid)
	}
	if _, err := http.Get(s.URL() + "/v1"); err == nil {
		t.Fatal("API still answers after Halt")
	}
	if err := s.Resume(); err != nil {
		t.Fatal(err)
	}
	if alive, err := conductorAlive(&http.Client{Timeout: 2 * time.Second}, s.URL(), ""); err != nil || !alive {
		t.Fatalf("after Resume: conductor alive = %v, %v", alive, err)
	}
	dir := s.Dir()
	s.Stop()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("Stop left %s behind", dir)
	}
}

func TestUnavailableErrorSaysWhatToInstall(t *testing.T) {
	err := error(&UnavailableError{Missing: ironicBin, Package: "ironic-common"})
	if !IsUnavailable(err) {
		t.Fatal("IsUnavailable = false")
	}
	if !strings.Contains(err.Error(), "ironic-common") {
		t.Fatalf("message %q does not name the package", err)
	}
}

func createNode(t *testing.T, base, body string) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+"/v1/nodes", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.82")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	return resp.StatusCode
}

func TestIronicEnvLeavesVerifyToTheNode(t *testing.T) {
	got := ironicEnv([]string{"PATH=/usr/bin", "REQUESTS_CA_BUNDLE=/etc/ssl/ca.crt", "CURL_CA_BUNDLE=/etc/ssl/ca.crt", "SSL_CERT_FILE=/etc/ssl/ca.crt"})
	assert.Equal(t, []string{"PATH=/usr/bin", "SSL_CERT_FILE=/etc/ssl/ca.crt"}, got)
}
