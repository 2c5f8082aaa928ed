package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// Announce makes the node announce prefix, a VIP's host route, to the
// peers scope allows: lbapi.AnnounceInternal reaches the internal peers
// only, lbapi.AnnouncePublic every peer. Announcing an announced prefix
// again with the same scope changes nothing; with another scope it
// re-scopes the route without withdrawing it from peers that keep it.
func (s *Speaker) Announce(ctx context.Context, prefix netip.Prefix, scope string) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	if scope != lbapi.AnnounceInternal && scope != lbapi.AnnouncePublic {
		return fmt.Errorf("announcing %s: scope %q, want %q or %q", prefix, scope, lbapi.AnnounceInternal, lbapi.AnnouncePublic)
	}
	nextHop := s.nextHop(prefix)
	if !nextHop.IsValid() {
		return fmt.Errorf("announcing %s: the node has no next hop of that address family", prefix)
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	srv, err := s.server()
	if err != nil {
		return fmt.Errorf("announcing %s: %w", prefix, err)
	}
	current, found, err := s.lookup(ctx, srv, prefix)
	if err != nil {
		return fmt.Errorf("announcing %s: %w", prefix, err)
	}
	if found && current == scope {
		return nil
	}
	path, err := s.newPath(prefix, scope, nextHop)
	if err != nil {
		return fmt.Errorf("announcing %s: %w", prefix, err)
	}
	// Adding a path for a prefix the node already announces replaces the
	// old one (same source, same prefix), which is what re-scopes it.
	if _, err := srv.AddPath(ctx, &api.AddPathRequest{TableType: api.TableType_GLOBAL, Path: path}); err != nil {
		return fmt.Errorf("announcing %s: %w", prefix, err)
	}
	return nil
}

// Withdraw stops announcing prefix to every peer. Withdrawing a prefix the
// node does not announce is not an error.
func (s *Speaker) Withdraw(ctx context.Context, prefix netip.Prefix) error {
	if err := checkPrefix(prefix); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, err := s.server()
	if err != nil {
		return fmt.Errorf("withdrawing %s: %w", prefix, err)
	}
	// Looking first spares peers a withdrawal of something they never got.
	scope, found, err := s.lookup(ctx, srv, prefix)
	if err != nil {
		return fmt.Errorf("withdrawing %s: %w", prefix, err)
	}
	if !found {
		return nil
	}
	// gobgp wants a withdrawal to look like the route it withdraws, next
	// hop included.
	path, err := s.newPath(prefix, scope, s.nextHop(prefix))
	if err != nil {
		return fmt.Errorf("withdrawing %s: %w", prefix, err)
	}
	path.IsWithdraw = true
	err = srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Family: path.Family, Path: path})
	if err != nil {
		return fmt.Errorf("withdrawing %s: %w", prefix, err)
	}
	return nil
}

// WithdrawAll stops announcing every prefix, as a drained or unhealthy
// node must. The sessions stay up, ready for the node to come back.
func (s *Speaker) WithdrawAll(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv, err := s.server()
	if err != nil {
		return fmt.Errorf("withdrawing all routes: %w", err)
	}
	// A delete request naming no path and no family removes every route
	// the node originated.
	if err := srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL}); err != nil {
		return fmt.Errorf("withdrawing all routes: %w", err)
	}
	return nil
}

// Announced reads the node's own announcements back from the speaker's
// RIB, with the scope each carries. It is empty when the speaker is not
// running.
func (s *Speaker) Announced() map[netip.Prefix]string {
	s.mu.RLock()
	srv := s.srv
	s.mu.RUnlock()
	out := map[netip.Prefix]string{}
	if srv == nil {
		return out
	}
	for _, fam := range s.families() {
		err := srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: fam}, func(d *api.Destination) {
			prefix, err := netip.ParsePrefix(d.GetPrefix())
			if err != nil {
				return
			}
			for _, p := range d.GetPaths() {
				if !isOwn(p) {
					continue
				}
				out[prefix] = s.scopeOf(p)
			}
		})
		if err != nil {
			s.cfg.Logger.Warn("reading announced routes from the BGP RIB", "family", fam.String(), "error", err)
		}
	}
	return out
}

// lookup finds the node's own route for prefix in the RIB and its scope.
func (s *Speaker) lookup(ctx context.Context, srv *server.BgpServer, prefix netip.Prefix) (scope string, found bool, err error) {
	err = srv.ListPath(ctx, &api.ListPathRequest{
		TableType: api.TableType_GLOBAL,
		Family:    familyOf(prefix),
		Prefixes:  []*api.TableLookupPrefix{{Prefix: prefix.String(), Type: api.TableLookupPrefix_EXACT}},
	}, func(d *api.Destination) {
		if d.GetPrefix() != prefix.String() {
			return
		}
		for _, p := range d.GetPaths() {
			if isOwn(p) {
				scope, found = s.scopeOf(p), true
			}
		}
	})
	if err != nil {
		return "", false, fmt.Errorf("reading the BGP RIB: %w", err)
	}
	return scope, found, nil
}

// isOwn tells the node's own routes from learned ones; gobgp gives locally
// originated paths no source neighbour. The import policy already keeps
// learned routes out, this is belt and braces for Announced.
func isOwn(p *api.Path) bool {
	return p.GetNeighborIp() == "" || p.GetNeighborIp() == "<nil>"
}

// scopeOf reads a route's scope from its attributes: the internal-only tag
// or none.
func (s *Speaker) scopeOf(p *api.Path) string {
	for _, a := range p.GetPattrs() {
		var lc api.LargeCommunitiesAttribute
		if !a.MessageIs(&lc) {
			continue
		}
		if err := a.UnmarshalTo(&lc); err != nil {
			continue
		}
		for _, c := range lc.GetCommunities() {
			if c.GetGlobalAdmin() == s.cfg.ASN && c.GetLocalData1() == internalOnlyFunction && c.GetLocalData2() == internalOnlyValue {
				return lbapi.AnnounceInternal
			}
		}
	}
	return lbapi.AnnouncePublic
}

func (s *Speaker) newPath(prefix netip.Prefix, scope string, nextHop netip.Addr) (*api.Path, error) {
	nlri, err := anypb.New(&api.IPAddressPrefix{Prefix: prefix.Addr().String(), PrefixLen: uint32(prefix.Bits())})
	if err != nil {
		return nil, err
	}
	attrs := []proto.Message{&api.OriginAttribute{Origin: 0}} // IGP: the node originates the route
	fam := familyOf(prefix)
	if prefix.Addr().Is4() {
		attrs = append(attrs, &api.NextHopAttribute{NextHop: nextHop.String()})
	} else {
		attrs = append(attrs, &api.MpReachNLRIAttribute{Family: fam, NextHops: []string{nextHop.String()}, Nlris: []*anypb.Any{nlri}})
	}
	if scope == lbapi.AnnounceInternal {
		attrs = append(attrs, &api.LargeCommunitiesAttribute{Communities: []*api.LargeCommunity{{
			GlobalAdmin: s.cfg.ASN, LocalData1: internalOnlyFunction, LocalData2: internalOnlyValue,
		}}})
	}
	pattrs := make([]*anypb.Any, 0, len(attrs))
	for _, a := range attrs {
		x, err := anypb.New(a)
		if err != nil {
			return nil, err
		}
		pattrs = append(pattrs, x)
	}
	return &api.Path{Family: fam, Nlri: nlri, Pattrs: pattrs}, nil
}

// nextHop is the node's address peers forward prefix's traffic to; invalid
// when the node has none of that family.
func (s *Speaker) nextHop(prefix netip.Prefix) netip.Addr {
	if prefix.Addr().Is4() {
		return s.cfg.NextHopV4
	}
	return s.cfg.NextHopV6
}

func familyOf(prefix netip.Prefix) *api.Family {
	if prefix.Addr().Is4() {
		return familyV4()
	}
	return familyV6()
}

// checkPrefix accepts only host routes: a node announces VIPs, one address
// each, and must never attract a whole subnet.
func checkPrefix(prefix netip.Prefix) error {
	if !prefix.IsValid() {
		return errors.New("invalid prefix")
	}
	a := prefix.Addr()
	if a.Zone() != "" || a.Is4In6() || a.IsUnspecified() || a.IsMulticast() {
		return fmt.Errorf("prefix %s: not a unicast VIP address", prefix)
	}
	if prefix.Bits() != a.BitLen() {
		return fmt.Errorf("prefix %s: want a host route (/%d)", prefix, a.BitLen())
	}
	return nil
}
