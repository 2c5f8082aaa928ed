//go:build !agent

package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/metalflow/metalflow/client"
)

// runRacks is `metalflow racks ...`: what a technician checks before
// putting a server in.
func runRacks(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return runNoun(ctx, "racks", map[string]verb{
		"show": {"every rack, or one rack's elevation (SITE/RACK): units top to bottom with their servers", racksShow},
	}, args, stdout, stderr, cliEnvFromOS())
}

func racksShow(ctx context.Context, args []string, out cliOut, env cliEnv) error {
	var r remoteFlags
	fs := newFlagSet("racks show", out, &r)
	pos, err := parseArgs(fs, args, 0, 1, "metalflow racks show [SITE/RACK] [-o json]")
	if err != nil {
		return err
	}
	var site, rack string
	if len(pos) == 1 {
		var ok bool
		site, rack, ok = strings.Cut(pos[0], "/")
		if !ok || site == "" || rack == "" || strings.Contains(rack, "/") {
			return usageError{fmt.Errorf("rack %q: want SITE/RACK, e.g. dc1/R01", pos[0])}
		}
	}
	c, err := r.connect(env)
	if err != nil {
		return err
	}
	if site == "" {
		a, err := c.Racks(ctx)
		if err != nil {
			return err
		}
		if r.output == "json" {
			return printJSON(out.stdout, a.Raw)
		}
		t := newTable(out.stdout, "SITE", "ROOM", "RACK", "HEIGHT")
		for _, rk := range a.Value.Racks {
			t.row(rk.Site, rk.Room, rk.Name, strconv.Itoa(rk.HeightU)+"U")
		}
		return t.flush()
	}
	a, err := c.Rack(ctx, site, rack)
	if err != nil {
		return err
	}
	if r.output == "json" {
		return printJSON(out.stdout, a.Raw)
	}
	// The state of each occupied unit comes from the fleet list filtered by
	// rack; a rack view without it still shows who is where.
	states := map[string]string{}
	page := ""
	for {
		l, err := c.ListServers(ctx, client.ServerFilter{Rack: rack}, page)
		if err != nil {
			break
		}
		for _, s := range l.Value.Servers {
			states[s.Serial] = s.State
		}
		if l.Value.NextPageToken == "" {
			break
		}
		page = l.Value.NextPageToken
	}
	return renderRack(out.stdout, a.Value, states)
}

// renderRack draws the elevation top to bottom, as the rack looks.
func renderRack(w io.Writer, d client.RackDetail, states map[string]string) error {
	where := d.Site
	if d.Room != "" {
		where += "/" + d.Room
	}
	fmt.Fprintf(w, "Rack %s/%s (%dU)\n", where, d.Name, d.HeightU)
	byUnit := map[int]string{}
	for _, u := range d.Units {
		byUnit[u.Unit] = u.Serial
	}
	t := newTable(w, "UNIT", "SERIAL", "STATE")
	for u := d.HeightU; u >= 1; u-- {
		serial := byUnit[u]
		state := ""
		if serial != "" {
			state = states[serial]
		} else {
			serial = "."
			state = "."
		}
		t.row(fmt.Sprintf("U%02d", u), serial, state)
	}
	// Units above a rack's declared height would otherwise vanish.
	for _, u := range d.Units {
		if u.Unit > d.HeightU {
			t.row(fmt.Sprintf("U%02d", u.Unit), u.Serial, strings.TrimSpace(states[u.Serial]+" (above the rack's height)"))
		}
	}
	return t.flush()
}
