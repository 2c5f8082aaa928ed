package bmc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/inventory"
)

// Inventory is what checking a BMC address reads of the CMDB: the sites'
// BMC networks, and where a registered server is racked.
type Inventory interface {
	GetSite(ctx context.Context, name string) (inventory.Site, error)
	ListSites(ctx context.Context) ([]inventory.Site, error)
	GetAsset(ctx context.Context, serial string) (inventory.Asset, error)
}

// Resolver looks up the addresses of a BMC given by name.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// resolveTimeout bounds the look-up of a BMC's name within a request.
const resolveTimeout = 5 * time.Second

// Addresses decides where a worker may be sent with a BMC's credentials.
// Staff type BMC addresses; without this, a typo or a hostile caller
// could have a worker log in to the cloud's metadata service, a service on
// the worker's own host, or a network nobody declared.
type Addresses struct {
	Inventory Inventory
	Resolver  Resolver
	// AllowLoopback takes BMCs on the worker's own loopback: a simulated
	// fleet on this host.
	AllowLoopback bool
}

// Check refuses (422) a BMC address a worker must not be sent to: one that
// is, or whose name resolves to, an unspecified, link-local or multicast
// address, a loopback one unless allowed, or one outside the BMC networks
// of site. For a server not yet racked (site ""), the address must be one
// some site would take. address has passed Validate.
func (a Addresses) Check(ctx context.Context, address, site string) error {
	u, err := url.Parse(address)
	if err != nil {
		return httpx.Errorf(http.StatusBadRequest, "bmc.address %q: %v", address, err)
	}
	host := u.Hostname()
	ips, named, err := a.resolve(ctx, host)
	if err != nil {
		return err
	}
	var sites []inventory.Site
	if site != "" {
		s, err := a.Inventory.GetSite(ctx, site)
		if errors.Is(err, inventory.ErrNotFound) {
			return httpx.Errorf(http.StatusUnprocessableEntity, "unknown site %q", site)
		}
		if err != nil {
			return err
		}
		sites = []inventory.Site{s}
	} else if sites, err = a.Inventory.ListSites(ctx); err != nil {
		return err
	}
	for _, ip := range ips {
		what := "bmc.address " + host
		if named {
			what = fmt.Sprintf("bmc.address host %s resolves to %s, which", host, ip)
		}
		if class := a.refusedClass(ip); class != "" {
			return httpx.Errorf(http.StatusUnprocessableEntity, "%s is %s: no BMC credentials are sent there", what, class)
		}
		if err := admitted(what, ip, site, sites); err != nil {
			return err
		}
	}
	return nil
}

// CheckFor checks an address given for a registered server (a retry's
// correction) against the site it is racked in, or as Check does for a
// server not racked.
func (a Addresses) CheckFor(ctx context.Context, address, serial string) error {
	site := ""
	asset, err := a.Inventory.GetAsset(ctx, serial)
	switch {
	case err == nil && asset.Placement != nil:
		site = asset.Placement.Site
	case err != nil && !errors.Is(err, inventory.ErrNotFound):
		return err
	}
	return a.Check(ctx, address, site)
}

// resolve gives the addresses a BMC host stands for. A name is looked up
// now and each address it has checked; the worker looks it up again when
// it connects, so a name whose records change later is not held to this
// check (README: BMC addresses).
func (a Addresses) resolve(ctx context.Context, host string) (ips []netip.Addr, named bool, err error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip}, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	ips, err = a.Resolver.LookupNetIP(ctx, "ip", host)
	var dnsErr *net.DNSError
	if err == nil && len(ips) == 0 || errors.As(err, &dnsErr) && dnsErr.IsNotFound {
		return nil, true, httpx.Errorf(http.StatusUnprocessableEntity, "bmc.address host %s does not resolve: give the BMC's IP address, or a name that resolves", host)
	}
	if err != nil {
		return nil, true, httpx.Errorf(http.StatusServiceUnavailable, "could not look up bmc.address host %s now (%v): try again", host, err)
	}
	return ips, true, nil
}

// refusedClass says why no worker may be sent to ip, or "".
func (a Addresses) refusedClass(ip netip.Addr) string {
	ip = ip.Unmap()
	switch {
	case ip.IsUnspecified():
		return "unspecified"
	case ip.IsLoopback() && !a.AllowLoopback:
		return "loopback (the worker's own host; --bmc-allow-loopback takes a simulated fleet there)"
	case ip.IsLinkLocalUnicast():
		return "link-local (where clouds serve instance metadata)"
	case ip.IsMulticast():
		return "multicast"
	}
	return ""
}

// admitted refuses ip unless the site (or, for a server not racked, some
// site) takes it. Sites that declare no BMC networks take any address.
func admitted(what string, ip netip.Addr, site string, sites []inventory.Site) error {
	var declared []string
	for _, s := range sites {
		if s.AdmitsBMC(ip) {
			return nil
		}
		declared = append(declared, s.Name+": "+s.BMCNetworkList())
	}
	if site != "" {
		return httpx.Errorf(http.StatusUnprocessableEntity, "%s is outside the BMC networks of site %s (%s)", what, site, sites[0].BMCNetworkList())
	}
	if len(sites) == 0 {
		return nil
	}
	return httpx.Errorf(http.StatusUnprocessableEntity, "%s is in no site's BMC networks (%s)", what, strings.Join(declared, "; "))
}
