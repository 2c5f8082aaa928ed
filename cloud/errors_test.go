package cloud

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"syscall"
	"testing"

	"github.com/gophercloud/gophercloud/v2"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ironicFault is an error body the way Ironic sends it: JSON whose
// error_message is itself JSON in a string.
func ironicFault(status int, fault string) error {
	inner := fmt.Sprintf(`{"faultcode": "Client", "faultstring": %q, "debuginfo": null}`, fault)
	body := fmt.Sprintf(`{"error_message": %q}`, inner)
	return gophercloud.ErrUnexpectedResponseCode{Method: "POST", URL: "http://127.0.0.1:6385/v1/nodes", Actual: status, Body: []byte(body)}
}

func TestErrorMapping(t *testing.T) {
	refused := &url.Error{Op: "Get", URL: "http://127.0.0.1:6385/v1/nodes/SN1",
		Err: &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}}
	for _, tc := range []struct {
		name string
		err  error
		kind ErrorKind
	}{
		{"Ironic internal error", ironicFault(500, "Internal Server Error"), Transient},
		{"no free conductor worker", ironicFault(503, "Requested action cannot be performed due to lack of free conductor workers."), Transient},
		{"node locked by a conductor", ironicFault(409, "Node 8fbd795f is locked by host 127.0.0.1, please retry after the current operation is completed."), Transient},
		{"duplicate node name", ironicFault(409, "A node with name SN1 already exists."), Conflict},
		{"MAC on another node", ironicFault(409, "A port with MAC address 52:54:00:aa:00:01 already exists."), Conflict},
		{"validation", ironicFault(400, "Expected valid MAC address for address: zz"), Invalid},
		{"unknown driver", ironicFault(400, "No valid host was found. Reason: No conductor service registered which supports driver nosuch."), Invalid},
		{"forbidden", ironicFault(403, "Access was denied to this resource."), Invalid},
		{"missing", ironicFault(404, "Node SN9 could not be found."), NotFound},
		{"rate limited", ironicFault(429, "Too many requests"), Transient},
		{"connection refused", refused, Transient},
		{"connection dropped", fmt.Errorf("read: %w", io.ErrUnexpectedEOF), Transient},
		{"deadline", context.DeadlineExceeded, Transient},
		{"something unknown", errors.New("json: cannot unmarshal number into Go value"), Invalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := classify("enroll", "SN1", tc.err)
			require.Error(t, err)
			assert.Equal(t, tc.kind, KindOf(err), "%v", err)
			assert.Equal(t, tc.kind == Transient, IsRetryable(err))
		})
	}
	assert.NoError(t, classify("enroll", "SN1", nil))
	assert.False(t, IsRetryable(errors.New("not from this package")), "foreign errors are not retried blindly")
	assert.Equal(t, ErrorKind(""), KindOf(errors.New("x")))
}

func TestErrorMessagesCarryIronicFaultAndHideThePassword(t *testing.T) {
	const password = "hunter2-bmc"
	err := classify("enroll", "SN1",
		ironicFault(400, "Invalid driver_info: redfish_password "+password+" is not valid"), password)
	assert.NotContains(t, err.Error(), password)
	assert.Contains(t, err.Error(), "redfish_password *** is not valid", "the fault text itself is kept")
	assert.Contains(t, err.Error(), "enroll SN1")
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 400, e.Status)
	assert.Nil(t, errors.Unwrap(err), "HTTP errors are not unwrapped to their unredacted original")
}

func TestTransientErrorsUnwrapToTheirCause(t *testing.T) {
	err := classify("manage", "SN1", fmt.Errorf("polling: %w", context.DeadlineExceeded))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
}

func TestLastErrorIsInMessageAndAccessor(t *testing.T) {
	err := error(&Error{Kind: Failed, Op: "manage", Node: "SN1", msg: `node ended in "enroll" instead of "manageable"`,
		LastError: "Redfish connection failed for node SN1"})
	assert.Equal(t, `manage SN1: node ended in "enroll" instead of "manageable": last_error: Redfish connection failed for node SN1`, err.Error())
	assert.Equal(t, "Redfish connection failed for node SN1", LastErrorOf(fmt.Errorf("activity: %w", err)))
	assert.False(t, IsRetryable(err))
}

func TestClientOptionsAreChecked(t *testing.T) {
	ctx := context.Background()
	for _, opts := range []IronicOptions{
		{},
		{URL: "127.0.0.1:6385"},
		{URL: "http://127.0.0.1:6385", Cloud: "prod"},
	} {
		_, err := NewIronic(ctx, opts)
		assert.Error(t, err, "%+v", opts)
	}
	c, err := NewIronic(ctx, IronicOptions{URL: "http://127.0.0.1:6385"})
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:6385/v1/", c.client.Endpoint)
	c, err = NewIronic(ctx, IronicOptions{URL: "http://127.0.0.1:6385/v1/"})
	require.NoError(t, err)
	assert.Equal(t, "http://127.0.0.1:6385/v1/", c.client.Endpoint)

	_, err = NewIronic(ctx, IronicOptions{Cloud: "nowhere", CloudsYAML: "/nonexistent/clouds.yaml"})
	assert.Error(t, err)
	_, err = NewCompute(ctx, ComputeOptions{})
	assert.Error(t, err)
}

// Validation needs no Ironic: a client aimed at a port nothing listens on
// still answers Invalid (not the Transient a request would give), which
// shows bad input is refused before anything is sent.
func TestBadSpecIsRefusedBeforeAnyRequest(t *testing.T) {
	c, err := NewIronic(context.Background(), IronicOptions{URL: "http://" + closedPort(t)})
	require.NoError(t, err)
	good := fakeSpec("SN-valid")
	good.HardwareType = HardwareRedfish
	_, err = good.validate()
	require.NoError(t, err)
	_, err = c.EnrollNode(context.Background(), good)
	require.True(t, IsRetryable(err), "a valid spec does reach for Ironic: %v", err)

	for name, mutate := range map[string]func(*NodeSpec){
		"empty serial":         func(s *NodeSpec) { s.Serial = "" },
		"serial with a slash":  func(s *NodeSpec) { s.Serial = "SN/1" },
		"bad MAC":              func(s *NodeSpec) { s.MACs = []string{"52:54:00:zz:00:01"} },
		"eight-byte MAC":       func(s *NodeSpec) { s.MACs = []string{"52:54:00:aa:00:01:02:03"} },
		"MAC twice":            func(s *NodeSpec) { s.MACs = []string{"52:54:00:aa:00:01", "52:54:00:AA:00:01"} },
		"negative cpus":        func(s *NodeSpec) { s.CPUs = -2 },
		"BMC address not URL":  func(s *NodeSpec) { s.BMC.Address = "10.0.0.5" },
		"BMC address ftp":      func(s *NodeSpec) { s.BMC.Address = "ftp://10.0.0.5" },
		"no BMC password":      func(s *NodeSpec) { s.BMC.Password = "" },
		"system ID not a path": func(s *NodeSpec) { s.BMC.SystemID = "1" },
		"conductor group":      func(s *NodeSpec) { s.ConductorGroup = "rack R07" },
	} {
		t.Run(name, func(t *testing.T) {
			spec := good
			spec.MACs = append([]string(nil), good.MACs...)
			mutate(&spec)
			_, err := c.EnrollNode(context.Background(), spec)
			assert.Equal(t, Invalid, KindOf(err), "%v", err)
			assert.NotContains(t, err.Error(), "s3cret")
		})
	}
	_, err = c.GetNode(context.Background(), "SN/1")
	assert.Equal(t, Invalid, KindOf(err))
}

func TestFailureDomainNamesAggregateAndConductorGroup(t *testing.T) {
	f := FailureDomain{Site: "DC1 Tokyo", Room: "A", Rack: "R07"}
	assert.Equal(t, Aggregate{Name: "DC1 Tokyo-A-R07", AvailabilityZone: "DC1 Tokyo"}, f.Aggregate())
	assert.Equal(t, "dc1-tokyo", f.ConductorGroup())
	assert.True(t, validConductorGroup(f.ConductorGroup()))
	assert.Equal(t, "dc1/A/R07", FailureDomain{Site: "dc1", Room: "A", Rack: "R07"}.String())
	assert.Equal(t, "dc1/R07", FailureDomain{Site: "dc1", Rack: "R07"}.String(), "no empty parts")
}
