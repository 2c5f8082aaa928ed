package hardware

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	bmclibErrs "github.com/bmc-toolbox/bmclib/v2/errors"
	"github.com/stmcginnis/gofish/common"
	"github.com/stretchr/testify/assert"
)

// redfishBody is the shape of a BMC's error answer as gofish keeps it.
const redfishBody = `{"error":{"code":"Base.1.8.GeneralError","message":"m","@Message.ExtendedInfo":[{"MessageId":"Base.1.8.GeneralError","MessageArgs":["500"]}]}}`

func gofishErr(status int) error {
	return common.ConstructError(status, []byte(redfishBody))
}

// TestClassify covers the error forms bmclib v2.3.5 and gofish v0.20.0
// produce: typed gofish errors, the same re-wrapped as text by bmclib
// (errors.Wrap(ErrNotAuthenticated, err.Error()), multierror lists,
// gofish's JSON-quoted "failed to retrieve some items"), net/http
// transport errors and bmclib's own sentences.
func TestClassify(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "https://127.0.0.1:401/redfish/v1", Err: &net.OpError{Op: "dial", Net: "tcp",
		Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}}
	cases := []struct {
		name string
		err  error
		want ErrorKind
	}{
		{"gofish 401", gofishErr(401), AuthFailed},
		{"gofish 403", gofishErr(403), AuthFailed},
		{"gofish 404", gofishErr(404), Unsupported},
		{"gofish 405", gofishErr(405), Unsupported},
		{"gofish 501", gofishErr(501), Unsupported},
		{"gofish 400", gofishErr(400), Rejected},
		{"gofish 409", gofishErr(409), Rejected},
		{"gofish 412", gofishErr(412), Transient},
		{"gofish 500", gofishErr(500), Transient},
		{"gofish 503", gofishErr(503), Transient},
		{"gofish 429", gofishErr(429), Transient},
		{"wrapped gofish 409", fmt.Errorf("create volume: %w", gofishErr(409)), Rejected},
		{"iDRAC pending job as text", errors.New(`400: {"error":{"code":"IDRAC.2.8.SYS011","message":"Pending configuration values are already committed, unable to perform another set operation."}}`), Rejected},
		{"bmclib re-wrapped 503", fmt.Errorf("%s: %w", "503: "+redfishBody, bmclibErrs.ErrNotAuthenticated), Transient},
		{"bmclib re-wrapped 401", fmt.Errorf("%s: %w", "401: "+redfishBody, bmclibErrs.ErrNotAuthenticated), AuthFailed},
		{"multierror list", errors.New("2 errors occurred:\n\t* provider: gofish: 401: " + redfishBody + "\n\t* no compatible providers\n\n"), AuthFailed},
		{"gofish items list", errors.New(`failed to retrieve some items: [{"link":"/redfish/v1/Systems","error":"404: {\"error\":{}}"}]`), Unsupported},
		{"power cycle of an off host", errors.New("power cycle failed: Command not supported in present state: Off"), Rejected},
		{"advertised reset types", errors.New("reset type 'GracefulShutdown' is not supported by this service"), Unsupported},
		{"no BIOS", fmt.Errorf("read: %w", bmclibErrs.ErrNoBiosAttributes), Unsupported},
		{"no media slot", errors.New("no virtual media found at Manager or System resource paths"), Unsupported},
		{"no CD slot", errors.New("not a supported media type: CD. supported media types: [USBStick]"), Unsupported},
		{"invalid boot device", errors.New("invalid boot device"), Rejected},
		{"connection refused (port 401 is no status)", refused, Transient},
		{"connection refused as text", errors.New(`Get "https://10.0.0.9:401/redfish/v1": dial tcp 10.0.0.9:401: connect: connection refused`), Transient},
		{"connection reset", fmt.Errorf("read: %w", syscall.ECONNRESET), Transient},
		{"client timeout", errors.New(`Get "https://bmc/redfish/v1/Systems": context deadline exceeded (Client.Timeout exceeded while awaiting headers)`), Transient},
		{"context deadline", fmt.Errorf("wait: %w", context.DeadlineExceeded), Transient},
		{"EOF", fmt.Errorf(`Post "https://bmc/redfish/v1/SessionService/Sessions": %w`, errors.New("EOF")), Transient},
		{"untrusted certificate", &url.Error{Op: "Get", URL: "https://bmc", Err: x509.UnknownAuthorityError{}}, AuthFailed},
		{"certificate as text", errors.New("tls: failed to verify certificate: x509: certificate signed by unknown authority"), AuthFailed},
		{"something new", errors.New("the BMC said something nobody has seen"), Transient},
		{"kept kind", &Error{Kind: Unsupported, Op: "x", Err: errors.New("503: gone")}, Unsupported},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := classify("op", tc.err)
			assert.Equal(t, tc.want, got.Kind, "%v", tc.err)
			assert.ErrorIs(t, got, tc.err)
		})
	}
	assert.Nil(t, classify("op", nil))
}

func TestScrubRemovesPassword(t *testing.T) {
	err := scrub(classify("login", errors.New("401: user admin password hunter2 refused")), "hunter2")
	assert.NotContains(t, err.Error(), "hunter2")
	var he *Error
	assert.ErrorAs(t, err, &he)
	assert.Equal(t, AuthFailed, he.Kind)
	plain := errors.New("no secret here")
	assert.Same(t, plain, scrub(plain, "hunter2"))
}
