package server

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"time"

	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/credentials"
	"github.com/metalflow/metalflow/hardware"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// Provisioning runs the steps that talk to the server's BMC over Redfish:
// the lifecycle's inspect, BIOS, RAID and install, and the decommission's
// wipe, BIOS reset and power-off.
type Provisioning struct {
	Inventory   ProvisioningInventory
	Credentials Credentials
	Profiles    *profiles.Catalog
	Dial        hardware.Dialer
	// InsecureTLS accepts self-signed BMC certificates (the simulator's,
	// and many real BMCs' out of the box).
	InsecureTLS bool
	// RequestTimeout bounds each BMC request (hardware.DefaultTimeout when
	// 0): a BMC that hangs costs one timeout, then a retry.
	RequestTimeout time.Duration
}

// ProvisioningInventory is what the BMC steps record in the CMDB: the
// hardware found, each reset and netboot done once, a deploy's plan and
// decision, the decommission's steps.
type ProvisioningInventory interface {
	GetAsset(ctx context.Context, serial string) (inventory.Asset, error)
	GetSite(ctx context.Context, name string) (inventory.Site, error)
	RegisterAsset(ctx context.Context, rec inventory.AssetRecord, actor string) (changed bool, err error)
	SetState(ctx context.Context, serial, state, actor, detail string) error
	Recorded(ctx context.Context, serial, key string) (bool, error)
	RecordOnce(ctx context.Context, serial, key string) (first bool, err error)
	IssueBoot(ctx context.Context, serial string, attempt int, macs []string, ttl time.Duration) (inventory.BootConfig, error)
	MarkCycled(ctx context.Context, serial string, attempt int) (already bool, err error)
	SetDeployPlan(ctx context.Context, serial string, attempt int, plan []byte) error
	SetBootImage(ctx context.Context, serial string, attempt int, image string) error
	DecideDeploy(ctx context.Context, serial string, attempt int, release bool, reason string) error
	BootAttempts(ctx context.Context, serial string) ([]inventory.BootConfig, error)
	MarkDiskBooted(ctx context.Context, serial string, attempt int) (already bool, err error)
	RetireBoot(ctx context.Context, serial string) error
	RecordStep(ctx context.Context, serial, key, actor, action, detail string) error
}

// Credentials resolves a BMC credential reference; credentials.Store does.
type Credentials interface {
	Get(ctx context.Context, ref string) (credentials.Credential, error)
}

// Register registers the BMC steps under their stable names.
func (p *Provisioning) Register(r activities.Registrar) {
	activities.RegisterByName(r, map[string]any{
		serverapi.InspectServerName:     p.InspectServer,
		serverapi.ConfigureBIOSName:     p.ConfigureBIOS,
		serverapi.ConfigureRAIDName:     p.ConfigureRAID,
		serverapi.StartInstallName:      p.StartInstall,
		serverapi.FinishInstallName:     p.FinishInstall,
		serverapi.DecideDeployName:      p.DecideDeploy,
		serverapi.BootFromDiskName:      p.BootFromDisk,
		serverapi.WipeServerName:        p.WipeServer,
		serverapi.ResetBIOSDefaultsName: p.ResetBIOSDefaults,
		serverapi.PowerOffServerName:    p.PowerOffServer,
	})
}

// openMachine resolves the credential and logs in. The password lives only
// in this activity's memory.
func (p *Provisioning) openMachine(ctx context.Context, ref serverapi.BMCRef) (hardware.Machine, error) {
	cred, err := p.Credentials.Get(ctx, ref.CredentialRef)
	if errors.Is(err, credentials.ErrUnknownRef) {
		return nil, temporal.NewNonRetryableApplicationError(err.Error(), stepapi.ErrTypeCredentialMissing, nil)
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

func (p *Provisioning) withMachine(ctx context.Context, ref serverapi.BMCRef, fn func(hardware.Machine) error) error {
	stop := activities.KeepAlive(ctx)
	defer stop()
	m, err := p.openMachine(ctx, ref)
	if err != nil {
		return err
	}
	defer func() { _ = m.Close(context.WithoutCancel(ctx)) }()
	return classifyBMC(fn(m))
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
		return temporal.NewNonRetryableApplicationError("BMC refused the credential: "+hw.Error(), stepapi.ErrTypeBMCAuth, nil)
	case hardware.Unsupported:
		return temporal.NewNonRetryableApplicationError("BMC does not support this: "+hw.Error(), stepapi.ErrTypeBMCUnsupported, nil)
	case hardware.Rejected:
		return temporal.NewNonRetryableApplicationError("BMC rejected the request: "+hw.Error(), stepapi.ErrTypeBMCRejected, nil)
	}
	return err
}

// checkBMCSite refuses to send the credential to a BMC outside the BMC
// networks of the site the server is racked in. The API holds a server
// registered without a location only to some site's networks; racking
// decides which, and inspection is the first step that logs in. A BMC
// given by name was checked by the API as it resolved then.
func (p *Provisioning) checkBMCSite(ctx context.Context, serial, address string) error {
	u, err := url.Parse(address)
	if err != nil {
		return nil // the dial says what is wrong with it
	}
	ip, err := netip.ParseAddr(u.Hostname())
	if err != nil {
		return nil
	}
	asset, err := p.Inventory.GetAsset(ctx, serial)
	if errors.Is(err, inventory.ErrNotFound) || err == nil && asset.Placement == nil {
		return nil
	}
	if err != nil {
		return err
	}
	site, err := p.Inventory.GetSite(ctx, asset.Placement.Site)
	if err != nil {
		return activities.InventoryError(err)
	}
	if site.AdmitsBMC(ip) {
		return nil
	}
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(
		"BMC address %s is outside the BMC networks of site %s (%s), where %s is racked: retry with its address there",
		ip, site.Name, site.BMCNetworkList(), serial), stepapi.ErrTypeBMCOutsideSite, nil)
}

func mismatch(format string, args ...any) error {
	return temporal.NewNonRetryableApplicationError(fmt.Sprintf(format, args...), stepapi.ErrTypeInventoryMismatch, nil)
}
