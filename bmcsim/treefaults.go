package bmcsim

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

// Tree faults: the shapes real BMCs give their inventory, which no flavour
// shows by itself. Each is served on any flavour or recorded tree.
const (
	// FaultDanglingDrive: the controller lists its last drive, whose
	// link answers 404 (a bay rescanning, a drive pulled).
	FaultDanglingDrive = "dangling-drive"
	// FaultDanglingMemory: the Memory collection lists its last DIMM,
	// whose link answers 404.
	FaultDanglingMemory = "dangling-memory"
	// FaultDanglingNIC: the EthernetInterfaces collection lists its last
	// interface, whose link answers 404.
	FaultDanglingNIC = "dangling-nic"
	// FaultEmptyStorage: the system's Storage collection has no members,
	// as on boards whose disks hang off the chipset.
	FaultEmptyStorage = "empty-storage"
	// FaultNoSerial: no resource has a SerialNumber.
	FaultNoSerial = "no-serial"
	// FaultNoStatus: no resource has a Status.
	FaultNoStatus = "no-status"
	// FaultNumbersAsStrings: every number under the system ("CapacityBytes":
	// "480103981056") is a string, but for the collections' counts.
	FaultNumbersAsStrings = "numbers-as-strings"
	// FaultCountMismatch: every collection's Members@odata.count is one
	// more than the members it lists.
	FaultCountMismatch = "count-mismatch"
)

// TreeFaultNames lists the tree faults a BMC can serve.
func TreeFaultNames() []string {
	return []string{FaultDanglingDrive, FaultDanglingMemory, FaultDanglingNIC, FaultEmptyStorage,
		FaultNoSerial, FaultNoStatus, FaultNumbersAsStrings, FaultCountMismatch}
}

// ParseTreeFaults reads fault names from a comma-separated list, as the
// --fault flag takes them; an unknown name is an error.
func ParseTreeFaults(list string) ([]string, error) {
	var out []string
	for _, name := range strings.Split(list, ",") {
		name = strings.ToLower(strings.TrimSpace(name))
		if name == "" {
			continue
		}
		if !slices.Contains(TreeFaultNames(), name) {
			return nil, fmt.Errorf("unknown fault %q (known: %s)", name, strings.Join(TreeFaultNames(), ", "))
		}
		if !slices.Contains(out, name) {
			out = append(out, name)
		}
	}
	return out, nil
}

func validateTreeFaults(names []string) error {
	for _, n := range names {
		if !slices.Contains(TreeFaultNames(), n) {
			return fmt.Errorf("unknown tree fault %q (known: %s)", n, strings.Join(TreeFaultNames(), ", "))
		}
	}
	return nil
}

// dangling is the link a tree fault makes answer 404, "" for none.
func (b *BMC) dangling(fault string) string {
	var links []string
	switch fault {
	case FaultDanglingDrive:
		if len(b.m.storages) > 0 {
			links = b.m.storages[0].drives
		}
	case FaultDanglingMemory:
		if sys := b.m.tree.get(b.m.system); sys != nil {
			if mem := b.m.tree.get(linkOf(sys.body, "Memory")); mem != nil {
				links = memberLinks(mem.body)
			}
		}
	case FaultDanglingNIC:
		links = b.m.nics
	}
	if len(links) == 0 {
		return ""
	}
	return links[len(links)-1]
}

// getFaulty answers a read with the tree faults in force; with mu held.
func (b *BMC) getFaulty(key, path string) (*reply, *redfishError) {
	for _, f := range b.faults.Tree {
		if l := b.dangling(f); l != "" && pathKey(l) == key {
			return nil, errNotFound(path)
		}
	}
	rep, rerr := b.getPlain(key, path)
	if rerr != nil || rep.body == nil {
		return rep, rerr
	}
	doc, err := decodeObject(rep.body)
	if err != nil {
		return rep, nil
	}
	delete(doc, "@odata.etag")
	underSystem := key == pathKey(b.m.system) || strings.HasPrefix(key, pathKey(b.m.system)+"/")
	for _, f := range b.faults.Tree {
		switch f {
		case FaultEmptyStorage:
			if sys := b.m.tree.get(b.m.system); sys != nil && key == pathKey(linkOf(sys.body, "Storage")) {
				doc["Members"] = []any{}
				doc["Members@odata.count"] = numberValue(0)
			}
		case FaultNoSerial:
			delete(doc, "SerialNumber")
		case FaultNoStatus:
			delete(doc, "Status")
		case FaultNumbersAsStrings:
			if underSystem {
				numbersAsStrings(doc)
			}
		case FaultCountMismatch:
			if ms, ok := doc["Members"].([]any); ok {
				doc["Members@odata.count"] = numberValue(len(ms) + 1)
			}
		}
	}
	return b.docReply(doc), nil
}

// numbersAsStrings turns every number in v into its text, but for counts,
// which a client needs to read the members at all.
func numbersAsStrings(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if n, ok := e.(json.Number); ok && !strings.HasSuffix(k, "@odata.count") {
				x[k] = n.String()
				continue
			}
			numbersAsStrings(e)
		}
	case []any:
		for i, e := range x {
			if n, ok := e.(json.Number); ok {
				x[i] = n.String()
				continue
			}
			numbersAsStrings(e)
		}
	}
}
