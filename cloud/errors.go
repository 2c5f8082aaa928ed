package cloud

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"

	"github.com/gophercloud/gophercloud/v2"
)

// ErrorKind is what an activity needs to know about a failure: retry it, or
// park the server for a human with the message.
type ErrorKind string

const (
	// Transient failures go away by themselves: Ironic or Nova down or
	// restarting (connection refused, 5xx), a node locked by a conductor busy
	// with it (409 NodeLocked), a transition still running when the caller's
	// deadline passed. Retry with backoff; every operation here is idempotent.
	Transient ErrorKind = "transient"
	// Invalid means the request was refused as wrong (bad input caught here,
	// 4xx validation from Ironic): retrying the same input cannot help.
	Invalid ErrorKind = "invalid"
	// Conflict means Ironic's records disagree with the request in a way a
	// human has to resolve: a MAC already enrolled on another node, a node
	// deployed with an instance that decommissioning would destroy.
	Conflict ErrorKind = "conflict"
	// Failed means Ironic accepted a transition and it failed; LastError
	// holds Ironic's reason (e.g. the BMC did not answer). Retrying is
	// pointless until the cause (BMC address, credentials) is fixed.
	Failed ErrorKind = "failed"
	// NotFound means there is no such node or aggregate.
	NotFound ErrorKind = "not-found"
)

// Error is every error this package returns for an operation on Ironic or
// Nova. Its message never contains a BMC password.
type Error struct {
	Kind ErrorKind
	// Op is the operation, e.g. "enroll", "manage".
	Op string
	// Node is the serial (Ironic node name) or aggregate concerned.
	Node string
	// Status is the HTTP status Ironic or Nova answered, 0 if none.
	Status int
	// LastError is Ironic's last_error after a failed transition.
	LastError string
	msg       string
	// cause is kept only for errors that carry no response text (context
	// and network errors), so unwrapping cannot reveal anything unredacted.
	cause error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Op)
	if e.Node != "" {
		b.WriteString(" " + e.Node)
	}
	b.WriteString(": " + e.msg)
	if e.LastError != "" && !strings.Contains(e.msg, e.LastError) {
		b.WriteString(": last_error: " + e.LastError)
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.cause }

// IsRetryable reports whether err is worth retrying as it is: a transient
// failure of Ironic or Nova rather than a problem with the request or the
// hardware. Unknown errors are not retryable, so they reach a human instead
// of looping.
func IsRetryable(err error) bool {
	return KindOf(err) == Transient
}

// KindOf returns the kind of an error from this package, "" for other errors.
func KindOf(err error) ErrorKind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return ""
}

// IsNotFound reports whether err says the node or aggregate does not exist.
func IsNotFound(err error) bool { return KindOf(err) == NotFound }

// LastErrorOf returns Ironic's last_error carried by err, if any: what the
// lifecycle shows staff in `attention`.
func LastErrorOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.LastError
	}
	return ""
}

// newError builds an Error with the given secrets removed from its text.
func newError(kind ErrorKind, op, node, msg string, secrets []string) *Error {
	return &Error{Kind: kind, Op: op, Node: node, msg: redact(msg, secrets)}
}

// classify turns an error from gophercloud into an Error. secrets are
// values (the BMC password) that must not appear in the message even if
// Ironic echoes them back.
func classify(op, node string, err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	var own *Error
	if errors.As(err, &own) {
		return err
	}
	var code gophercloud.ErrUnexpectedResponseCode
	if errors.As(err, &code) {
		fault := faultString(code.Body)
		e := newError(kindOfStatus(code.Actual, fault), op, node,
			fmt.Sprintf("%s %d: %s", code.Method, code.Actual, fault), secrets)
		e.Status = code.Actual
		return e
	}
	kind := Invalid
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		kind = Transient
	case isNetwork(err):
		kind = Transient
	}
	e := newError(kind, op, node, err.Error(), secrets)
	if kind == Transient {
		e.cause = err
	}
	return e
}

func kindOfStatus(status int, fault string) ErrorKind {
	switch {
	case status >= 500, status == http.StatusTooManyRequests, status == http.StatusRequestTimeout:
		return Transient
	case status == http.StatusNotFound:
		return NotFound
	case status == http.StatusConflict:
		// Ironic answers 409 both for "a conductor holds the node's lock,
		// try later" and for real conflicts (duplicate name or MAC).
		if isNodeLocked(fault) {
			return Transient
		}
		return Conflict
	default:
		return Invalid
	}
}

// isNodeLocked recognises Ironic's NodeLocked and its relatives by their
// message, the only place Ironic says which 409 it is.
func isNodeLocked(fault string) bool {
	f := strings.ToLower(fault)
	return strings.Contains(f, "is locked by host") || strings.Contains(f, "please retry") ||
		strings.Contains(f, "try again later")
}

// faultString digs the human message out of Ironic's error body, whose
// error_message is itself JSON in a string; Nova uses {"<kind>":
// {"message": ...}}. Anything else is returned trimmed.
func faultString(body []byte) string {
	var ironic struct {
		ErrorMessage string `json:"error_message"`
	}
	if json.Unmarshal(body, &ironic) == nil && ironic.ErrorMessage != "" {
		var inner struct {
			Faultstring string `json:"faultstring"`
		}
		if json.Unmarshal([]byte(ironic.ErrorMessage), &inner) == nil && inner.Faultstring != "" {
			return inner.Faultstring
		}
		return ironic.ErrorMessage
	}
	var nova map[string]struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(body, &nova) == nil {
		for _, v := range nova {
			if v.Message != "" {
				return v.Message
			}
		}
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 512 {
		s = s[:512] + "..."
	}
	return s
}

func isNetwork(err error) bool {
	var ne net.Error
	var ue *url.Error
	return errors.As(err, &ne) || errors.As(err, &ue) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// redact removes secret values from s, however they got there.
func redact(s string, secrets []string) string {
	for _, secret := range secrets {
		if secret != "" {
			s = strings.ReplaceAll(s, secret, "***")
		}
	}
	return s
}
