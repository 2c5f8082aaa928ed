package agent

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/metalflow/metalflow/lbnode"
	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// stateFileName is the agent's desired state under Config.StateDir.
const stateFileName = "vips.json"

// stateVersion guards against reading a layout a later build wrote.
const stateVersion = 1

// vipRecord is one applied VIP: its spec, and every data-plane key that may
// carry it. While an apply is under way Keys holds the old keys and the new
// ones, so a crash half-way leaves nothing the next run cannot find and
// remove.
type vipRecord struct {
	Spec lbapi.VIPSpec `json:"spec"`
	Keys []stateKey    `json:"keys"`
}

type stateKey struct {
	Address  string `json:"address"`
	Port     uint16 `json:"port"`
	Protocol string `json:"protocol"`
}

func (k stateKey) vipKey() (lbnode.VIPKey, error) {
	a, err := netip.ParseAddr(k.Address)
	if err != nil {
		return lbnode.VIPKey{}, err
	}
	p, err := lbnode.ParseProtocol(k.Protocol)
	if err != nil {
		return lbnode.VIPKey{}, err
	}
	return lbnode.VIPKey{Addr: a.Unmap(), Port: k.Port, Protocol: p}, nil
}

func toStateKey(k lbnode.VIPKey) stateKey {
	return stateKey{Address: k.Addr.String(), Port: k.Port, Protocol: k.Protocol.String()}
}

// sortStateKeys puts keys in one order, so that the same keys listed
// differently compare equal and the state file is not rewritten for them.
func sortStateKeys(keys []stateKey) {
	slices.SortFunc(keys, func(a, b stateKey) int {
		return cmp.Or(strings.Compare(a.Address, b.Address), cmp.Compare(a.Port, b.Port), strings.Compare(a.Protocol, b.Protocol))
	})
}

type stateDoc struct {
	Version int                  `json:"version"`
	VIPs    map[string]vipRecord `json:"vips"`
}

// stateFile keeps the records in one JSON file, replaced atomically: a
// crash leaves the old file or the new one, never a torn one.
type stateFile struct {
	dir  string
	path string
}

func openStateFile(dir string) (*stateFile, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("agent state directory: %w", err)
	}
	return &stateFile{dir: dir, path: filepath.Join(dir, stateFileName)}, nil
}

func (s *stateFile) load() (map[string]vipRecord, error) {
	raw, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]vipRecord{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent state: %w", err)
	}
	var doc stateDoc
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("agent state %s: %w", s.path, err)
	}
	if doc.Version != stateVersion {
		return nil, fmt.Errorf("agent state %s has layout %d, this build reads %d", s.path, doc.Version, stateVersion)
	}
	if doc.VIPs == nil {
		doc.VIPs = map[string]vipRecord{}
	}
	for name, rec := range doc.VIPs {
		if err := rec.Spec.Validate(); err != nil {
			return nil, fmt.Errorf("agent state %s: VIP %s: %w", s.path, name, err)
		}
		for _, k := range rec.Keys {
			if _, err := k.vipKey(); err != nil {
				return nil, fmt.Errorf("agent state %s: VIP %s: key %+v: %w", s.path, name, k, err)
			}
		}
	}
	return doc.VIPs, nil
}

func (s *stateFile) save(records map[string]vipRecord) error {
	raw, err := json.MarshalIndent(stateDoc{Version: stateVersion, VIPs: records}, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(s.dir, stateFileName+".*")
	if err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return fmt.Errorf("agent state: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("agent state: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	// The rename is durable only once the directory is.
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("agent state: %w", err)
	}
	defer d.Close()
	return d.Sync()
}
