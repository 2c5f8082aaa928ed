package activities

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
)

// Provisioning runs the lifecycle's hardware steps.
type Provisioning struct {
	Inventory   *inventory.Store
	Credentials credentials.Store
	Profiles    *profiles.Catalog
	Dial        hardware.Dialer
	// InsecureTLS accepts self-signed BMC certificates (the simulator's,
	// and many real BMCs' out of the box).
	InsecureTLS bool
	// RequestTimeout bounds each BMC request (hardware.DefaultTimeout when
	// 0): a BMC that hangs costs one timeout, then a retry.
	RequestTimeout time.Duration
}

// openMachine resolves the credential and logs in. The password lives only
// in this activity's memory.
func (p *Provisioning) openMachine(ctx context.Context, ref BMCRef) (hardware.Machine, error) {
	cred, err := p.Credentials.Get(ctx, ref.CredentialRef)
	if errors.Is(err, credentials.ErrUnknownRef) {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), ErrTypeCredentialMissing, nil)
	}
	if err != nil {
		return nil, err
	}
	m, err := p.Dial(ctx, hardware.Endpoint{
		Address: ref.Address, Username: cred.Username, Password: cred.Password, InsecureTLS: p.InsecureTLS,
		Timeout: p.RequestTimeout,
	})
	if err != nil {
		return nil, classifyBMC(err)
	}
	return m, nil
}

func (p *Provisioning) withMachine(ctx context.Context, ref BMCRef, fn func(hardware.Machine) error) error {
	stop := keepAlive(ctx)
	defer stop()
	m, err := p.openMachine(ctx, ref)
	if err != nil {
		return err
	}
	defer func() { _ = m.Close(context.WithoutCancel(ctx)) }()
	return classifyBMC(fn(m))
}

// keepAliveInterval is how often a BMC activity tells Temporal its worker
// is still alive; activity options set a heartbeat timeout a few times this.
const keepAliveInterval = 5 * time.Second

// keepAlive heartbeats while a BMC conversation runs, so a worker killed in
// the middle is noticed at the heartbeat timeout rather than StartToClose
// (minutes, since BMCs can be slow). A hung BMC is bounded separately, by
// the HTTP timeout and StartToClose.
func keepAlive(ctx context.Context) (stop func()) {
	if !activity.IsActivity(ctx) {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(keepAliveInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				activity.RecordHeartbeat(ctx)
			}
		}
	}()
	return func() { close(done) }
}

// classifyBMC keeps transient BMC failures retryable and turns the rest
// into errors that park the server for a human.
func classifyBMC(err error) error {
	if err == nil {
		return nil
	}
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return err
	}
	var hw *hardware.Error
	if !errors.As(err, &hw) {
		return err
	}
	switch hw.Kind {
	case hardware.AuthFailed:
		return temporal.NewNonRetryableApplicationError("BMC refused the credential: "+hw.Error(), ErrTypeBMCAuth, nil)
	case hardware.Unsupported:
		return temporal.NewNonRetryableApplicationError("BMC does not support this: "+hw.Error(), ErrTypeBMCUnsupported, nil)
	case hardware.Rejected:
		return temporal.NewNonRetryableApplicationError("BMC rejected the request: "+hw.Error(), ErrTypeBMCRejected, nil)
	}
	return err
}

func mismatch(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), ErrTypeInventoryMismatch, nil)
}
