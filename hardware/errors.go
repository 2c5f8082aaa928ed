package hardware

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"

	"github.com/stmcginnis/gofish/common"
)

// String returns the kind's name as logs and attention messages show it.
func (k ErrorKind) String() string {
	switch k {
	case Transient:
		return "transient"
	case AuthFailed:
		return "auth-failed"
	case Unsupported:
		return "unsupported"
	case Rejected:
		return "rejected"
	}
	return "kind-" + strconv.Itoa(int(k))
}

// statusInText finds an HTTP status that gofish printed as "NNN: body".
// bmclib often re-wraps gofish errors as plain text (errors.Wrap with the
// message, not the cause), so the typed status is lost and only this
// remains, sometimes JSON-quoted inside gofish's "failed to retrieve some
// items" list. The three digits must start the text or follow a space,
// colon, '*' (multierror lists), '(' or '"' so that ports and counts do
// not match.
func statusInText(msg string) int {
	for i := 0; i+5 <= len(msg); i++ {
		if i > 0 && !strings.ContainsRune(" \t\n:*(\"", rune(msg[i-1])) {
			continue
		}
		if msg[i] < '1' || msg[i] > '5' || !isDigit(msg[i+1]) || !isDigit(msg[i+2]) || msg[i+3] != ':' || msg[i+4] != ' ' {
			continue
		}
		code, _ := strconv.Atoi(msg[i : i+3])
		return code
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// classify turns whatever bmclib, gofish or net/http returned into a
// *Error whose Kind tells the caller whether to retry, park or give up.
func classify(op string, err error) *Error {
	if err == nil {
		return nil
	}
	var he *Error
	if errors.As(err, &he) {
		return he
	}
	return &Error{Kind: kindOf(err), Op: op, Err: err}
}

func kindOf(err error) ErrorKind {
	var rf *common.Error
	if errors.As(err, &rf) && rf.HTTPReturnedStatusCode != 0 {
		return kindOfStatus(rf.HTTPReturnedStatusCode)
	}
	if k, ok := kindOfTransport(err); ok {
		return k
	}
	msg := err.Error()
	lower := strings.ToLower(msg)
	// Network failures first: a port number in "dial tcp host:401: ..." must
	// not read as a status.
	for _, s := range []string{"connection refused", "connection reset", "broken pipe", "no such host",
		"network is unreachable", "i/o timeout", "timeout exceeded", "deadline exceeded", "tls handshake timeout",
		"server closed idle connection", "unexpected eof", ": eof", "context canceled"} {
		if strings.Contains(lower, s) {
			return Transient
		}
	}
	if code := statusInText(msg); code >= 400 {
		return kindOfStatus(code)
	}
	if strings.Contains(lower, "x509:") || strings.Contains(lower, "certificate") {
		return AuthFailed
	}
	switch {
	// bmclib refuses a power cycle of a host that is off in these words; the
	// request is wrong for the present state, not unsupported.
	case strings.Contains(lower, "not supported in present state"),
		strings.Contains(lower, "invalid boot device"), strings.Contains(lower, "unknown power action"):
		return Rejected
	case strings.Contains(lower, "not supported"), strings.Contains(lower, "unsupported"),
		strings.Contains(lower, "does not support"), strings.Contains(lower, "no bios attributes"),
		strings.Contains(lower, "not implemented"), strings.Contains(lower, "no virtual media"),
		strings.Contains(lower, "not a supported"):
		return Unsupported
	}
	// Unknown failures are retried: Temporal's retry policy bounds them, and
	// parking a server for a human on a hiccup costs more than a retry.
	return Transient
}

func kindOfStatus(code int) ErrorKind {
	switch {
	case code == http.StatusUnauthorized, code == http.StatusForbidden:
		return AuthFailed
	case code == http.StatusNotFound, code == http.StatusMethodNotAllowed, code == http.StatusNotImplemented:
		return Unsupported
	// 412: the resource changed between the client's read and its write
	// (If-Match), e.g. the system resource while the host POSTs. Reading
	// again and retrying is the cure, so it is transient, not a refusal.
	case code == http.StatusRequestTimeout, code == http.StatusPreconditionFailed, code == http.StatusTooManyRequests, code >= 500:
		return Transient
	case code >= 400:
		return Rejected
	}
	return Transient
}

// kindOfTransport recognises typed network and TLS failures, which survive
// when gofish returns the net/http error unwrapped.
func kindOfTransport(err error) (ErrorKind, bool) {
	var (
		unknownCA *x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
		verify    *tls.CertificateVerificationError
	)
	switch {
	// An untrusted certificate needs a human with the right CA (or the
	// decision to skip verification), exactly like a wrong password.
	case errors.As(err, &unknownCA), errors.As(err, &invalid), errors.As(err, &hostname), errors.As(err, &verify):
		return AuthFailed, true
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled),
		errors.Is(err, syscall.ECONNREFUSED), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return Transient, true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return Transient, true
	}
	var oe *net.OpError
	if errors.As(err, &oe) {
		return Transient, true
	}
	return 0, false
}

// statusOf is the HTTP status behind err, 0 when none is known.
func statusOf(err error) int {
	var rf *common.Error
	if errors.As(err, &rf) && rf.HTTPReturnedStatusCode != 0 {
		return rf.HTTPReturnedStatusCode
	}
	if _, ok := kindOfTransport(err); ok {
		return 0
	}
	return statusInText(err.Error())
}

// scrub keeps a password out of error text, whatever a library echoed.
func scrub(err error, password string) error {
	if err == nil || password == "" || !strings.Contains(err.Error(), password) {
		return err
	}
	var he *Error
	if errors.As(err, &he) {
		return &Error{Kind: he.Kind, Op: he.Op, Err: errors.New(strings.ReplaceAll(he.Err.Error(), password, "<password>"))}
	}
	return errors.New(strings.ReplaceAll(err.Error(), password, "<password>"))
}

// isKind tells whether err is a *Error of kind k.
func isKind(err error, k ErrorKind) bool {
	var he *Error
	return errors.As(err, &he) && he.Kind == k
}
