package inventory

import (
	"context"
	"fmt"
	"os"

	"gopkg.in/yaml.v3"
)

// Layout is a set of sites and racks, as loaded from a YAML file at start:
//
//	sites:
//	  - name: dc1
//	racks:
//	  - {site: dc1, room: A, name: R01, heightU: 42}
type Layout struct {
	Sites []Site `yaml:"sites"`
	Racks []Rack `yaml:"racks"`
}

// DevLayout is what `metalflow dev` seeds so examples work at once: site
// dc1 with racks R01-R20 of 42 U in room A.
func DevLayout() Layout {
	l := Layout{Sites: []Site{{Name: "dc1", Description: "development site seeded by metalflow dev"}}}
	for i := 1; i <= 20; i++ {
		l.Racks = append(l.Racks, Rack{Site: "dc1", Room: "A", Name: fmt.Sprintf("R%02d", i), HeightU: 42})
	}
	return l
}

// ReadLayoutFile parses a layout YAML file, refusing unknown keys.
func ReadLayoutFile(path string) (Layout, error) {
	f, err := os.Open(path)
	if err != nil {
		return Layout{}, err
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var l Layout
	if err := dec.Decode(&l); err != nil {
		return Layout{}, fmt.Errorf("layout %s: %w", path, err)
	}
	return l, nil
}

// ApplyLayout creates the layout's sites and racks; what exists already and
// matches is left alone, so it can run at every start.
func (s *Store) ApplyLayout(ctx context.Context, l Layout) error {
	for _, site := range l.Sites {
		if err := s.EnsureSite(ctx, site); err != nil {
			return err
		}
	}
	for _, r := range l.Racks {
		if err := s.CreateRack(ctx, r); err != nil {
			return fmt.Errorf("rack %s/%s: %w", r.Site, r.Name, err)
		}
	}
	return nil
}
