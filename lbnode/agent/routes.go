package agent

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// Announcer is the node's BGP speaker (package lbnode/bgp). The agent owns
// it: every route it has is one the agent asked for.
type Announcer interface {
	// Announce advertises prefix to the peers of scope (lbapi.AnnounceInternal
	// or lbapi.AnnouncePublic); announcing again with another scope changes
	// who hears it.
	Announce(ctx context.Context, prefix netip.Prefix, scope string) error
	// Withdraw stops advertising prefix to anyone.
	Withdraw(ctx context.Context, prefix netip.Prefix) error
	// Announced is every prefix advertised now, with its scope.
	Announced() map[netip.Prefix]string
	// Peers reports the BGP sessions.
	Peers(ctx context.Context) ([]lbapi.PeerReport, error)
}

// routeTimeout bounds one reconciliation of the routes from the background
// watch, which has no activity deadline to inherit.
const routeTimeout = 30 * time.Second

// scopeRank orders scopes so that VIPs sharing an address announce it to the
// widest audience any of them asks for.
func scopeRank(s string) int {
	switch s {
	case lbapi.AnnouncePublic:
		return 2
	case lbapi.AnnounceInternal:
		return 1
	}
	return 0
}

// desiredRoutes is what the node should announce: nothing while the data
// plane is unhealthy, otherwise the prefix of every VIP the data plane
// really serves, with the widest scope its VIPs ask for. exclude leaves one
// VIP out (it is being removed).
func (a *Agent) desiredRoutes(exclude string) map[netip.Prefix]string {
	want := map[netip.Prefix]string{}
	if !a.healthy || a.stopping {
		return want
	}
	for name, rec := range a.vips {
		if name == exclude || rec.Spec.Announce == lbapi.AnnounceNone || !a.programmed(rec) {
			continue
		}
		addr, err := netip.ParseAddr(rec.Spec.Address)
		if err != nil {
			continue // load and apply validated it
		}
		addr = addr.Unmap()
		p := netip.PrefixFrom(addr, addr.BitLen())
		if scopeRank(rec.Spec.Announce) > scopeRank(want[p]) {
			want[p] = rec.Spec.Announce
		}
	}
	return want
}

// syncRoutes makes the speaker announce exactly desiredRoutes(exclude).
// Withdrawals go first so that a shrinking set never briefly grows. Callers
// hold a.mu.
func (a *Agent) syncRoutes(ctx context.Context, exclude string) error {
	ann := a.cfg.Announcer
	if ann == nil {
		return nil
	}
	want := a.desiredRoutes(exclude)
	have := ann.Announced()
	var errs []error
	for p := range have {
		if _, ok := want[p]; !ok {
			if err := ann.Withdraw(ctx, p); err != nil {
				errs = append(errs, fmt.Errorf("withdrawing %s: %w", p, err))
			} else {
				a.log.Info("route withdrawn", "prefix", p)
			}
		}
	}
	for p, scope := range want {
		if have[p] == scope {
			continue
		}
		if err := ann.Announce(ctx, p, scope); err != nil {
			errs = append(errs, fmt.Errorf("announcing %s (%s): %w", p, scope, err))
		} else {
			a.log.Info("route announced", "prefix", p, "scope", scope)
		}
	}
	return errors.Join(errs...)
}

// announcedScope is the scope the speaker has for prefix now.
func (a *Agent) announcedScope(p netip.Prefix) string {
	if a.cfg.Announcer == nil {
		return lbapi.AnnounceNone
	}
	return a.cfg.Announcer.Announced()[p]
}

// checkDataPlane says what keeps the data plane from forwarding, if
// anything: the program no longer attached, or maps it cannot read.
func (a *Agent) checkDataPlane() error {
	attached, err := a.node.Attached()
	if err != nil {
		return err
	}
	if !attached {
		return errors.New("the XDP program is no longer attached to its interface")
	}
	if _, err := a.node.Stats(); err != nil {
		return fmt.Errorf("reading the data plane's maps: %w", err)
	}
	return nil
}

// watchDataPlane checks the data plane on an interval. A node that stops
// forwarding withdraws every route so that the routers send traffic to the
// other nodes; when it forwards again it announces them again. Failed
// announcements are retried on the next tick.
func (a *Agent) watchDataPlane() {
	defer a.wg.Done()
	t := time.NewTicker(a.cfg.DataPlaneInterval)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case <-t.C:
		}
		a.refreshDataPlane()
	}
}

// refreshDataPlane is one check of the data plane and the routes that
// follow from it.
func (a *Agent) refreshDataPlane() {
	a.followDataPlane(a.checkDataPlane())
}

// followDataPlane records the data plane's health (err is what is wrong,
// nil when healthy) and brings the routes in line with it.
func (a *Agent) followDataPlane(err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	healthy := err == nil
	if healthy != a.healthy {
		if healthy {
			a.log.Info("data plane healthy again; announcing routes")
		} else {
			a.log.Error("data plane unhealthy; withdrawing every route", "err", err)
		}
		a.healthy = healthy
	}
	ctx, cancel := context.WithTimeout(context.Background(), routeTimeout)
	defer cancel()
	if err := a.syncRoutes(ctx, ""); err != nil {
		a.log.Warn("routes not in step with the VIPs; retrying", "err", err)
	}
}
