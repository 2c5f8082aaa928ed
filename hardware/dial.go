package hardware

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/bmc-toolbox/bmclib/v2/providers/redfish"
	"github.com/go-logr/logr"
	"github.com/stmcginnis/gofish"
	gfredfish "github.com/stmcginnis/gofish/redfish"
)

// DefaultTimeout bounds each BMC request when the Endpoint names none; BMCs
// answer slowly but a minute of silence means they are not going to.
const DefaultTimeout = 60 * time.Second

// session is an open Machine: a bmclib Redfish session for what bmclib
// covers, and a gofish session, opened on first use, for what it lacks.
type session struct {
	ep      Endpoint
	baseURL string // scheme://host:port
	host    string // scheme://host as bmclib wants it
	port    string
	client  *http.Client
	tr      *transport

	mu     sync.Mutex
	conn   *redfish.Conn
	api    *gofish.APIClient
	closed bool
}

// Dial logs in to the BMC at ep. It is a Dialer. bmclib and gofish take
// no per-request context, so ctx is checked before each operation and
// bounds waits for BMC tasks, while ep.Timeout bounds every request.
func Dial(ctx context.Context, ep Endpoint) (Machine, error) {
	s, err := newSession(ep)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, classify("dial", err)
	}
	conn, err := s.openConn(ctx)
	if err != nil {
		return nil, s.fail("login", err)
	}
	s.conn = conn
	return s, nil
}

func newSession(ep Endpoint) (*session, error) {
	u, err := url.Parse(ep.Address)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Hostname() == "" {
		return nil, &Error{Kind: Rejected, Op: "dial", Err: fmt.Errorf("address %q: want https://host[:port]", ep.Address)}
	}
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
	}
	host := u.Hostname()
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	client, tr, err := httpClientFor(ep)
	if err != nil {
		return nil, err
	}
	return &session{ep: ep, baseURL: u.Scheme + "://" + host + ":" + port, host: u.Scheme + "://" + host, port: port, client: client, tr: tr}, nil
}

// httpClientFor builds the one transport both libraries share, so that the
// Endpoint's TLS and timeout rules hold for every request either sends.
func httpClientFor(ep Endpoint) (*http.Client, *transport, error) {
	timeout := ep.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case ep.InsecureTLS:
		tlsCfg.InsecureSkipVerify = true //nolint:gosec // the endpoint's owner asked for it (self-signed BMC)
	case len(ep.CACertPEM) > 0:
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ep.CACertPEM) {
			return nil, nil, &Error{Kind: Rejected, Op: "dial", Err: errors.New("CACertPEM holds no PEM certificate")}
		}
		tlsCfg.RootCAs = pool
	}
	tr := &http.Transport{
		Proxy:                 nil, // BMCs sit on management networks no proxy reaches
		DialContext:           (&net.Dialer{Timeout: timeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   timeout,
		ResponseHeaderTimeout: timeout,
		// BMCs serve few connections; keep two and drop them soon.
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     30 * time.Second,
	}
	// keepAlive sits under the retrying transport so that every attempt,
	// first or repeated, reuses the connection.
	rt := &transport{base: keepAlive{tr}, timeout: timeout}
	// Each attempt has its own deadline; the client's bounds them all.
	total := readAttempts*timeout + retryPause*readAttempts*(readAttempts-1)/2
	return &http.Client{Timeout: total, Transport: rt}, rt, nil
}

// keepAlive undoes gofish's Connection: close, which it sets on every
// request when handed its HTTP client: a new TCP and TLS handshake per
// request made a provisioning pass open about 140 connections per BMC.
type keepAlive struct{ next *http.Transport }

func (k keepAlive) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Close {
		// A RoundTripper must not change the caller's request.
		r := *req
		r.Close = false
		req = &r
	}
	return k.next.RoundTrip(req)
}

// CloseIdleConnections lets gofish's logout drop the idle connections.
func (k keepAlive) CloseIdleConnections() { k.next.CloseIdleConnections() }

// openConn logs in through bmclib's Redfish provider itself: bmclib's
// generic Client (v2.3.5) routes BIOS writes to no Redfish provider.
func (s *session) openConn(ctx context.Context) (*redfish.Conn, error) {
	// bmclib copies the deadline of Open's context into the HTTP client's
	// timeout, which would then cut every later request short; give it its
	// own client struct and no deadline, the Endpoint's Timeout governs.
	hc := *s.client
	conn := redfish.New(s.host, s.ep.Username, s.ep.Password, logr.Discard(),
		redfish.WithPort(s.port), redfish.WithHttpClient(&hc))
	if err := conn.Open(context.WithoutCancel(ctx)); err != nil {
		return nil, err
	}
	return conn, nil
}

// gofishAPI returns the gofish session, logging in on first use.
func (s *session) gofishAPI(ctx context.Context) (*gofish.APIClient, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("session closed")
	}
	if s.api != nil {
		return s.api, nil
	}
	hc := *s.client
	// The session outlives the call that opened it, so it must not carry
	// that call's cancellation; each request is bounded by the timeout.
	api, err := gofish.ConnectContext(context.WithoutCancel(ctx), gofish.ClientConfig{
		Endpoint: s.baseURL, Username: s.ep.Username, Password: s.ep.Password, HTTPClient: &hc,
	})
	if err != nil {
		return nil, err
	}
	s.api = api
	return api, nil
}

func (s *session) bmclib() *redfish.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conn
}

// relogin replaces both sessions after the BMC forgot them (its session
// timeout, a BMC reboot); a 401 at login then means the credential itself.
func (s *session) relogin(ctx context.Context) error {
	conn, err := s.openConn(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	old, oldAPI := s.conn, s.api
	s.conn, s.api = conn, nil
	s.mu.Unlock()
	if old != nil {
		_ = old.Close(ctx)
	}
	if oldAPI != nil {
		oldAPI.Logout()
	}
	return nil
}

// maxRelogins bounds how often one operation logs in again: a BMC that
// keeps losing sessions is failing, and the activity's retry takes over.
const maxRelogins = 3

// run performs one operation. When the BMC answers 401 to a session that
// worked before, it logs in again and repeats the operation, which is safe
// because a 401 means the BMC did nothing. A success the library reports
// although one of its requests failed is not trusted: bmclib and gofish
// swallow some failed sub-requests (a read-back, a task poll) and answer
// success for work that was never done.
func (s *session) run(ctx context.Context, op string, do func() error) error {
	return s.runAccounted(ctx, op, func() (int, error) { return 0, do() })
}

// runAccounted is run for an operation that reports some failed requests
// itself (the inventory's warnings): do returns how many, and only
// failures beyond those are taken for swallowed ones.
func (s *session) runAccounted(ctx context.Context, op string, do func() (accounted int, err error)) error {
	if err := ctx.Err(); err != nil {
		return classify(op, err)
	}
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return &Error{Kind: Rejected, Op: op, Err: errors.New("the session is closed")}
	}
	for relogins := 0; ; relogins++ {
		before := s.tr.failures()
		accounted, err := do()
		after := s.tr.failures()
		if err == nil {
			switch {
			case after.failed > before.failed+accounted:
				return s.fail(op, &Error{Kind: Transient, Op: op,
					Err: errors.New("a BMC request failed although the operation reported success")})
			case after.unauthorized > before.unauthorized:
				err = errors.New("401: the BMC lost the session during the operation")
			default:
				return nil
			}
		} else if !lostSession(err) {
			return s.fail(op, err)
		}
		if relogins == maxRelogins {
			// Logged in a moment ago and refused again: the session is
			// being lost, which passes; the credential was accepted.
			return s.fail(op, &Error{Kind: Transient, Op: "session lost", Err: err})
		}
		if lerr := s.relogin(ctx); lerr != nil {
			return s.fail(op+": login again", lerr)
		}
	}
}

// lostSession tells a 401 (or bmclib's words for it) from other failures.
func lostSession(err error) bool {
	st := statusOf(err)
	return st == http.StatusUnauthorized || st == 0 && strings.Contains(err.Error(), "not authenticated")
}

func (s *session) fail(op string, err error) error {
	return scrub(classify(op, err), s.ep.Password)
}

// Close logs out of both sessions.
func (s *session) Close(ctx context.Context) error {
	s.mu.Lock()
	conn, api := s.conn, s.api
	s.conn, s.api, s.closed = nil, nil, true
	s.mu.Unlock()
	if api != nil {
		api.Logout()
	}
	if conn != nil {
		if err := conn.Close(ctx); err != nil {
			return s.fail("logout", err)
		}
	}
	return nil
}

// system is the BMC's first computer system, read afresh through gofish;
// the servers metalflow provisions have exactly one.
func (s *session) system(ctx context.Context) (*gfredfish.ComputerSystem, error) {
	api, err := s.gofishAPI(ctx)
	if err != nil {
		return nil, err
	}
	systems, err := api.Service.Systems()
	if err != nil {
		return nil, err
	}
	if len(systems) == 0 {
		return nil, &Error{Kind: Unsupported, Op: "systems", Err: errors.New("the BMC lists no computer system")}
	}
	return systems[0], nil
}
