package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/metalflow/metalflow/bmcsim"
)

type simFleetOptions struct {
	count        int
	vendor       string
	speed        float64
	adminAddr    string
	publicURL    string
	manifestPath string
}

// startSimFleet starts `metalflow dev --sim-servers N`: simulated servers
// whose hosts netboot from this process's boot service, so a newcomer can
// provision them with curl from the README.
func startSimFleet(log *slog.Logger, o simFleetOptions) (*bmcsim.Fleet, error) {
	n, vendor, speed, manifestPath := o.count, o.vendor, o.speed, o.manifestPath
	fleet, err := bmcsim.Start(bmcsim.Config{
		Count:     n,
		Vendor:    vendor,
		AdminAddr: o.adminAddr,
		// Real hardware takes minutes to POST and install; the speed
		// divides that so a demo finishes while someone watches.
		PostDelay:      60 * time.Second,
		ShutdownDelay:  10 * time.Second,
		InstallDelay:   5 * time.Minute,
		TaskDuration:   20 * time.Second,
		RebootDuration: 60 * time.Second,
		Speed:          speed,
		BootURL:        o.publicURL + "/boot/ipxe?mac=${mac}",
	})
	if err != nil {
		return nil, fmt.Errorf("simulated fleet: %w", err)
	}
	if manifestPath != "" {
		f, err := os.OpenFile(manifestPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
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
	log.Info("simulated fleet started", "servers", n, "vendor", vendor, "speed", speed, "manifest", manifestPath, "admin", fleet.AdminAddress())
	return fleet, nil
}
