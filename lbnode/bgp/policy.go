package bgp

import (
	"context"
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// How scoping works. A VIP announced with the internal scope carries a
// large community (RFC 8092) of the node's own AS, the internal-only tag.
// gobgp's global export policy, evaluated for every peer and every route,
// then
//  1. rejects tagged routes towards the external peers (a neighbor set),
//  2. strips the tag from what it sends to everybody else,
//  3. accepts the rest (public VIPs).
//
// Re-scoping a VIP replaces its route in gobgp's RIB with one with or
// without the tag, and gobgp's export pass turns that into an
// announcement or withdrawal per peer. The tag never leaves the node.
//
// gobgp v3 has per-peer policies only for route-server clients, which ToR
// peers are not, hence one global policy with a neighbor condition.
const (
	scopePolicyName     = "metalflow-vip-scope"
	ownRoutesPolicyName = "metalflow-own-routes-only"
	internalOnlySetName = "metalflow-internal-only"
	externalPeerSetName = "metalflow-external-peers"
	// internalOnlyFunction and internalOnlyValue are the two local data
	// parts of the tag: <ASN>:1:1.
	internalOnlyFunction = 1
	internalOnlyValue    = 1
	// globalTable names gobgp's global policy assignment.
	globalTable = "global"
)

func internalOnlyTag(asn uint32) string {
	return fmt.Sprintf("%d:%d:%d", asn, internalOnlyFunction, internalOnlyValue)
}

func installPolicy(ctx context.Context, srv *server.BgpServer, cfg Config) error {
	tag := internalOnlyTag(cfg.ASN)
	if err := srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
		DefinedType: api.DefinedType_LARGE_COMMUNITY,
		Name:        internalOnlySetName,
		List:        []string{tag},
	}}); err != nil {
		return fmt.Errorf("defining the internal-only tag: %w", err)
	}

	var external []string
	for _, p := range cfg.Peers {
		if p.External {
			external = append(external, netip.PrefixFrom(p.Address, p.Address.BitLen()).String())
		}
	}
	var statements []*api.Statement
	// An empty neighbor set matches every peer in gobgp, so the reject
	// statement exists only when there are external peers to reject for.
	if len(external) > 0 {
		if err := srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
			DefinedType: api.DefinedType_NEIGHBOR,
			Name:        externalPeerSetName,
			List:        external,
		}}); err != nil {
			return fmt.Errorf("defining the external peers: %w", err)
		}
		statements = append(statements, &api.Statement{
			Name: "internal-only-stays-inside",
			Conditions: &api.Conditions{
				LargeCommunitySet: &api.MatchSet{Type: api.MatchSet_ANY, Name: internalOnlySetName},
				NeighborSet:       &api.MatchSet{Type: api.MatchSet_ANY, Name: externalPeerSetName},
			},
			Actions: &api.Actions{RouteAction: api.RouteAction_REJECT},
		})
	}
	statements = append(statements, &api.Statement{
		Name:       "internal-only-tag-stays-home",
		Conditions: &api.Conditions{LargeCommunitySet: &api.MatchSet{Type: api.MatchSet_ANY, Name: internalOnlySetName}},
		Actions: &api.Actions{
			LargeCommunity: &api.CommunityAction{Type: api.CommunityAction_REMOVE, Communities: []string{tag}},
			RouteAction:    api.RouteAction_ACCEPT,
		},
	})
	if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: scopePolicyName, Statements: statements}}); err != nil {
		return fmt.Errorf("adding the VIP scope policy: %w", err)
	}
	if err := srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          globalTable,
		Direction:     api.PolicyDirection_EXPORT,
		Policies:      []*api.Policy{{Name: scopePolicyName}},
		DefaultAction: api.RouteAction_ACCEPT,
	}}); err != nil {
		return fmt.Errorf("assigning the VIP scope policy: %w", err)
	}
	// The node only announces: routes a ToR sends (a default route, the
	// other nodes' VIPs) have no business in its RIB, where Announced
	// reads the node's own announcements. gobgp runs the node's own routes
	// through the import policy too, hence the explicit accept.
	if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{
		Name: ownRoutesPolicyName,
		Statements: []*api.Statement{{
			Name:       "own-routes-only",
			Conditions: &api.Conditions{RouteType: api.Conditions_ROUTE_TYPE_LOCAL},
			Actions:    &api.Actions{RouteAction: api.RouteAction_ACCEPT},
		}},
	}}); err != nil {
		return fmt.Errorf("adding the import policy: %w", err)
	}
	if err := srv.AddPolicyAssignment(ctx, &api.AddPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name:          globalTable,
		Direction:     api.PolicyDirection_IMPORT,
		Policies:      []*api.Policy{{Name: ownRoutesPolicyName}},
		DefaultAction: api.RouteAction_REJECT,
	}}); err != nil {
		return fmt.Errorf("rejecting routes from peers: %w", err)
	}
	return nil
}
