package agent

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

type probeResult struct {
	latency time.Duration
	err     error
}

// probe checks one backend once: a TCP connect, or an HTTP GET that must
// answer 2xx or 3xx (redirects are not followed: a backend that redirects
// is answering).
func probe(ctx context.Context, backend string, c checkSpec) probeResult {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	hostPort := net.JoinHostPort(backend, strconv.Itoa(int(c.port)))
	start := time.Now()
	var err error
	switch c.kind {
	case "http":
		err = probeHTTP(ctx, hostPort, c.path)
	default:
		var conn net.Conn
		var d net.Dialer
		if conn, err = d.DialContext(ctx, "tcp", hostPort); err == nil {
			conn.Close()
		}
	}
	return probeResult{latency: time.Since(start), err: err}
}

func probeHTTP(ctx context.Context, hostPort, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+hostPort+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", "metalflow-lbnode-healthcheck")
	// A fresh transport per probe: a kept-alive connection would hide a
	// backend that no longer accepts new ones.
	tr := &http.Transport{DisableKeepAlives: true, Proxy: nil}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return fmt.Errorf("HTTP %s", resp.Status)
	}
	return nil
}

// ProbeBackend checks one backend from this node now, the way its health
// check would.
func (a *Agent) ProbeBackend(ctx context.Context, in lbapi.ProbeBackendInput) (lbapi.ProbeBackendResult, error) {
	res := lbapi.ProbeBackendResult{Node: a.cfg.NodeName}
	addr, err := netip.ParseAddr(in.Address)
	if err != nil || addr.Zone() != "" || addr.IsUnspecified() {
		err := fmt.Errorf("backend address %q is not a usable IP address", in.Address)
		return res, temporal.NewNonRetryableApplicationError(err.Error(), ErrInvalidProbe, err)
	}
	if in.Check.Kind != "tcp" && in.Check.Kind != "http" {
		err := fmt.Errorf("health check kind %q, want tcp or http", in.Check.Kind)
		return res, temporal.NewNonRetryableApplicationError(err.Error(), ErrInvalidProbe, err)
	}
	if in.Check.Port == 0 {
		err := fmt.Errorf("probing %s: the check names no port", in.Address)
		return res, temporal.NewNonRetryableApplicationError(err.Error(), ErrInvalidProbe, err)
	}
	r := probe(ctx, addr.Unmap().String(), resolveCheck(in.Check, in.Check.Port))
	res.Healthy = r.err == nil
	res.LatencyMS = r.latency.Milliseconds()
	if r.err != nil {
		res.Error = r.err.Error()
	}
	return res, nil
}
