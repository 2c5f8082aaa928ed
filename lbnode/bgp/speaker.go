// Package bgp is the LB node's BGP speaker: it announces every active VIP
// of the node as a host route (/32 or /128) to the node's top-of-rack
// peers, so that ECMP spreads a VIP's traffic over the cluster's nodes, and
// withdraws it when the node drains, turns unhealthy or shuts down.
//
// It embeds gobgp as a library; no gobgp daemon or gRPC port is involved.
// One session per peer carries both IPv4 and IPv6 unicast (multiprotocol
// BGP), whatever the address family of the session itself.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// Speaker is the node's BGP speaker. It is used once: New, Start, any
// number of announcements and withdrawals, Stop.
type Speaker struct {
	cfg Config

	mu sync.RWMutex
	// srv is set between a successful Start and Stop.
	srv     *server.BgpServer
	started bool
}

// New checks cfg and returns a speaker that has not started yet.
func New(cfg Config) (*Speaker, error) {
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("bgp config: %w", err)
	}
	cfg = cfg.withDefaults()
	cfg.Peers = append([]Peer(nil), cfg.Peers...)
	return &Speaker{cfg: cfg}, nil
}

// Start runs the BGP server and configures the peers; sessions come up in
// the background. A Start that fails (say, its port is taken) leaves the
// speaker as it was, to be started again.
func (s *Speaker) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("bgp speaker already started; a speaker is used once")
	}

	srv := server.NewBgpServer(server.LoggerOption(gobgpLogger{logger: s.cfg.Logger}))
	// Serve never returns: gobgp v3 has no way to end it. After Stop, or a
	// failed Start, it waits on channels nobody writes to, which costs a
	// parked goroutine.
	go srv.Serve()

	err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: &api.Global{
		Asn:        s.cfg.ASN,
		RouterId:   s.cfg.RouterID.String(),
		ListenPort: s.cfg.ListenPort,
	}})
	if err == nil {
		err = s.configure(ctx, srv)
	}
	if err != nil {
		// Closes whatever listeners and sessions got as far as opening.
		_ = srv.StopBgp(context.WithoutCancel(ctx), &api.StopBgpRequest{})
		return fmt.Errorf("starting bgp speaker: %w", err)
	}
	s.started = true
	s.srv = srv
	return nil
}

// configure installs the scope policy and then the peers, in that order so
// that no session can come up before the policy that guards it is there.
func (s *Speaker) configure(ctx context.Context, srv *server.BgpServer) error {
	if err := installPolicy(ctx, srv, s.cfg); err != nil {
		return err
	}
	for _, p := range s.cfg.Peers {
		if err := srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(p)}); err != nil {
			return fmt.Errorf("adding peer %s: %w", p.Address, err)
		}
	}
	return nil
}

func (s *Speaker) apiPeer(p Peer) *api.Peer {
	port := uint32(p.Port)
	if port == 0 {
		port = 179
	}
	hold := uint64(s.cfg.HoldTime / time.Second)
	retry := uint64(s.cfg.ConnectRetry / time.Second)
	var families []*api.AfiSafi
	for _, f := range s.families() {
		families = append(families, &api.AfiSafi{Config: &api.AfiSafiConfig{Family: f, Enabled: true}})
	}
	return &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			Description:     scopeOfPeer(p),
		},
		Transport: &api.Transport{RemotePort: port},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:          hold,
			KeepaliveInterval: max(hold/3, 1),
			ConnectRetry:      retry,
		}},
		AfiSafis: families,
	}
}

func scopeOfPeer(p Peer) string {
	if p.External {
		return "external"
	}
	return "internal"
}

// families are the address families the node has a next hop for.
func (s *Speaker) families() []*api.Family {
	var fs []*api.Family
	if s.cfg.NextHopV4.IsValid() {
		fs = append(fs, familyV4())
	}
	if s.cfg.NextHopV6.IsValid() {
		fs = append(fs, familyV6())
	}
	return fs
}

func familyV4() *api.Family {
	return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
}
func familyV6() *api.Family {
	return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
}

// server returns the running BGP server, or an error saying why there is
// none.
func (s *Speaker) server() (*server.BgpServer, error) {
	if s.srv == nil {
		if s.started {
			return nil, errors.New("bgp speaker is stopped")
		}
		return nil, errors.New("bgp speaker is not started")
	}
	return s.srv, nil
}

// Stop withdraws every route, waits until each established peer has been
// sent its withdrawals (or ctx ends, or stopWait passes), and then closes
// the sessions. Withdrawing before closing matters: a peer that sees an
// explicit withdrawal reroutes at once, while one that only loses the
// session may wait for its hold timer if the close gets lost. gobgp drops
// whatever it has not written yet when it closes a session, hence the
// wait.
//
// The wait counts UPDATE messages, so a Stop that comes while earlier
// announcements are still being written may end it early; the peers then
// lose those routes with the session instead.
func (s *Speaker) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	srv := s.srv
	if srv == nil {
		return nil
	}
	s.srv = nil

	var errs []error
	before, err := settledSentUpdates(ctx, srv)
	if err != nil {
		errs = append(errs, err)
	}
	if err := srv.DeletePath(ctx, &api.DeletePathRequest{}); err != nil {
		errs = append(errs, fmt.Errorf("withdrawing all routes: %w", err))
	} else if len(before) > 0 {
		waitCtx, cancel := context.WithTimeout(ctx, stopWait)
		if err := waitWithdrawalsSent(waitCtx, srv, before); err != nil {
			s.cfg.Logger.Warn("closing BGP sessions before every withdrawal was sent", "error", err)
		}
		cancel()
	}
	if err := srv.StopBgp(context.WithoutCancel(ctx), &api.StopBgpRequest{}); err != nil {
		errs = append(errs, fmt.Errorf("stopping bgp server: %w", err))
	}
	return errors.Join(errs...)
}

// stopWait bounds how long Stop waits for withdrawals to go out; a peer
// that takes longer is presumably dead and loses the routes with the
// session anyway.
const stopWait = 5 * time.Second

// pendingWithdrawal is what Stop expects to see sent to one peer.
type pendingWithdrawal struct {
	// updates is how many UPDATE messages the peer had been sent before
	// the withdrawal.
	updates uint64
	// routes is how many routes the peer had from the node. gobgp
	// propagates a change path by path, so each withdrawn route costs the
	// peer one UPDATE message.
	routes uint64
}

// sentUpdates notes, for every established peer that has routes from the
// node, how many UPDATE messages it has been sent so far and how many
// routes it holds.
func sentUpdates(ctx context.Context, srv *server.BgpServer) (map[string]pendingWithdrawal, error) {
	out := map[string]pendingWithdrawal{}
	err := srv.ListPeer(ctx, &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		st := p.GetState()
		if st.GetSessionState() != api.PeerState_ESTABLISHED {
			return
		}
		var routes uint64
		for _, af := range p.GetAfiSafis() {
			routes += af.GetState().GetAdvertised()
		}
		if routes > 0 {
			out[st.GetNeighborAddress()] = pendingWithdrawal{updates: st.GetMessages().GetSent().GetUpdate(), routes: routes}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("listing peers: %w", err)
	}
	return out, nil
}

// settledSentUpdates is sentUpdates read until two reads a tick apart
// agree: gobgp counts a message only after its write returns, so a read
// can miss an UPDATE the peer already has, and Stop would then close the
// session one withdrawal early.
func settledSentUpdates(ctx context.Context, srv *server.BgpServer) (map[string]pendingWithdrawal, error) {
	prev, err := sentUpdates(ctx, srv)
	if err != nil {
		return nil, err
	}
	for range 10 {
		time.Sleep(withdrawalTick)
		cur, err := sentUpdates(ctx, srv)
		if err != nil {
			return nil, err
		}
		if maps.Equal(prev, cur) {
			return cur, nil
		}
		prev = cur
	}
	return prev, nil
}

// withdrawalTick is how often Stop looks at the sent-message counters.
const withdrawalTick = 20 * time.Millisecond

// waitWithdrawalsSent waits until every pending peer has been sent one
// UPDATE per route it held and its count has stopped moving for a tick,
// for the same reason as settledSentUpdates.
func waitWithdrawalsSent(ctx context.Context, srv *server.BgpServer, pending map[string]pendingWithdrawal) error {
	tick := time.NewTicker(withdrawalTick)
	defer tick.Stop()
	last := map[string]uint64{}
	for {
		left := map[string]bool{}
		err := srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			st := p.GetState()
			want, ok := pending[st.GetNeighborAddress()]
			if !ok || st.GetSessionState() != api.PeerState_ESTABLISHED {
				return
			}
			sent := st.GetMessages().GetSent().GetUpdate()
			prev, seen := last[st.GetNeighborAddress()]
			last[st.GetNeighborAddress()] = sent
			if sent < want.updates+want.routes || !seen || prev != sent {
				left[st.GetNeighborAddress()] = true
			}
		})
		if err != nil {
			return err
		}
		if len(left) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("peers %v: %w", keys(left), ctx.Err())
		case <-tick.C:
		}
	}
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// Peers reports every configured peer's session. Before Start and after
// Stop every session is idle.
func (s *Speaker) Peers(ctx context.Context) ([]lbapi.PeerReport, error) {
	s.mu.RLock()
	srv := s.srv
	s.mu.RUnlock()
	states := map[string]string{}
	if srv != nil {
		err := srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			st := p.GetState()
			states[st.GetNeighborAddress()] = strings.ToLower(st.GetSessionState().String())
		})
		if err != nil {
			return nil, fmt.Errorf("listing BGP peers: %w", err)
		}
	}
	out := make([]lbapi.PeerReport, 0, len(s.cfg.Peers))
	for _, p := range s.cfg.Peers {
		state, ok := states[p.Address.String()]
		if !ok {
			state = "idle"
		}
		out = append(out, lbapi.PeerReport{Address: p.Address.String(), External: p.External, State: state})
	}
	return out, nil
}
