package testironic

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	keystoneManageBin = "/usr/bin/keystone-manage"
	keystoneWSGIBin   = "/usr/bin/keystone-wsgi-public"
	// keystoneRegion is the region bootstrap creates and clouds.yaml names.
	keystoneRegion = "RegionOne"
)

// Keystone is a running OpenStack Identity service (Debian's
// python3-keystone: SQLite, fernet tokens, its built-in test server), for
// tests of Keystone-authenticated access to Ironic.
type Keystone struct {
	dir      string
	config   string
	port     int
	password string
	proc     *process
}

// StartKeystone bootstraps an identity service with an admin user in
// project admin on a free loopback port (~25 s on 2 cores).
func StartKeystone() (*Keystone, error) {
	for _, bin := range []string{keystoneManageBin, keystoneWSGIBin, sqliteBin} {
		if _, err := os.Stat(bin); err != nil {
			return nil, &UnavailableError{Missing: bin, Package: "python3-keystone"}
		}
	}
	dir, err := os.MkdirTemp("", "metalflow-keystone-")
	if err != nil {
		return nil, err
	}
	k := &Keystone{dir: dir, config: filepath.Join(dir, "keystone.conf")}
	if err := k.start(); err != nil {
		k.Stop()
		return nil, err
	}
	return k, nil
}

func (k *Keystone) start() error {
	var err error
	if k.port, err = freePort(); err != nil {
		return err
	}
	secret := make([]byte, 12)
	if _, err := rand.Read(secret); err != nil {
		return err
	}
	k.password = hex.EncodeToString(secret)
	conf := strings.NewReplacer("DIR", k.dir).Replace(`[DEFAULT]
log_dir = DIR
use_stderr = false
[database]
connection = sqlite:///DIR/keystone.sqlite
[fernet_tokens]
key_repository = DIR/fernet-keys
[fernet_receipts]
key_repository = DIR/fernet-keys
[credential]
key_repository = DIR/credential-keys
[token]
provider = fernet
`)
	if err := os.WriteFile(k.config, []byte(conf), 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), schemaTimeout)
	defer cancel()
	manage := func(args ...string) error {
		cmd := exec.CommandContext(ctx, keystoneManageBin, append([]string{"--config-file", k.config}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("keystone-manage %s: %w\n%s", args[0], err, out)
		}
		return nil
	}
	owner := []string{"--keystone-user", strconv.Itoa(os.Getuid()), "--keystone-group", strconv.Itoa(os.Getgid())}
	if err := manage("db_sync"); err != nil {
		return err
	}
	// Keystone's built-in server and keystone-manage share the SQLite file;
	// without WAL, writes fail with "database is locked".
	if out, err := exec.CommandContext(ctx, sqliteBin, filepath.Join(k.dir, "keystone.sqlite"), "PRAGMA journal_mode=WAL;").CombinedOutput(); err != nil {
		return fmt.Errorf("sqlite3 WAL: %w\n%s", err, out)
	}
	if err := manage(append([]string{"fernet_setup"}, owner...)...); err != nil {
		return err
	}
	if err := manage(append([]string{"credential_setup"}, owner...)...); err != nil {
		return err
	}
	if err := manage("bootstrap", "--bootstrap-password", k.password,
		"--bootstrap-admin-url", k.AuthURL(), "--bootstrap-internal-url", k.AuthURL(),
		"--bootstrap-public-url", k.AuthURL(), "--bootstrap-region-id", keystoneRegion); err != nil {
		return redactErr(err, k.password)
	}
	cmd := exec.Command(keystoneWSGIBin, "--host", "127.0.0.1", "--port", strconv.Itoa(k.port))
	cmd.Env = append(os.Environ(), "OS_KEYSTONE_CONFIG_FILES="+k.config)
	cmd.Dir = k.dir
	if k.proc, err = startProcess(k.dir, "stdout.log", cmd); err != nil {
		return fmt.Errorf("start keystone: %w", err)
	}
	deadline := time.Now().Add(readyTimeout)
	for {
		if err := k.proc.exitedErr("keystone"); err != nil {
			return fmt.Errorf("%w\n%s", err, tail(k.dir, 30, "keystone.log", "stdout.log"))
		}
		if _, err := k.Token(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return fmt.Errorf("keystone on %s not ready after %s: %v", k.AuthURL(), readyTimeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// AuthURL is the identity v3 endpoint.
func (k *Keystone) AuthURL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(k.port)) + "/v3"
}

// Token returns a token for admin scoped to project admin.
func (k *Keystone) Token() (string, error) {
	return k.tokenFor(k.password)
}

func (k *Keystone) tokenFor(password string) (string, error) {
	body := map[string]any{"auth": map[string]any{
		"identity": map[string]any{"methods": []string{"password"}, "password": map[string]any{
			"user": map[string]any{"name": "admin", "domain": map[string]string{"name": "Default"}, "password": password},
		}},
		"scope": map[string]any{"project": map[string]any{"name": "admin", "domain": map[string]string{"name": "Default"}}},
	}}
	resp, err := k.post("/auth/tokens", "", body)
	if err != nil {
		return "", err
	}
	return resp.Header.Get("X-Subject-Token"), nil
}

// register puts a service and its public endpoint into the catalog, which
// is how authenticated clients find Ironic.
func (k *Keystone) register(serviceType, name, url string) error {
	token, err := k.Token()
	if err != nil {
		return err
	}
	resp, err := k.post("/services", token, map[string]any{"service": map[string]string{"type": serviceType, "name": name}})
	if err != nil {
		return err
	}
	var svc struct {
		Service struct {
			ID string `json:"id"`
		} `json:"service"`
	}
	if err := json.Unmarshal(resp.body, &svc); err != nil {
		return err
	}
	_, err = k.post("/endpoints", token, map[string]any{"endpoint": map[string]string{
		"service_id": svc.Service.ID, "interface": "public", "url": url, "region_id": keystoneRegion,
	}})
	return err
}

type response struct {
	Header http.Header
	body   []byte
}

func (k *Keystone) post(path, token string, body any) (*response, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequest(http.MethodPost, k.AuthURL()+path, bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	_, _ = out.ReadFrom(resp.Body)
	if resp.StatusCode/100 != 2 {
		return nil, fmt.Errorf("keystone POST %s: %s", path, resp.Status)
	}
	return &response{Header: resp.Header, body: out.Bytes()}, nil
}

// CloudsYAML is a clouds.yaml naming this Keystone as cloud name, with the
// admin credentials: what an operator gives `--os-cloud`.
func (k *Keystone) CloudsYAML(name string) string {
	return fmt.Sprintf(`clouds:
  %s:
    auth:
      auth_url: %s
      username: admin
      password: %s
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: %s
    interface: public
    identity_api_version: 3
`, name, k.AuthURL(), k.password, keystoneRegion)
}

// authtokenConfig is Ironic's keystone_authtoken section for this Keystone.
func (k *Keystone) authtokenConfig() string {
	return fmt.Sprintf(`[keystone_authtoken]
www_authenticate_uri = %[1]s
auth_url = %[1]s
# bootstrap's catalog has public, internal and admin identity endpoints;
# say which so the middleware does not guess.
interface = public
auth_type = password
username = admin
password = %[2]s
project_name = admin
user_domain_name = Default
project_domain_name = Default
`, k.AuthURL(), k.password)
}

// Stop terminates Keystone by PID and removes its files.
func (k *Keystone) Stop() {
	k.proc.terminate()
	_ = os.RemoveAll(k.dir)
}

func redactErr(err error, secret string) error {
	return fmt.Errorf("%s", strings.ReplaceAll(err.Error(), secret, "***"))
}
