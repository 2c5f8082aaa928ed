package bmcsim

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
)

// Fleet is a set of simulated BMCs started from one Config.
type Fleet struct {
	cfg       Config
	bmcs      []*BMC
	byID      map[string]*BMC
	ca        *certAuthority
	admin     *http.Server
	adminAddr string
	qemu      *qemuFleet
	once      sync.Once
}

// Start brings up every BMC of cfg on its own listener. On error nothing
// is left running.
func Start(cfg Config) (*Fleet, error) {
	if cfg.Mockup != "" && cfg.Vendor == "" {
		t, err := loadMockup(cfg.Mockup)
		if err != nil {
			return nil, err
		}
		cfg.Vendor = detectVendor(t)
	}
	cfg = cfg.withDefaults()
	if cfg.Mockup != "" && cfg.Vendor == VendorMixed {
		return nil, errors.New("a mockup tree is one vendor; mixed cannot be used with it")
	}
	if err := cfg.Faults.validate(); err != nil {
		return nil, err
	}
	addrs, err := cfg.addresses()
	if err != nil {
		return nil, err
	}
	f := &Fleet{cfg: cfg, byID: map[string]*BMC{}}
	if !cfg.InsecureHTTP {
		if f.ca, err = newCertAuthority(); err != nil {
			return nil, err
		}
	}
	if cfg.QEMU != nil {
		if f.qemu, err = startQEMU(*cfg.QEMU); err != nil {
			return nil, err
		}
	}
	flavours := &flavourCache{mockup: cfg.Mockup, renameIDs: cfg.RenameIDs, models: map[string]*model{}}
	for i, addr := range addrs {
		vendor := vendorOf(cfg, i)
		m, err := flavours.model(vendor)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s flavour: %w", vendor, err)
		}
		b, err := f.newBMC(i, vendor, addr, m)
		if err != nil {
			f.Close()
			return nil, err
		}
		if f.qemu.covers(i) {
			h, err := newQEMUHost(b, f.qemu, i)
			if err != nil {
				f.Close()
				return nil, fmt.Errorf("bmc %s: qemu host: %w", b.id, err)
			}
			b.hw = h
		}
		if err := b.start(); err != nil {
			b.hw.close()
			f.Close()
			return nil, fmt.Errorf("bmc %s on %s: %w", b.id, addr, err)
		}
		f.bmcs = append(f.bmcs, b)
		f.byID[b.id] = b
	}
	if cfg.AdminAddr != "" {
		ln, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("admin endpoint: %w", err)
		}
		f.adminAddr = ln.Addr().String()
		f.admin = &http.Server{Handler: f.AdminHandler(), ErrorLog: discardLogger()}
		go func() { _ = f.admin.Serve(ln) }()
	}
	return f, nil
}

func defaultUser(vendor string) string {
	switch vendor {
	case VendorDell:
		return "root"
	case VendorHPE:
		return "Administrator"
	case VendorSupermicro:
		return "ADMIN"
	}
	return "admin"
}

// serialFor follows each vendor's serial shape so that inventory code that
// parses them sees plausible values.
func serialFor(vendor string, i int) string {
	switch vendor {
	case VendorDell:
		return fmt.Sprintf("SIM%04d", i+1)
	case VendorHPE:
		return fmt.Sprintf("MXQ%07d", i+1)
	case VendorSupermicro:
		return fmt.Sprintf("S4210%09d", i+1)
	}
	return fmt.Sprintf("MF%08d", i+1)
}

func (f *Fleet) newBMC(i int, vendor, addr string, m *model) (*BMC, error) {
	host, _, _ := net.SplitHostPort(addr)
	b := &BMC{
		id: fmt.Sprintf("bmc-%04d", i+1), vendor: vendor, address: addr, scheme: "https",
		username: f.cfg.Username, password: f.cfg.Password,
		serial: serialFor(vendor, i), uuid: fmt.Sprintf("4d460000-0000-4000-8000-%012x", i+1),
		cfg: f.cfg, m: m, closing: make(chan struct{}),
		rng:      rand.New(rand.NewPCG(uint64(i)+1, 0x6d66^f.cfg.Seed)),
		faults:   f.cfg.Faults,
		power:    PowerOff,
		boot:     BootOverride{Target: "None", Enabled: "Disabled", Mode: "UEFI"},
		sessions: map[string]*session{}, systemProps: map[string]any{},
		host: HostInfo{State: HostOff},
	}
	b.hw = simHost{b}
	if b.username == "" {
		b.username = defaultUser(vendor)
	}
	if b.password == "" {
		b.password = randomHex(8)
	}
	b.accounts = newAccounts(b.username, b.password)
	for nic := 0; nic < 2; nic++ {
		b.macs = append(b.macs, fmt.Sprintf("02:4d:46:%02x:%02x:%02x", (i>>8)&0xff, i&0xff, nic))
	}
	if f.cfg.InsecureHTTP {
		b.scheme = "http"
	} else {
		tc, err := f.ca.configFor(host)
		if err != nil {
			return nil, err
		}
		b.tlsConfig = tc
	}
	if sd := m.tree.get(m.system); sd != nil {
		if boot := mapOf(sd.body["Boot"]); boot != nil {
			if mode, _ := boot["BootSourceOverrideMode"].(string); mode != "" {
				b.boot.Mode = mode
			}
		}
	}
	b.bios = newBiosState(m)
	b.volumes = newVolumes(m)
	b.media = make([]mediaState, len(m.mediaSlots))
	for i := range b.media {
		b.media[i].writeProtected = true
	}
	b.logEvent("OK", "The BMC started")
	return b, nil
}

// BMCs lists the fleet in manifest order.
func (f *Fleet) BMCs() []*BMC { return append([]*BMC(nil), f.bmcs...) }

// BMC finds a BMC by id; nil when there is none.
func (f *Fleet) BMC(id string) *BMC { return f.byID[id] }

// SetFaults applies the same faults to every BMC.
func (f *Fleet) SetFaults(faults Faults) {
	for _, b := range f.bmcs {
		b.SetFaults(faults)
	}
}

// FleetCounters are the side effects of every BMC, one read of each.
type FleetCounters struct {
	Total Counters            `json:"total"`
	BMCs  map[string]Counters `json:"bmcs"`
}

// Counters reads every BMC's counters and adds them up.
func (f *Fleet) Counters() FleetCounters {
	out := FleetCounters{BMCs: make(map[string]Counters, len(f.bmcs))}
	for _, b := range f.bmcs {
		c := b.Counters()
		out.BMCs[b.id] = c
		out.Total = out.Total.plus(c)
	}
	return out
}

// DropSessions loses the sessions of every BMC.
func (f *Fleet) DropSessions() {
	for _, b := range f.bmcs {
		b.DropSessions()
	}
}

// CACertPEM is the certificate that signed every BMC's TLS certificate
// (nil with InsecureHTTP); trust it to verify the fleet.
func (f *Fleet) CACertPEM() []byte {
	if f.ca == nil {
		return nil
	}
	return append([]byte(nil), f.ca.pem...)
}

// AdminAddress is where the admin endpoint listens ("" if not started).
func (f *Fleet) AdminAddress() string { return f.adminAddr }

// Close stops every BMC, host activity and the admin endpoint.
func (f *Fleet) Close() error {
	f.once.Do(func() {
		if f.admin != nil {
			_ = f.admin.Close()
		}
		var wg sync.WaitGroup
		for _, b := range f.bmcs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b.close()
			}()
		}
		wg.Wait()
		f.qemu.close()
	})
	return nil
}
