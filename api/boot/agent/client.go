package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

// apiClient speaks agentapi to the boot service.
type apiClient struct {
	base    string
	token   string
	client  *http.Client
	retries int
	backoff time.Duration
	log     *slog.Logger
}

// statusError is a non-2xx answer; 5xx is worth retrying.
type statusError struct {
	status  int
	message string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("boot service answered %d %s: %s", e.status, http.StatusText(e.status), e.message)
}

// do sends one request and decodes a 200 answer into out.
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimRight(c.base, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	agentapi.SetBearerToken(req, c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := c.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode < 200 || res.StatusCode > 299 {
		var e agentapi.Error
		b, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
		if json.Unmarshal(b, &e) != nil || e.Message == "" {
			e.Message = strings.TrimSpace(string(b))
		}
		return res, &statusError{status: res.StatusCode, message: e.Message}
	}
	if out != nil && res.StatusCode == http.StatusOK {
		if err := json.NewDecoder(res.Body).Decode(out); err != nil {
			return res, fmt.Errorf("decode %s: %w", path, err)
		}
	}
	return res, nil
}

// retryable tells errors another attempt may cure: the network (the
// agent's DHCP may still be settling) and 5xx.
func retryable(err error) bool {
	var se *statusError
	if errors.As(err, &se) {
		return se.status >= 500
	}
	return err != nil
}

// post sends body, retrying transient failures.
func (c *apiClient) post(ctx context.Context, path string, body any) error {
	for attempt := 0; ; attempt++ {
		_, err := c.do(ctx, http.MethodPost, path, body, nil)
		if err == nil {
			return nil
		}
		if !retryable(err) || attempt >= c.retries {
			return err
		}
		c.log.Warn("boot service request failed; retrying", "path", path, "err", err)
		if err := sleep(ctx, backoff(c.backoff, attempt)); err != nil {
			return err
		}
	}
}

// plan fetches the plan, waiting while the boot service answers 202.
func (c *apiClient) plan(ctx context.Context) (agentapi.Plan, error) {
	failures := 0
	for {
		var plan agentapi.Plan
		res, err := c.do(ctx, http.MethodGet, agentapi.PathPlan, nil, &plan)
		switch {
		case err == nil && res.StatusCode == http.StatusOK:
			return plan, nil
		case err == nil:
			// 202: not decided yet.
			wait := agentapi.DefaultRetryAfter
			if s, perr := strconv.Atoi(res.Header.Get("Retry-After")); perr == nil && s >= 0 {
				wait = time.Duration(s) * time.Second
			}
			c.log.Info("plan not ready", "retry_after", wait)
			if err := sleep(ctx, wait); err != nil {
				return plan, err
			}
		case retryable(err) && failures < c.retries:
			c.log.Warn("plan request failed; retrying", "err", err)
			if err := sleep(ctx, backoff(c.backoff, failures)); err != nil {
				return plan, err
			}
			failures++
		default:
			return plan, err
		}
	}
}

// backoff is the wait before the attempt-th retry: doubling, up to 30s.
func backoff(first time.Duration, attempt int) time.Duration {
	return min(first<<min(attempt, 10), 30*time.Second)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// progress is the state the periodic report sends.
type progress struct {
	mu    sync.Mutex
	state progressState
}

type progressState struct {
	agentapi.Progress
	// written and downloaded are the live counters of the disk and the
	// image stream, once there are some.
	written, downloaded *atomic.Int64
}

func (p *progress) set(f func(*progressState)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(&p.state)
}

// snapshot is the report to send; a message is sent once.
func (p *progress) snapshot() agentapi.Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := p.state.Progress
	if p.state.written != nil {
		out.BytesWritten = p.state.written.Load()
		out.BytesDownloaded = p.state.downloaded.Load()
	}
	p.state.Message = ""
	return out
}

// reportProgress posts progress every ProgressEvery until ctx ends. A lost
// report is not retried: the next one supersedes it.
func (a *agent) reportProgress(ctx context.Context) {
	tick := time.NewTicker(a.cfg.ProgressEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		snap := a.prog.snapshot()
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := a.api.do(rctx, http.MethodPost, agentapi.PathProgress, snap, nil)
		cancel()
		if err != nil && ctx.Err() == nil {
			a.cfg.Logger.Warn("progress report failed", "err", err)
		}
		a.cfg.Logger.Info("progress", "phase", snap.Phase, "written", snap.BytesWritten, "downloaded", snap.BytesDownloaded, "total", snap.BytesTotal)
	}
}
