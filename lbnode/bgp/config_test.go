package bgp

import (
	"context"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/lbnode/lbapi"
)

func validConfig() Config {
	return Config{
		ASN:        65000,
		RouterID:   netip.MustParseAddr("10.0.0.1"),
		ListenPort: -1,
		NextHopV4:  netip.MustParseAddr("10.0.0.1"),
		NextHopV6:  netip.MustParseAddr("fd00:1::1"),
		Peers: []Peer{
			{Address: netip.MustParseAddr("10.0.0.2"), ASN: 65001},
			{Address: netip.MustParseAddr("fd00:1::3"), ASN: 65002, Port: 1790, External: true},
		},
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		// want are substrings of the error; none means valid.
		want []string
	}{
		{name: "valid", change: func(*Config) {}},
		{name: "IPv4 next hop only", change: func(c *Config) { c.NextHopV6 = netip.Addr{} }},
		{name: "listens on 179", change: func(c *Config) { c.ListenPort = 0 }},
		{name: "short timers", change: func(c *Config) { c.HoldTime, c.ConnectRetry = 3*time.Second, time.Second }},
		{name: "no ASN", change: func(c *Config) { c.ASN = 0 }, want: []string{"local ASN: 0 is not an AS number"}},
		{name: "AS_TRANS", change: func(c *Config) { c.ASN = 23456 }, want: []string{"local ASN: 23456 is AS_TRANS"}},
		{name: "no router ID", change: func(c *Config) { c.RouterID = netip.Addr{} }, want: []string{`router ID "": want a non-zero IPv4 address`}},
		{name: "IPv6 router ID", change: func(c *Config) { c.RouterID = netip.MustParseAddr("fd00::1") }, want: []string{`router ID "fd00::1"`}},
		{name: "zero router ID", change: func(c *Config) { c.RouterID = netip.MustParseAddr("0.0.0.0") }, want: []string{`router ID "0.0.0.0"`}},
		{name: "listen port", change: func(c *Config) { c.ListenPort = -2 }, want: []string{"listen port -2"}},
		{name: "listen port too big", change: func(c *Config) { c.ListenPort = 70000 }, want: []string{"listen port 70000"}},
		{name: "no next hop", change: func(c *Config) { c.NextHopV4, c.NextHopV6 = netip.Addr{}, netip.Addr{} }, want: []string{"no next hop"}},
		{name: "IPv6 as IPv4 next hop", change: func(c *Config) { c.NextHopV4 = netip.MustParseAddr("fd00::1") }, want: []string{"IPv4 next hop fd00::1"}},
		{name: "IPv4 as IPv6 next hop", change: func(c *Config) { c.NextHopV6 = netip.MustParseAddr("10.0.0.9") }, want: []string{"IPv6 next hop 10.0.0.9"}},
		{name: "mapped IPv6 next hop", change: func(c *Config) { c.NextHopV6 = netip.MustParseAddr("::ffff:10.0.0.9") }, want: []string{"IPv6 next hop ::ffff:10.0.0.9"}},
		{name: "multicast next hop", change: func(c *Config) { c.NextHopV4 = netip.MustParseAddr("224.0.0.5") }, want: []string{"IPv4 next hop 224.0.0.5"}},
		{name: "hold time too short", change: func(c *Config) { c.HoldTime = 2 * time.Second }, want: []string{"hold time 2s"}},
		{name: "hold time too long", change: func(c *Config) { c.HoldTime = 20 * time.Hour }, want: []string{"hold time 20h0m0s"}},
		{name: "connect retry", change: func(c *Config) { c.ConnectRetry = 100 * time.Millisecond }, want: []string{"connect retry 100ms"}},
		{name: "negative connect retry", change: func(c *Config) { c.ConnectRetry = -time.Second }, want: []string{"connect retry -1s"}},
		{name: "no peers", change: func(c *Config) { c.Peers = nil }, want: []string{"no peers"}},
		{name: "peer without address", change: func(c *Config) { c.Peers[0].Address = netip.Addr{} }, want: []string{`peer 0: address ""`}},
		{name: "peer with zone", change: func(c *Config) { c.Peers[1].Address = netip.MustParseAddr("fe80::1%eth0") }, want: []string{`peer 1: address "fe80::1%eth0"`}},
		{name: "unspecified peer", change: func(c *Config) { c.Peers[0].Address = netip.MustParseAddr("0.0.0.0") }, want: []string{`peer 0: address "0.0.0.0"`}},
		{name: "peer twice", change: func(c *Config) { c.Peers[1].Address = c.Peers[0].Address }, want: []string{"peer 10.0.0.2 listed twice"}},
		{name: "peer without ASN", change: func(c *Config) { c.Peers[1].ASN = 0 }, want: []string{"peer fd00:1::3 ASN: 0 is not an AS number"}},
		{name: "peer is own next hop", change: func(c *Config) { c.Peers[0].Address = c.NextHopV4 }, want: []string{"peer 10.0.0.1 is the node's own next hop"}},
		{
			name:   "every problem at once",
			change: func(c *Config) { c.ASN, c.ListenPort, c.Peers[0].ASN = 0, 99999, 0 },
			want:   []string{"local ASN", "listen port 99999", "peer 10.0.0.2 ASN"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := validConfig()
			tt.change(&cfg)
			s, err := New(cfg)
			if len(tt.want) == 0 {
				require.NoError(t, err)
				require.NotNil(t, s)
				return
			}
			require.Error(t, err)
			require.Nil(t, s)
			for _, w := range tt.want {
				require.Contains(t, err.Error(), w)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	s, err := New(validConfig())
	require.NoError(t, err)
	require.Equal(t, 90*time.Second, s.cfg.HoldTime)
	require.Equal(t, 5*time.Second, s.cfg.ConnectRetry)
	require.NotNil(t, s.cfg.Logger)

	p := s.apiPeer(s.cfg.Peers[0])
	require.EqualValues(t, 179, p.Transport.RemotePort, "port 0 means the BGP port")
	require.EqualValues(t, 90, p.Timers.Config.HoldTime)
	require.EqualValues(t, 30, p.Timers.Config.KeepaliveInterval)
	require.EqualValues(t, 1790, s.apiPeer(s.cfg.Peers[1]).Transport.RemotePort)
}

// The config the caller passed stays the caller's: changing its peers
// later does not reach into a speaker.
func TestConfigIsCopied(t *testing.T) {
	cfg := validConfig()
	s, err := New(cfg)
	require.NoError(t, err)
	cfg.Peers[0].External = true
	reports, err := s.Peers(context.Background())
	require.NoError(t, err)
	require.False(t, reports[0].External)
}

// Bad input gets a clear error whether or not the speaker runs, and a
// speaker that is not running says so rather than pretending.
func TestSpeakerRefusesBadInputAndNotRunning(t *testing.T) {
	ctx := context.Background()
	cfg := validConfig()
	cfg.NextHopV6 = netip.Addr{}
	s, err := New(cfg)
	require.NoError(t, err)

	vip := netip.MustParsePrefix("198.51.100.10/32")
	for _, tt := range []struct {
		prefix netip.Prefix
		scope  string
		want   string
	}{
		{netip.Prefix{}, lbapi.AnnouncePublic, "invalid prefix"},
		{netip.MustParsePrefix("198.51.100.0/24"), lbapi.AnnouncePublic, "want a host route (/32)"},
		{netip.MustParsePrefix("2001:db8::/64"), lbapi.AnnouncePublic, "want a host route (/128)"},
		{netip.MustParsePrefix("0.0.0.0/32"), lbapi.AnnouncePublic, "not a unicast VIP address"},
		{netip.MustParsePrefix("224.0.0.1/32"), lbapi.AnnouncePublic, "not a unicast VIP address"},
		{vip, lbapi.AnnounceNone, `scope "", want "internal" or "public"`},
		{vip, "everyone", `scope "everyone"`},
		{netip.MustParsePrefix("2001:db8::10/128"), lbapi.AnnouncePublic, "no next hop of that address family"},
		{vip, lbapi.AnnounceInternal, "bgp speaker is not started"},
	} {
		err := s.Announce(ctx, tt.prefix, tt.scope)
		require.ErrorContains(t, err, tt.want, "Announce(%s, %q)", tt.prefix, tt.scope)
	}
	require.ErrorContains(t, s.Withdraw(ctx, netip.MustParsePrefix("198.51.100.0/24")), "want a host route")
	require.ErrorContains(t, s.Withdraw(ctx, vip), "not started")
	require.ErrorContains(t, s.WithdrawAll(ctx), "not started")
	require.Empty(t, s.Announced())

	reports, err := s.Peers(ctx)
	require.NoError(t, err)
	require.Equal(t, []lbapi.PeerReport{
		{Address: "10.0.0.2", External: false, State: "idle"},
		{Address: "fd00:1::3", External: true, State: "idle"},
	}, reports)

	require.NoError(t, s.Stop(ctx), "stopping a speaker that never started is no error")
}

// A Start that fails changes nothing: once its cause is gone, the same
// speaker starts. The only peer is on loopback at a closed port, so the
// speaker's connection attempts never leave the machine.
func TestFailedStartCanBeRetried(t *testing.T) {
	ctx := context.Background()
	taken, err := net.Listen("tcp", "0.0.0.0:0")
	require.NoError(t, err)
	port := taken.Addr().(*net.TCPAddr).Port

	cfg := validConfig()
	cfg.ListenPort = int32(port)
	cfg.Peers = []Peer{{Address: netip.MustParseAddr("127.0.0.2"), ASN: 65001, Port: 9}}
	s, err := New(cfg)
	require.NoError(t, err)
	require.ErrorContains(t, s.Start(ctx), "address already in use")
	require.ErrorContains(t, s.Announce(ctx, netip.MustParsePrefix("198.51.100.10/32"), lbapi.AnnouncePublic), "not started")

	require.NoError(t, taken.Close())
	require.NoError(t, s.Start(ctx))
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	// The speaker now listens on the port it could not have before.
	conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	require.NoError(t, err)
	_ = conn.Close()
	require.NoError(t, s.Announce(ctx, netip.MustParsePrefix("198.51.100.10/32"), lbapi.AnnouncePublic))
	require.Equal(t, map[netip.Prefix]string{netip.MustParsePrefix("198.51.100.10/32"): lbapi.AnnouncePublic}, s.Announced())
	require.ErrorContains(t, s.Start(ctx), "already started")
}
