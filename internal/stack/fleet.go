package stack

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/metalflow/metalflow/bmcsim"
)

// FleetConfig is the simulated fleet: Redfish BMCs and the hosts behind
// them, netbooting from the stack's boot service.
type FleetConfig struct {
	Servers int
	// Vendor is dell, hpe, supermicro, generic or mixed.
	Vendor string
	// Speed divides real hardware's delays, so that a demo finishes while
	// someone watches.
	Speed float64
	// NoDelays takes every hardware delay to a nanosecond instead, so that
	// what a benchmark measures is metalflow, not the simulated hardware.
	NoDelays bool
	// AdminAddress serves the fleet's admin endpoint (state, counters,
	// fault injection); empty: none.
	AdminAddress string
	// ManifestPath receives the fleet's manifest (addresses, credentials,
	// serials, MACs) as JSON; empty: none.
	ManifestPath string
	// QEMU puts real VMs behind the first QEMU.Hosts BMCs; nil: none.
	QEMU *bmcsim.QEMUConfig
}

// Real hardware's delays, which FleetConfig.Speed divides.
const (
	realPOST     = 60 * time.Second
	realShutdown = 10 * time.Second
	realInstall  = 5 * time.Minute
	realTask     = 20 * time.Second
	realReboot   = 60 * time.Second
)

func startFleet(log *slog.Logger, cfg FleetConfig, publicURL string) (*bmcsim.Fleet, error) {
	sim := bmcsim.Config{
		Count:          cfg.Servers,
		Vendor:         cfg.Vendor,
		AdminAddr:      cfg.AdminAddress,
		PostDelay:      realPOST,
		ShutdownDelay:  realShutdown,
		InstallDelay:   realInstall,
		TaskDuration:   realTask,
		RebootDuration: realReboot,
		Speed:          cfg.Speed,
		BootURL:        publicURL + "/boot/ipxe?mac=${mac}",
		QEMU:           cfg.QEMU,
	}
	if cfg.NoDelays {
		// Not zero: bmcsim reads zero as "its default delay".
		sim.PostDelay, sim.ShutdownDelay, sim.InstallDelay, sim.TaskDuration, sim.RebootDuration =
			time.Nanosecond, time.Nanosecond, time.Nanosecond, time.Nanosecond, time.Nanosecond
		sim.Speed = 1
	}
	fleet, err := bmcsim.Start(sim)
	if err != nil {
		return nil, fmt.Errorf("simulated fleet: %w", err)
	}
	if cfg.ManifestPath != "" {
		f, err := os.OpenFile(cfg.ManifestPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		if err == nil {
			err = fleet.WriteManifest(f)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			_ = fleet.Close()
			return nil, fmt.Errorf("write fleet manifest: %w", err)
		}
	}
	log.Info("simulated fleet started", "servers", cfg.Servers, "vendor", cfg.Vendor, "speed", sim.Speed,
		"manifest", cfg.ManifestPath, "admin", fleet.AdminAddress())
	return fleet, nil
}
