package bpf

import (
	"errors"
	"os"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/stretchr/testify/require"
)

// The verifier is the judge of whether the C is acceptable; this loads every
// program into the running kernel.
func TestProgramsPassTheVerifier(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("loading BPF programs needs root")
	}
	require.NoError(t, rlimit.RemoveMemlock())
	var objs LbObjects
	err := LoadLbObjects(&objs, nil)
	var verr *ebpf.VerifierError
	if errors.As(err, &verr) {
		t.Fatalf("verifier rejected the programs: %+v", verr)
	}
	require.NoError(t, err)
	t.Cleanup(func() { _ = objs.Close() })
	require.NotNil(t, objs.XdpBalance)
	require.NotNil(t, objs.XdpDecap)
	require.NotNil(t, objs.XdpPass)
}
