package hardware

import (
	"context"
	"io"
	"net/http"
	"strconv"
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

// maxRetryAfter bounds the wait a busy BMC may ask for with Retry-After
// (iDRAC answers 503 while its job queue is busy): a longer wait is better
// spent by the activity's retry policy, which heartbeats and backs off.
const maxRetryAfter = 30 * time.Second

// transport is the one RoundTripper under bmclib and gofish. It gives each
// request its own deadline, so a BMC that hangs costs one timeout rather
// than the whole operation; it sends requests that are safe to repeat
// (see repeatable) again after a 5xx, a 429, a timeout or a broken
// connection, and any request again after a 429, waiting what a busy BMC asks for in Retry-After (see
// resendWait); and it counts the requests that failed for good, because
// both libraries sometimes swallow a failed sub-request and report
// success (see session.run).
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
	repeat := repeatable(req)
	attempts := 1
	if rewindable(req) {
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
			if again && repeat && pause(req.Context(), backoff(attempt)) {
				continue
			}
			t.count(0)
			return nil, err
		}
		// A 429 refused the request before acting on it: even an action
		// goes again.
		if failedStatus(resp.StatusCode) && again && (repeat || resp.StatusCode == http.StatusTooManyRequests) {
			if wait, ok := resendWait(req.Context(), resp, attempt, time.Now()); ok {
				_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
				_ = resp.Body.Close()
				cancel()
				if pause(req.Context(), wait) {
					continue
				}
				// Cancelled while pausing: report the answer the BMC gave.
				t.count(resp.StatusCode)
				return nil, req.Context().Err()
			}
			// The BMC asked for more time than may be waited here: its
			// answer goes to the caller, whose retry policy takes over.
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

// rewindable says the request can be sent again at all: it has no body,
// or one that can be had again.
func rewindable(req *http.Request) bool {
	return req.Body == nil || req.Body == http.NoBody || req.GetBody != nil
}

// repeatable tells which requests may be sent again after a failure: reads;
// PATCH, which sets properties to values (twice is once; a changed ETag
// answers 412, which the caller handles); and a login, whose worst case is
// an extra session that times out. Actions (POST) and DELETE are sent
// once, but for a 429 (see failedStatus): the BMC may have acted before it
// failed to answer.
func repeatable(req *http.Request) bool {
	if !rewindable(req) {
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
// lacks the feature, which no retry changes; 429 is a BMC too busy for us
// now, and acts on nothing it answers so.
func failedStatus(code int) bool {
	return (code >= 500 && code != http.StatusNotImplemented) || code == http.StatusTooManyRequests
}

// backoff is the transport's own wait before attempt+1.
func backoff(attempt int) time.Duration { return time.Duration(attempt) * retryPause }

// resendWait is how long to wait before sending again after the failed
// answer resp to attempt: what a 503 or 429 asks for in Retry-After if
// that is longer than our own backoff, as a BMC that says when it will be
// free knows better than we do. ok is false when the ask exceeds
// maxRetryAfter or outlasts ctx: waiting would only end in the caller's
// timeout instead of the BMC's answer.
func resendWait(ctx context.Context, resp *http.Response, attempt int, now time.Time) (time.Duration, bool) {
	wait := backoff(attempt)
	if resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusTooManyRequests {
		return wait, true
	}
	asked, ok := retryAfter(resp.Header.Get("Retry-After"), now)
	if !ok {
		return wait, true
	}
	if asked > maxRetryAfter {
		return 0, false
	}
	if deadline, ok := ctx.Deadline(); ok && now.Add(asked).After(deadline) {
		return 0, false
	}
	return max(wait, asked), true
}

// retryAfter reads a Retry-After value, delay-seconds or an HTTP-date
// (RFC 9110 10.2.3); ok is false for a missing or unreadable one, which
// the BMC then did not really send. A date in the past asks for no wait.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseUint(v, 10, 64); err == nil {
		// Clamped so that a huge value stays huge instead of overflowing.
		return time.Duration(min(secs, 1<<32)) * time.Second, true
	}
	at, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(at.Sub(now), 0), true
}

// pause waits d; false when ctx ended first.
func pause(ctx context.Context, d time.Duration) bool {
	timer := time.NewTimer(d)
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
