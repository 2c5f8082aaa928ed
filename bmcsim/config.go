package bmcsim

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Vendor names accepted in Config.Vendor.
const (
	VendorDell       = "dell"
	VendorHPE        = "hpe"
	VendorSupermicro = "supermicro"
	VendorGeneric    = "generic"
	VendorMixed      = "mixed"
)

// Config describes a fleet. The zero value plus a Count is a usable fleet of
// generic BMCs on 127.0.0.1 with ephemeral HTTPS ports.
type Config struct {
	// Count is the number of BMCs. With IPRange it may be 0: one per address.
	Count int
	// ListenIP is the address every BMC binds when IPRange is empty.
	ListenIP string
	// BasePort is the port of the first BMC; BMC i listens on BasePort+i.
	// 0 lets the kernel choose a free port per BMC.
	BasePort int
	// IPRange ("127.1.0.1-127.1.3.232") gives each BMC its own address, all on Port.
	IPRange string
	// Port is the port used with IPRange (443 when 0).
	Port int
	// Vendor is dell, hpe, supermicro, generic or mixed (round robin).
	Vendor string
	// Mockup is a DMTF mockup tree served as the base of every BMC instead of
	// the built-in flavour; Vendor then only selects the quirks.
	Mockup string
	// RenameIDs gives the mockup's first System, Manager and Chassis the
	// ID "1", for recorded trees whose fictional IDs bmclib ignores.
	RenameIDs bool
	// InsecureHTTP serves plain HTTP instead of self-signed HTTPS.
	InsecureHTTP bool
	// Username and Password are shared by every BMC when set; otherwise each
	// BMC gets the vendor's default user and a generated password.
	Username string
	Password string
	// PostDelay is how long the host takes from power-on to "On" (POST).
	PostDelay time.Duration
	// ShutdownDelay is how long a graceful shutdown takes.
	ShutdownDelay time.Duration
	// InstallDelay is how long an OS install takes after the netboot fetches.
	InstallDelay time.Duration
	// TaskDuration is how long a TaskService task runs before it completes.
	TaskDuration time.Duration
	// RebootDuration is how long the BMC is unreachable when it reboots.
	RebootDuration time.Duration
	// Speed divides every delay above; 10 makes a 2-minute POST take 12s.
	Speed float64
	// SessionTimeout ends idle sessions (SessionService.SessionTimeout).
	SessionTimeout time.Duration
	// BootURL is the script a netbooting host fetches first. ${mac},
	// ${mac:hexhyp}, ${serial}, ${uuid} and ${bmc} are replaced per host.
	BootURL string
	// Faults applies to every BMC from the start.
	Faults Faults
	// AdminAddr, when set, serves the admin endpoint (faults, state) there.
	AdminAddr string
	// Seed varies which requests the fault rates hit; the same seed and
	// the same requests give the same faults.
	Seed uint64
	// QEMU, when set, puts a real VM behind the first QEMU.Hosts BMCs
	// (all when 0) instead of the simulated host.
	QEMU *QEMUConfig
}

// Faults are the misbehaviours a BMC can be told to show. They apply to
// every Redfish request of the BMC; the admin endpoint is never affected.
type Faults struct {
	// Latency is added before each answer, plus a uniform random share of
	// LatencyJitter, so that clients see a latency distribution.
	Latency       time.Duration `json:"latency,omitempty"`
	LatencyJitter time.Duration `json:"latency_jitter,omitempty"`
	// ErrorRate is the fraction (0..1) of requests answered with ErrorStatus.
	ErrorRate float64 `json:"error_rate,omitempty"`
	// ErrorStatus is 500, 503 or 429; 0 picks 500 or 503 at random per
	// request.
	ErrorStatus int `json:"error_status,omitempty"`
	// RetryAfter, when above 0, is the Retry-After (whole seconds) on
	// injected 503 and 429 answers, as a busy iDRAC asks clients to come
	// back later. Off by default: every 503 asking for seconds would slow
	// a fault run to a crawl with clients that honour it.
	RetryAfter int `json:"retry_after,omitempty"`
	// RetryAfterDate sends RetryAfter as an HTTP-date instead of seconds.
	RetryAfterDate bool `json:"retry_after_date,omitempty"`
	// Hang accepts requests and never answers them.
	Hang bool `json:"hang,omitempty"`
	// HangRate is the fraction (0..1) of requests that hang until the
	// client gives up; the BMC does nothing for them.
	HangRate float64 `json:"hang_rate,omitempty"`
	// SessionDropRate is the fraction (0..1) of session-authenticated
	// requests on which the BMC loses every session first, as a BMC whose
	// session store crashed: that request and any other holding a token
	// get 401 until the client logs in again.
	SessionDropRate float64 `json:"session_drop_rate,omitempty"`
	// TaskException makes tasks created from now on end in Exception.
	TaskException bool `json:"task_exception,omitempty"`
	// Tree names the tree faults (see TreeFaultNames) the BMC serves:
	// dangling links, empty collections, missing or oddly typed properties.
	Tree []string `json:"tree,omitempty"`
}

func (c Config) withDefaults() Config {
	if c.ListenIP == "" {
		c.ListenIP = "127.0.0.1"
	}
	if c.Port == 0 {
		c.Port = 443
	}
	if c.Vendor == "" {
		c.Vendor = VendorGeneric
	}
	c.Vendor = strings.ToLower(c.Vendor)
	if c.Speed <= 0 {
		c.Speed = 1
	}
	if c.PostDelay == 0 {
		c.PostDelay = 30 * time.Second
	}
	if c.ShutdownDelay == 0 {
		c.ShutdownDelay = 5 * time.Second
	}
	if c.InstallDelay == 0 {
		c.InstallDelay = 5 * time.Minute
	}
	if c.TaskDuration == 0 {
		c.TaskDuration = 20 * time.Second
	}
	if c.RebootDuration == 0 {
		c.RebootDuration = 60 * time.Second
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = 30 * time.Minute
	}
	return c
}

func (c Config) scaled(d time.Duration) time.Duration {
	return time.Duration(float64(d) / c.Speed)
}

// addresses lists the listen address of each BMC.
func (c Config) addresses() ([]string, error) {
	switch c.Vendor {
	case VendorDell, VendorHPE, VendorSupermicro, VendorGeneric, VendorMixed:
	default:
		return nil, fmt.Errorf("unknown vendor %q (want dell, hpe, supermicro, generic or mixed)", c.Vendor)
	}
	if c.IPRange == "" {
		if c.Count <= 0 {
			return nil, fmt.Errorf("count must be positive")
		}
		ip, err := netip.ParseAddr(c.ListenIP)
		if err != nil {
			return nil, fmt.Errorf("listen ip: %w", err)
		}
		out := make([]string, c.Count)
		for i := range out {
			port := 0
			if c.BasePort > 0 {
				port = c.BasePort + i
				if port > 65535 {
					return nil, fmt.Errorf("base port %d leaves no room for %d BMCs", c.BasePort, c.Count)
				}
			}
			out[i] = netip.AddrPortFrom(ip, uint16(port)).String()
		}
		return out, nil
	}
	first, last, ok := strings.Cut(c.IPRange, "-")
	if !ok {
		return nil, fmt.Errorf("ip range %q: want FIRST-LAST", c.IPRange)
	}
	from, err := netip.ParseAddr(strings.TrimSpace(first))
	if err != nil {
		return nil, fmt.Errorf("ip range: %w", err)
	}
	to, err := netip.ParseAddr(strings.TrimSpace(last))
	if err != nil {
		return nil, fmt.Errorf("ip range: %w", err)
	}
	if to.Less(from) {
		return nil, fmt.Errorf("ip range %q runs backwards", c.IPRange)
	}
	var out []string
	for a := from; ; a = a.Next() {
		if c.Count > 0 && len(out) == c.Count {
			break
		}
		out = append(out, netip.AddrPortFrom(a, uint16(c.Port)).String())
		if a == to {
			break
		}
		if len(out) > 1<<16 {
			return nil, fmt.Errorf("ip range %q is too large", c.IPRange)
		}
	}
	if c.Count > len(out) {
		return nil, fmt.Errorf("ip range %q has %d addresses, %d BMCs asked", c.IPRange, len(out), c.Count)
	}
	return out, nil
}

func vendorOf(c Config, i int) string {
	if c.Vendor != VendorMixed {
		return c.Vendor
	}
	return []string{VendorDell, VendorHPE, VendorSupermicro, VendorGeneric}[i%4]
}
