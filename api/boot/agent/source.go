package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

// source is the image URL. Every fetch survives transient failures (5xx,
// refused or dropped connections) by asking again, with a Range request
// from the first byte it still needs, a bounded number of times in a row.
type source struct {
	client  *http.Client
	url     string
	retries int
	backoff time.Duration
	// stall is how long a download may go without a byte before it counts
	// as dropped: a connection can hang open without failing.
	stall time.Duration
	log   *slog.Logger
	// notify tells the operator (a progress message) about a retry.
	notify func(string)

	downloaded atomic.Int64
	resumes    atomic.Int64
}

// transientError is a failure worth another request.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// get asks for the bytes from off to end (inclusive; -1: to the end of the
// image). A server that ignores Range answers 200 with the whole image;
// the body is then advanced to off here, so the caller always reads from
// off. total is the image's size in bytes if the server said (-1 if not).
func (s *source) get(ctx context.Context, off, end int64) (body io.ReadCloser, total int64, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, 0, fail(agentapi.ClassPlanInvalid, "image URL: %v", err)
	}
	switch {
	case end >= 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, end))
	case off > 0:
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", off))
	}
	// Compressed transfer would hide the image's own bytes (and their
	// checksum) behind the server's choice.
	req.Header.Set("Accept-Encoding", "identity")
	res, err := s.client.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		return nil, 0, &transientError{err}
	}
	switch {
	case res.StatusCode == http.StatusPartialContent:
		start, total, ok := parseContentRange(res.Header.Get("Content-Range"))
		if !ok || start != off {
			res.Body.Close()
			return nil, 0, fail(agentapi.ClassImageUnreachable, "image server answered Range %d- with Content-Range %q", off, res.Header.Get("Content-Range"))
		}
		return res.Body, total, nil
	case res.StatusCode == http.StatusOK:
		if _, err := io.CopyN(io.Discard, res.Body, off); err != nil {
			res.Body.Close()
			return nil, 0, &transientError{fmt.Errorf("skipping to byte %d of a server without Range support: %w", off, err)}
		}
		return res.Body, res.ContentLength, nil
	case res.StatusCode >= 500 || res.StatusCode == http.StatusTooManyRequests || res.StatusCode == http.StatusRequestTimeout:
		res.Body.Close()
		return nil, 0, &transientError{fmt.Errorf("image server answered %s", res.Status)}
	default:
		res.Body.Close()
		return nil, 0, fail(agentapi.ClassImageUnreachable, "image server answered %s for %s", res.Status, s.url)
	}
}

// parseContentRange reads "bytes START-END/TOTAL" (TOTAL may be "*").
func parseContentRange(v string) (start, total int64, ok bool) {
	rest, ok := strings.CutPrefix(v, "bytes ")
	if !ok {
		return 0, 0, false
	}
	rng, size, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, 0, false
	}
	first, _, ok := strings.Cut(rng, "-")
	if !ok {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(first, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	total, err = strconv.ParseInt(size, 10, 64)
	if err != nil {
		total = -1
	}
	return start, total, true
}

// wait sleeps before the attempt-th retry: the backoff doubles, up to 30s.
func (s *source) wait(ctx context.Context, attempt int, err error) error {
	d := backoff(s.backoff, attempt)
	msg := fmt.Sprintf("image download: %v; retry %d/%d in %s", err, attempt+1, s.retries, d)
	s.log.Warn(msg)
	s.notify(msg)
	return sleep(ctx, d)
}

// giveUp turns the last transient error into the install's failure.
func (s *source) giveUp(err error) error {
	var te *transientError
	if errors.As(err, &te) {
		return fail(agentapi.ClassImageUnreachable, "image download failed %d times in a row, last: %v", s.retries+1, te.err)
	}
	return err
}

// fetchRange reads n bytes at off (fewer if the image ends before): the
// probe of the image's first bytes and the qcow2 tables. total is the
// image's size if the server said, -1 if not.
func (s *source) fetchRange(ctx context.Context, off, n int64) (buf []byte, total int64, err error) {
	for attempt := 0; ; attempt++ {
		var body io.ReadCloser
		body, total, err = s.get(ctx, off, off+n-1)
		if err == nil {
			buf, err = io.ReadAll(io.LimitReader(body, n))
			body.Close()
			if err == nil {
				return buf, total, nil
			}
			err = &transientError{err}
		}
		var te *transientError
		if !errors.As(err, &te) || attempt >= s.retries {
			return nil, 0, s.giveUp(err)
		}
		if werr := s.wait(ctx, attempt, err); werr != nil {
			return nil, 0, werr
		}
	}
}

// stream is the whole image, read once from start to end (image.write
// hashes what it reads). Transient failures are hidden from the reader: the stream
// resumes at its offset, so decompressors never notice.
type stream struct {
	src    *source
	ctx    context.Context
	off    int64
	body   io.ReadCloser
	failed int
	// watchdog cancels the current request when it stalls.
	watchdog *time.Timer
	cancel   context.CancelFunc
}

func (s *source) open(ctx context.Context) *stream {
	return &stream{src: s, ctx: ctx}
}

func (st *stream) Read(p []byte) (int, error) {
	for {
		if st.body == nil {
			rctx, cancel := context.WithCancel(st.ctx)
			body, _, err := st.src.get(rctx, st.off, -1)
			if err != nil {
				cancel()
				if err := st.retry(err); err != nil {
					return 0, err
				}
				continue
			}
			if st.off > 0 {
				st.src.resumes.Add(1)
			}
			st.body, st.cancel = body, cancel
			st.watchdog = time.AfterFunc(st.src.stall, cancel)
		}
		n, err := st.body.Read(p)
		if n > 0 {
			st.watchdog.Reset(st.src.stall)
			st.off += int64(n)
			st.src.downloaded.Add(int64(n))
			st.failed = 0
		}
		switch {
		case err == nil || errors.Is(err, io.EOF):
			return n, err
		case st.ctx.Err() != nil:
			return n, st.ctx.Err()
		}
		// A dropped connection (io.ErrUnexpectedEOF, a reset) or a stalled
		// one: resume.
		if !st.watchdog.Stop() {
			err = fmt.Errorf("no data for %s", st.src.stall)
		}
		st.close()
		if n > 0 {
			return n, nil
		}
		if err := st.retry(&transientError{err}); err != nil {
			return 0, err
		}
	}
}

// retry waits before the next request, or gives up when err is permanent
// or the retries in a row are spent.
func (st *stream) retry(err error) error {
	var te *transientError
	if !errors.As(err, &te) || st.failed >= st.src.retries {
		return st.src.giveUp(err)
	}
	st.failed++
	return st.src.wait(st.ctx, st.failed-1, err)
}

func (st *stream) close() {
	if st.body != nil {
		st.watchdog.Stop()
		st.cancel()
		st.body.Close()
		st.body = nil
	}
}
