// Package client talks to the metalflow REST API for the CLI and the
// benchmarks: typed calls for the routes an operator uses from a
// terminal, errors that carry the API's own message.
package client

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// maxAnswer bounds how much of an answer is read: a server list of
// thousands fits; a runaway body does not exhaust memory.
const maxAnswer = 32 << 20

// Client is one API endpoint and the token it acts with.
type Client struct {
	base           *url.URL
	token          string
	http           *http.Client
	decideAttempts int
}

// Config locates the API. Timeout bounds each call; zero means 30 s.
type Config struct {
	API     string
	Token   string
	Timeout time.Duration
	// Transport carries the calls; nil is Go's default, which keeps two
	// idle connections per host: too few for many concurrent callers.
	Transport http.RoundTripper
	// DecideAttempts is how many times a staff decision answered 503 is
	// sent under its Idempotency-Key; zero means 3. A caller that counts
	// and paces its own retries sets 1.
	DecideAttempts int
}

// New checks the API address and builds a client.
func New(cfg Config) (*Client, error) {
	if cfg.API == "" {
		return nil, errors.New("no API address (--api, METALFLOW_API or the config file's api:)")
	}
	u, err := url.Parse(cfg.API)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("API address %q: want http(s)://host[:port]", cfg.API)
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 30 * time.Second
	}
	attempts := cfg.DecideAttempts
	if attempts == 0 {
		attempts = defaultDecideAttempts
	}
	return &Client{
		base: u, token: cfg.Token, decideAttempts: attempts,
		http: &http.Client{Timeout: timeout, Transport: cfg.Transport},
	}, nil
}

// Error is the API's refusal: its HTTP status and its {"error"} message.
type Error struct {
	Status  int
	Message string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
}

// StatusOf is the HTTP status of an API refusal, 0 for any other error.
func StatusOf(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// Answer is a decoded answer with the exact bytes the API sent, so the CLI
// can print the raw answer for -o json.
type Answer[T any] struct {
	Value T
	Raw   json.RawMessage
}

// call sends one request and decodes a 2xx answer into out (when non-nil).
func (c *Client) call(ctx context.Context, method, path string, query url.Values, body any) ([]byte, error) {
	return c.send(ctx, method, path, query, body, "")
}

// send is call with an Idempotency-Key when key is not empty.
func (c *Client) send(ctx context.Context, method, path string, query url.Values, body any, key string) ([]byte, error) {
	u := *c.base
	u.Path += path
	u.RawQuery = query.Encode()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	return c.do(c.http, req)
}

// do sends a built request with the client's token through hc and reads a
// 2xx answer.
func (c *Client) do(hc *http.Client, req *http.Request) ([]byte, error) {
	method, path := req.Method, req.URL.Path
	req.Header.Set("Accept", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := hc.Do(req)
	if err != nil {
		// The URL holds no secret (the token travels in a header), so the
		// transport's error is safe to show as is.
		return nil, err
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(res.Body, maxAnswer))
	if err != nil {
		return nil, fmt.Errorf("%s %s: read answer: %w", method, path, err)
	}
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return nil, refusal(res.StatusCode, raw)
	}
	return raw, nil
}

// refusal turns a non-2xx answer into an Error with the API's message, or
// the status text when the body is not the API's error shape (a proxy's
// HTML page, say).
func refusal(status int, raw []byte) error {
	var body struct {
		Error string `json:"error"`
	}
	msg := ""
	if json.Unmarshal(raw, &body) == nil {
		msg = body.Error
	}
	if msg == "" {
		msg = http.StatusText(status)
		if msg == "" {
			msg = "unexpected answer"
		}
	}
	return &Error{Status: status, Message: msg}
}

// get is call + decode for a typed answer.
func get[T any](ctx context.Context, c *Client, method, path string, query url.Values, body any) (Answer[T], error) {
	raw, err := c.call(ctx, method, path, query, body)
	if err != nil {
		return Answer[T]{}, err
	}
	return decode[T](method, path, raw)
}

// defaultDecideAttempts and decidePause bound how a staff decision
// answered 503 is sent again.
const (
	defaultDecideAttempts = 3
	decidePause           = 2 * time.Second
)

// decide sends a staff decision (racked, retry, approve, …) under one
// Idempotency-Key for all its attempts. A 503 may mean Temporal took the
// decision but did not confirm it in time; repeated under the same key,
// the API answers the first decision's outcome rather than refusing the
// repeat as already done, so the CLI can simply send it again.
func decide[T any](ctx context.Context, c *Client, method, path string, body any) (Answer[T], error) {
	key, err := newIdempotencyKey()
	if err != nil {
		return Answer[T]{}, err
	}
	for attempt := 1; ; attempt++ {
		raw, err := c.send(ctx, method, path, nil, body, key)
		if StatusOf(err) == http.StatusServiceUnavailable && attempt < c.decideAttempts {
			select {
			case <-ctx.Done():
				return Answer[T]{}, err
			case <-time.After(decidePause):
				continue
			}
		}
		if err != nil {
			return Answer[T]{}, err
		}
		return decode[T](method, path, raw)
	}
}

// newIdempotencyKey is a random key for one decision.
func newIdempotencyKey() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("idempotency key: %w", err)
	}
	return "cli-" + hex.EncodeToString(b[:]), nil
}

// decode turns a 2xx answer into a typed Answer.
func decode[T any](method, path string, raw []byte) (Answer[T], error) {
	var a Answer[T]
	a.Raw = raw
	if len(bytes.TrimSpace(raw)) == 0 {
		return a, nil
	}
	if err := json.Unmarshal(raw, &a.Value); err != nil {
		return a, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return a, nil
}

// esc keeps a path segment one segment whatever the operator typed.
func esc(s string) string { return url.PathEscape(s) }
