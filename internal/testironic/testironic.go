// Package testironic starts a real OpenStack Ironic for tests: the
// all-in-one `ironic` process from Debian's ironic-common package, noauth,
// SQLite, no message bus, on a free loopback port. Tests of the cloud step
// talk to the same API a production Ironic serves instead of a fake.
//
// Starting takes seconds (schema creation alone ~7 s on 2 cores), so start
// one per test package from TestMain and share it.
package testironic

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Paths of the packaged commands; the packaged scripts already use
// /usr/bin/python3, which matters where a pyenv shim comes first on PATH.
const (
	ironicBin = "/usr/bin/ironic"
	dbsyncBin = "/usr/bin/ironic-dbsync"
	sqliteBin = "/usr/bin/sqlite3"
)

// How long to wait for the pieces; generous because the machines running
// the tests are small and shared.
const (
	schemaTimeout = 2 * time.Minute
	readyTimeout  = 90 * time.Second
)

// UnavailableError means this machine cannot run the service; callers skip
// the cases that need it and print the reason.
type UnavailableError struct {
	Missing string
	// Package is the Debian package that provides it.
	Package string
}

func (e *UnavailableError) Error() string {
	return fmt.Sprintf("%s is not installed (%s missing); install the Debian package "+
		"(apt-get install --no-install-recommends %s) or run scripts/test.sh as root", e.Package, e.Missing, e.Package)
}

// IsUnavailable reports whether err says Ironic is not installed here.
func IsUnavailable(err error) bool {
	var u *UnavailableError
	return errors.As(err, &u)
}

// Server is a running Ironic (API and conductor in one process).
type Server struct {
	dir    string
	config string
	group  string
	// keystone authenticates requests when set; registered says Ironic is
	// in its catalog already.
	keystone   *Keystone
	registered bool
	port       int
	proc       *process
}

// Options changes the Ironic that StartWith runs.
type Options struct {
	// ConductorGroup puts the conductor in this group (Ironic lower-cases
	// it). Ironic refuses nodes of a group no conductor serves, so a test
	// enrolling nodes with a failure-domain group starts Ironic in it.
	ConductorGroup string
	// Keystone, when set, makes Ironic authenticate every request with it
	// (auth_strategy=keystone) and registers Ironic in its catalog as the
	// baremetal service.
	Keystone *Keystone
}

// Start runs Ironic with its conductor in the default group.
func Start() (*Server, error) { return StartWith(Options{}) }

// StartWith creates a fresh database and configuration in a temporary
// directory and runs Ironic on a free loopback port until it reports an
// alive conductor. Stop it with Stop.
func StartWith(opts Options) (*Server, error) {
	for _, bin := range []string{ironicBin, dbsyncBin, sqliteBin} {
		if _, err := os.Stat(bin); err != nil {
			return nil, &UnavailableError{Missing: bin, Package: "ironic-common"}
		}
	}
	dir, err := os.MkdirTemp("", "metalflow-ironic-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, config: filepath.Join(dir, "ironic.conf"), group: opts.ConductorGroup, keystone: opts.Keystone}
	if err := s.prepare(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	if err := s.run(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

func (s *Server) prepare() error {
	var err error
	if s.port, err = freePort(); err != nil {
		return err
	}
	for _, d := range []string{"state", "locks"} {
		if err := os.MkdirAll(filepath.Join(s.dir, d), 0o700); err != nil {
			return err
		}
	}
	conf := configFor(s.dir, s.port, s.group)
	if s.keystone != nil {
		conf = strings.Replace(conf, "auth_strategy = noauth", "auth_strategy = keystone", 1) + s.keystone.authtokenConfig()
	}
	if err := os.WriteFile(s.config, []byte(conf), 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), schemaTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, dbsyncBin, "--config-file", s.config, "create_schema").CombinedOutput(); err != nil {
		return fmt.Errorf("ironic-dbsync create_schema: %w\n%s", err, out)
	}
	// The API and the conductor write the same SQLite file at once; without
	// WAL, writes fail with "database is locked" under concurrent requests.
	db := filepath.Join(s.dir, "ironic.sqlite")
	if out, err := exec.CommandContext(ctx, sqliteBin, db, "PRAGMA journal_mode=WAL;").CombinedOutput(); err != nil {
		return fmt.Errorf("sqlite3 WAL: %w\n%s", err, out)
	}
	return nil
}

// configFor is the configuration measured in the project's notes
// (shared/notes/ironic-standalone.md): every interface the fake-hardware
// and redfish hardware types need, nothing that needs a network service.
func configFor(dir string, port int, group string) string {
	return strings.NewReplacer("DIR", dir, "PORT", strconv.Itoa(port), "GROUP", group).Replace(`[DEFAULT]
auth_strategy = noauth
rpc_transport = none
host = 127.0.0.1
state_path = DIR/state
log_dir = DIR
use_stderr = false
enabled_hardware_types = fake-hardware,redfish,ipmi
enabled_bios_interfaces = fake,no-bios,redfish
enabled_boot_interfaces = fake,pxe,redfish-virtual-media
enabled_console_interfaces = fake,no-console
enabled_deploy_interfaces = fake,direct,ramdisk
enabled_inspect_interfaces = fake,no-inspect,redfish
enabled_management_interfaces = fake,redfish,ipmitool
enabled_network_interfaces = noop
default_network_interface = noop
enabled_power_interfaces = fake,redfish,ipmitool
enabled_raid_interfaces = fake,no-raid,redfish,agent
enabled_rescue_interfaces = fake,no-rescue
enabled_storage_interfaces = fake,noop
enabled_vendor_interfaces = fake,no-vendor,redfish,ipmitool
[api]
host_ip = 127.0.0.1
port = PORT
api_workers = 1
[database]
connection = sqlite:///DIR/ironic.sqlite
[dhcp]
dhcp_provider = none
[conductor]
automated_clean = false
conductor_group = GROUP
[redfish]
# The defaults (5 attempts, 4 s apart) make a dead BMC take ~20 s to report.
connection_attempts = 2
connection_retry_interval = 1
[oslo_concurrency]
lock_path = DIR/locks
`)
}

// run starts the process on the prepared directory and waits for it.
func (s *Server) run() error {
	cmd := exec.Command(ironicBin, "--config-file", s.config)
	cmd.Env = ironicEnv(os.Environ())
	p, err := startProcess(s.dir, "stdout.log", cmd)
	if err != nil {
		return fmt.Errorf("start ironic: %w", err)
	}
	s.proc = p
	if err := s.waitReady(); err != nil {
		p.kill()
		return fmt.Errorf("%w\n--- ironic log (tail) ---\n%s", err, s.LogTail(40))
	}
	if s.keystone != nil && !s.registered {
		if err := s.keystone.register("baremetal", "ironic", s.URL()); err != nil {
			p.kill()
			return fmt.Errorf("register ironic in keystone: %w", err)
		}
		s.registered = true
	}
	return nil
}

// waitReady polls until the conductor has registered itself alive: before
// that the API answers but every node operation fails with "no conductor".
func (s *Server) waitReady() error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyTimeout)
	var last error
	for time.Now().Before(deadline) {
		if err := s.proc.exitedErr("ironic"); err != nil {
			return err
		}
		token := ""
		if s.keystone != nil {
			token, _ = s.keystone.Token()
		}
		alive, err := conductorAlive(client, s.URL(), token)
		if alive {
			return nil
		}
		last = err
		time.Sleep(250 * time.Millisecond)
	}
	return fmt.Errorf("ironic on %s had no alive conductor after %s (last: %v)", s.URL(), readyTimeout, last)
}

func conductorAlive(client *http.Client, base, token string) (bool, error) {
	req, err := http.NewRequest(http.MethodGet, base+"/v1/conductors", nil)
	if err != nil {
		return false, err
	}
	// The conductors resource exists from API 1.49 on.
	req.Header.Set("X-OpenStack-Ironic-API-Version", "1.49")
	if token != "" {
		req.Header.Set("X-Auth-Token", token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET /v1/conductors: %s", resp.Status)
	}
	var body struct {
		Conductors []struct {
			Hostname string `json:"hostname"`
			Alive    bool   `json:"alive"`
		} `json:"conductors"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return false, err
	}
	for _, c := range body.Conductors {
		if c.Alive {
			return true, nil
		}
	}
	return false, errors.New("no alive conductor yet")
}

// URL is the API root, e.g. http://127.0.0.1:6385 (no /v1).
func (s *Server) URL() string {
	return "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// Dir holds the configuration, database and logs.
func (s *Server) Dir() string { return s.dir }

// Running reports whether the process is up.
func (s *Server) Running() bool { return s.proc.running() }

// Halt stops the process but keeps its database and port, so a test can
// show what callers see while Ironic is down and then Resume it.
func (s *Server) Halt() { s.proc.terminate() }

// Freeze stops Ironic in its tracks (SIGSTOP to its process group): it
// keeps the port open and answers nothing, like a hung service, so callers
// meet their own deadlines rather than a refused connection. Thaw resumes.
func (s *Server) Freeze() { s.proc.signal(syscall.SIGSTOP) }

// Thaw lets a frozen Ironic run again.
func (s *Server) Thaw() { s.proc.signal(syscall.SIGCONT) }

// Resume starts a halted Ironic again on the same port and database.
func (s *Server) Resume() error {
	if s.Running() {
		return nil
	}
	return s.run()
}

// Stop terminates Ironic by PID (SIGTERM, then SIGKILL) and removes its
// files.
func (s *Server) Stop() {
	s.proc.terminate()
	_ = os.RemoveAll(s.dir)
}

// LogTail returns the last n lines of Ironic's log, for failure messages.
func (s *Server) LogTail(n int) string { return tail(s.dir, n, "ironic.log", "stdout.log") }

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ironicEnv is the environment minus the CA-bundle variables of Python's
// requests. With either set, requests lets it override a session's
// verify=False (psf/requests#3829), so a node with redfish_verify_ca=false
// would still fail "certificate verify failed" against a BMC's self-signed
// certificate; a node's own verify_ca setting must be what decides.
func ironicEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, kv := range env {
		if strings.HasPrefix(kv, "REQUESTS_CA_BUNDLE=") || strings.HasPrefix(kv, "CURL_CA_BUNDLE=") {
			continue
		}
		out = append(out, kv)
	}
	return out
}
