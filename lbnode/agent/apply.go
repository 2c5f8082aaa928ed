package agent

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/lbnode"
	"github.com/metalflow/metalflow/lbnode/lbapi"
)

// Error types of the non-retryable errors the activities return, so that a
// workflow can tell bad input from a node that cannot take it.
const (
	ErrInvalidSpec  = "InvalidVIPSpec"
	ErrNodeFull     = "NodeFull"
	ErrUnknownVIP   = "UnknownVIP"
	ErrInvalidProbe = "InvalidProbe"
)

// maxBackendWeight is the data plane's own bound on a weight; checked here
// too so that a new VIP with a bad weight is refused before its first key is
// added, not after.
const maxBackendWeight = 1_000_000

// plan is a spec translated into what the data plane holds.
type plan struct {
	keys     []lbnode.VIPKey
	backends []lbnode.Backend
	prefix   netip.Prefix
}

func planOf(spec lbapi.VIPSpec) (plan, error) {
	if err := spec.Validate(); err != nil {
		return plan{}, err
	}
	addr := netip.MustParseAddr(spec.Address).Unmap() // Validate parsed it
	proto, err := lbnode.ParseProtocol(spec.Protocol)
	if err != nil {
		return plan{}, fmt.Errorf("VIP %s: %w", spec.Name, err)
	}
	p := plan{prefix: netip.PrefixFrom(addr, addr.BitLen())}
	for _, port := range spec.Ports {
		k := lbnode.VIPKey{Addr: addr, Port: port, Protocol: proto}
		if slices.Contains(p.keys, k) {
			return plan{}, fmt.Errorf("VIP %s: port %d listed twice", spec.Name, port)
		}
		p.keys = append(p.keys, k)
	}
	for _, b := range spec.Backends {
		if b.Weight > maxBackendWeight {
			return plan{}, fmt.Errorf("VIP %s: backend %s weight %d above %d", spec.Name, b.Address, b.Weight, maxBackendWeight)
		}
		state := lbnode.BackendActive
		if b.State == lbapi.BackendDrain {
			state = lbnode.BackendDrain
		}
		p.backends = append(p.backends, lbnode.Backend{
			Addr: netip.MustParseAddr(b.Address).Unmap(), Weight: b.Weight, State: state,
		})
	}
	slices.SortFunc(p.backends, func(a, b lbnode.Backend) int { return a.Addr.Compare(b.Addr) })
	return p, nil
}

// holds says whether the data plane serves key with exactly backends.
func (a *Agent) holds(k lbnode.VIPKey, backends []lbnode.Backend) bool {
	have, err := a.node.Backends(k)
	if err != nil {
		return false
	}
	return slices.Equal(have, backends)
}

// programmed says whether the data plane holds exactly what rec asks for.
func (a *Agent) programmed(rec vipRecord) bool {
	p, err := planOf(rec.Spec)
	if err != nil {
		return false
	}
	for _, k := range p.keys {
		if !a.holds(k, p.backends) {
			return false
		}
	}
	return true
}

func recordKeys(rec vipRecord) []lbnode.VIPKey {
	var out []lbnode.VIPKey
	for _, sk := range rec.Keys {
		if k, err := sk.vipKey(); err == nil { // load checked them
			out = append(out, k)
		}
	}
	return out
}

func invalid(err error) error {
	return temporal.NewNonRetryableApplicationError(err.Error(), ErrInvalidSpec, err)
}

// ApplyVIP makes the VIP on this node exactly in.Spec and announces it as
// the spec says while the data plane is healthy.
func (a *Agent) ApplyVIP(ctx context.Context, in lbapi.ApplyVIPInput) (lbapi.ApplyVIPResult, error) {
	spec := in.Spec
	res := lbapi.ApplyVIPResult{Node: a.cfg.NodeName}
	p, err := planOf(spec)
	if err != nil {
		return res, invalid(err)
	}

	a.mu.Lock()
	defer a.mu.Unlock()
	old, known := a.vips[spec.Name]
	for name, rec := range a.vips {
		if name == spec.Name {
			continue
		}
		for _, k := range recordKeys(rec) {
			if slices.Contains(p.keys, k) {
				return res, invalid(fmt.Errorf("VIP %s: %s is already VIP %s's", spec.Name, k, name))
			}
		}
	}
	if !known && a.cfg.Capacity > 0 && len(a.vips) >= a.cfg.Capacity {
		err := fmt.Errorf("node %s runs %d VIPs, its capacity", a.cfg.NodeName, len(a.vips))
		return res, temporal.NewNonRetryableApplicationError(err.Error(), ErrNodeFull, err)
	}

	oldKeys := recordKeys(old)
	var newKeys, keys []stateKey
	for _, k := range p.keys {
		newKeys = append(newKeys, toStateKey(k))
	}
	sortStateKeys(newKeys)
	var stale []lbnode.VIPKey
	keys = slices.Clone(newKeys)
	for _, k := range oldKeys {
		if !slices.Contains(p.keys, k) {
			stale = append(stale, k)
			keys = append(keys, toStateKey(k))
		}
	}
	sortStateKeys(keys)
	// The new spec is saved before the data plane changes, with every key
	// the VIP may hold until the apply ends: a crash half-way leaves a node
	// that finishes the apply at its next start, and no key nobody knows of.
	digest := lbapi.Digest(spec)
	specChanged := !known || lbapi.Digest(old.Spec) != digest
	if specChanged || !slices.Equal(old.Keys, keys) {
		if err := a.saveWith(spec.Name, &vipRecord{Spec: spec, Keys: keys}); err != nil {
			return res, err
		}
	}
	changed, err := a.program(spec.Name, p)
	if err != nil {
		return res, err
	}
	a.health.Set(spec)

	// Routes follow the new spec before stale keys go: a VIP that moved to
	// another address stops drawing traffic there before it stops serving it.
	a.healthy = a.checkDataPlane() == nil
	routeErr := a.syncRoutes(ctx, "")
	for _, k := range stale {
		if err := a.node.RemoveVIP(k); err != nil && !errors.As(err, new(lbnode.UnknownVIPError)) {
			return res, fmt.Errorf("VIP %s: removing %s: %w", spec.Name, k, err)
		}
		changed = true
	}
	if len(stale) > 0 {
		if err := a.saveWith(spec.Name, &vipRecord{Spec: spec, Keys: newKeys}); err != nil {
			return res, err
		}
	}
	if routeErr != nil {
		return res, fmt.Errorf("VIP %s is programmed but its route is not: %w", spec.Name, routeErr)
	}
	res.Digest, res.Changed = digest, changed || specChanged
	res.Announced = a.announcedScope(p.prefix)
	if res.Changed {
		a.log.Info("VIP applied", "vip", spec.Name, "digest", digest, "ports", len(p.keys),
			"backends", len(p.backends), "announced", res.Announced)
	}
	return res, nil
}

// program makes the data plane serve every key of p with p's backends,
// touching only keys that differ; it says whether it changed any.
func (a *Agent) program(name string, p plan) (bool, error) {
	changed := false
	for _, k := range p.keys {
		if a.holds(k, p.backends) {
			continue
		}
		if err := a.node.AddVIP(lbnode.VIP{VIPKey: k}); err != nil {
			return changed, fmt.Errorf("VIP %s: %w", name, err)
		}
		if err := a.node.SetBackends(k, p.backends); err != nil {
			return changed, fmt.Errorf("VIP %s: %w", name, err)
		}
		changed = true
	}
	return changed, nil
}

// saveWith persists the records with name set to rec (or removed when rec
// is nil), and only then updates the agent's view.
func (a *Agent) saveWith(name string, rec *vipRecord) error {
	next := maps.Clone(a.vips)
	if rec == nil {
		delete(next, name)
	} else {
		next[name] = *rec
	}
	if err := a.state.save(next); err != nil {
		return err
	}
	a.vips = next
	return nil
}

// RemoveVIP withdraws the VIP's route and then deletes it from the data
// plane: traffic moves to other nodes before this one stops serving it.
func (a *Agent) RemoveVIP(ctx context.Context, in lbapi.RemoveVIPInput) (lbapi.RemoveVIPResult, error) {
	res := lbapi.RemoveVIPResult{Node: a.cfg.NodeName}
	a.mu.Lock()
	defer a.mu.Unlock()
	rec, ok := a.vips[in.Name]
	if !ok {
		return res, nil
	}
	if err := a.syncRoutes(ctx, in.Name); err != nil {
		return res, fmt.Errorf("VIP %s: withdrawing before removal: %w", in.Name, err)
	}
	a.health.Remove(in.Name)
	for _, k := range recordKeys(rec) {
		if err := a.node.RemoveVIP(k); err != nil && !errors.As(err, new(lbnode.UnknownVIPError)) {
			return res, fmt.Errorf("VIP %s: removing %s: %w", in.Name, k, err)
		}
	}
	if err := a.saveWith(in.Name, nil); err != nil {
		return res, err
	}
	a.log.Info("VIP removed", "vip", in.Name)
	res.Removed = true
	return res, nil
}
