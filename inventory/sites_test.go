package inventory

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSiteBMCNetworks(t *testing.T) {
	forEachDialect(t, func(t *testing.T, s *Store) {
		ctx := context.Background()
		require.NoError(t, s.EnsureSite(ctx, Site{Name: "dc1"}))
		site, err := s.GetSite(ctx, "dc1")
		require.NoError(t, err)
		require.Empty(t, site.BMCNetworks)
		require.True(t, site.AdmitsBMC(netip.MustParseAddr("192.0.2.7")), "a site that declares no networks takes any address")

		mgmt := []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("fd00:b3c::/48")}
		require.NoError(t, s.EnsureSite(ctx, Site{Name: "dc1", BMCNetworks: mgmt}))
		// Seeding the site by name again (dev does at every start) keeps them.
		require.NoError(t, s.EnsureSite(ctx, Site{Name: "dc1", Description: "seeded"}))
		site, err = s.GetSite(ctx, "dc1")
		require.NoError(t, err)
		require.Equal(t, mgmt, site.BMCNetworks)
		require.Equal(t, "10.1.0.0/16, fd00:b3c::/48", site.BMCNetworkList())
		for addr, admitted := range map[string]bool{
			"10.1.7.9": true, "::ffff:10.1.7.9": true, "fd00:b3c::12": true,
			"10.2.0.1": false, "169.254.169.254": false, "fd00:b3d::1": false,
		} {
			require.Equal(t, admitted, site.AdmitsBMC(netip.MustParseAddr(addr)), addr)
		}

		require.NoError(t, s.EnsureSite(ctx, Site{Name: "dc2", BMCNetworks: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/16")}}))
		sites, err := s.ListSites(ctx)
		require.NoError(t, err)
		require.Len(t, sites, 2)
		require.Equal(t, "dc1", sites[0].Name)
		require.Equal(t, mgmt, sites[0].BMCNetworks)
		require.Equal(t, "10.2.0.0/16", sites[1].BMCNetworkList())

		// An explicit empty list clears them.
		require.NoError(t, s.EnsureSite(ctx, Site{Name: "dc1", BMCNetworks: []netip.Prefix{}}))
		site, err = s.GetSite(ctx, "dc1")
		require.NoError(t, err)
		require.Empty(t, site.BMCNetworks)

		err = s.EnsureSite(ctx, Site{Name: "dc3", BMCNetworks: []netip.Prefix{netip.MustParsePrefix("10.3.1.1/16")}})
		require.ErrorIs(t, err, ErrInvalid)
		require.ErrorContains(t, err, "did you mean 10.3.0.0/16")
		_, err = s.GetSite(ctx, "dc3")
		require.ErrorIs(t, err, ErrNotFound, "a site with a wrong network is not created")
	})
}

// A layout declares a site's BMC networks as CIDRs; a site that leaves
// them out keeps the inventory's, and a wrong one stops the start.
func TestLayoutBMCNetworks(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(text), 0o644))
		return p
	}
	l, err := ReadLayoutFile(write("a.yaml", "sites:\n  - {name: dc1, bmcNetworks: [10.1.0.0/16]}\n  - {name: dc2}\n  - {name: dc3, bmcNetworks: []}\n"))
	require.NoError(t, err)
	require.Equal(t, []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16")}, l.Sites[0].BMCNetworks)
	require.Nil(t, l.Sites[1].BMCNetworks, "left out")
	require.NotNil(t, l.Sites[2].BMCNetworks, "declared empty")
	_, err = ReadLayoutFile(write("b.yaml", "sites:\n  - {name: dc1, bmcNetworks: [10.1.0.0]}\n"))
	require.ErrorContains(t, err, "10.1.0.0")

	s, err := Open(context.Background(), DialectSQLite, filepath.Join(dir, "inventory.db"))
	require.NoError(t, err)
	defer s.Close()
	ctx := context.Background()
	require.NoError(t, s.ApplyLayout(ctx, l))
	require.NoError(t, s.ApplyLayout(ctx, DevLayout()), "dev seeds dc1 after the operator's layout")
	site, err := s.GetSite(ctx, "dc1")
	require.NoError(t, err)
	require.Equal(t, "10.1.0.0/16", site.BMCNetworkList())
	require.ErrorIs(t, s.ApplyLayout(ctx, Layout{Sites: []Site{{Name: "dc1", BMCNetworks: []netip.Prefix{netip.MustParsePrefix("10.1.0.1/16")}}}}), ErrInvalid)
}
