package hardware

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// readAttempts is how often a repeatable request is sent before its failure is
// reported: BMCs answer the odd request 500/503 or not at all under load,
// and failing a whole step (many requests) for one of them would make a
// busy BMC's steps fail almost always.
const readAttempts = 4

// retryPause is the wait before a read is sent again, times the attempt.
const retryPause = 150 * time.Millisecond

// transport is the one RoundTripper under bmclib and gofish. It gives each
// request its own deadline, so a BMC that hangs costs one timeout rather
// than the whole operation; it sends requests that are safe to repeat
// (see repeatable) again after a 5xx, a timeout or a broken connection;
// and it counts the requests that failed for good, because both libraries
// sometimes swallow a failed sub-request and report success (see
// session.run).
type transport struct {
	base    http.RoundTripper
	timeout time.Duration

	mu           sync.Mutex
	failed       int // requests answered 5xx or not at all, after retries
	unauthorized int // requests answered 401
}

// failures is a snapshot of the failure counters.
type failures struct{ failed, unauthorized int }

func (t *transport) failures() failures {
	t.mu.Lock()
	defer t.mu.Unlock()
	return failures{t.failed, t.unauthorized}
}

func (t *transport) count(status int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if status == http.StatusUnauthorized {
		t.unauthorized++
	} else {
		t.failed++
	}
}

// RoundTrip implements http.RoundTripper.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	attempts := 1
	if repeatable(req) {
		attempts = readAttempts
	}
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(req.Context(), t.timeout)
		try := req.Clone(ctx)
		if attempt > 1 && req.GetBody != nil {
			body, err := req.GetBody()
			if err != nil {
				cancel()
				return nil, err
			}
			try.Body = body
		}
		resp, err := t.base.RoundTrip(try)
		again := attempt < attempts && req.Context().Err() == nil
		if err != nil {
			cancel()
			if again && pause(req.Context(), attempt) {
				continue
			}
			t.count(0)
			return nil, err
		}
		if failedStatus(resp.StatusCode) && again {
			_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
			_ = resp.Body.Close()
			cancel()
			if pause(req.Context(), attempt) {
				continue
			}
			// Cancelled while pausing: report the answer the BMC gave.
			t.count(resp.StatusCode)
			return nil, req.Context().Err()
		}
		if failedStatus(resp.StatusCode) || resp.StatusCode == http.StatusUnauthorized {
			t.count(resp.StatusCode)
		}
		// The deadline must last while the caller reads the body.
		resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
		return resp, nil
	}
}

// CloseIdleConnections lets gofish's logout drop the idle connections.
func (t *transport) CloseIdleConnections() {
	if c, ok := t.base.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}

// repeatable tells which requests may be sent again after a failure: reads;
// PATCH, which sets properties to values (twice is once; a changed ETag
// answers 412, which the caller handles); and a login, whose worst case is
// an extra session that times out. Actions (POST) and DELETE are sent
// once: the BMC may have acted before it failed to answer.
func repeatable(req *http.Request) bool {
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody && req.GetBody == nil {
		return false
	}
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodPatch:
		return true
	case http.MethodPost:
		return strings.HasSuffix(strings.TrimRight(strings.ToLower(req.URL.Path), "/"), "/sessionservice/sessions")
	}
	return false
}

// failedStatus is a BMC failure worth asking again: 501 means the BMC
// lacks the feature, which no retry changes.
func failedStatus(code int) bool {
	return code >= 500 && code != http.StatusNotImplemented
}

// pause waits before attempt+1; false when ctx ended first.
func pause(ctx context.Context, attempt int) bool {
	timer := time.NewTimer(time.Duration(attempt) * retryPause)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}

type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
	return err
}
