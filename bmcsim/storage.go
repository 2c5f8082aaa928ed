package bmcsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// volume is a RAID set. pending volumes hold their drives while the
// controller's task builds them, and are not listed until it finishes.
type volume struct {
	id, name, raid string
	capacity       int64
	drives         []string
	pending        bool
	doc            map[string]any // volumes that came with a recorded tree
}

func newVolumes(m *model) [][]*volume {
	out := make([][]*volume, len(m.storages))
	for i, st := range m.storages {
		vd := m.tree.get(st.volumes)
		if vd == nil {
			continue
		}
		for _, l := range memberLinks(vd.body) {
			d := m.tree.get(l)
			if d == nil {
				continue
			}
			v := &volume{id: lastSegment(d.id), doc: d.body}
			for _, dl := range anySlice(mapOf(d.body["Links"])["Drives"]) {
				if id, _ := mapOf(dl)["@odata.id"].(string); id != "" {
					v.drives = append(v.drives, id)
				}
			}
			v.raid, _ = d.body["RAIDType"].(string)
			out[i] = append(out[i], v)
		}
	}
	return out
}

func (b *BMC) volumeURI(i int, id string) string {
	return strings.TrimRight(b.m.storages[i].volumes, "/") + "/" + id
}

func (b *BMC) renderVolumes(key string, i int) map[string]any {
	doc := b.baseDoc(key)
	var ids []string
	for _, v := range b.volumes[i] {
		if !v.pending {
			ids = append(ids, b.volumeURI(i, v.id))
		}
	}
	doc["Members"] = linkList(ids)
	doc["Members@odata.count"] = numberValue(len(ids))
	return doc
}

func (b *BMC) volumeByID(i int, id string) *volume {
	for _, v := range b.volumes[i] {
		if strings.EqualFold(v.id, id) {
			return v
		}
	}
	return nil
}

func (b *BMC) volumeDoc(i int, id string) map[string]any {
	v := b.volumeByID(i, id)
	if v == nil || v.pending {
		return nil
	}
	if v.doc != nil {
		return cloneMap(v.doc)
	}
	volumeType := map[string]string{"RAID0": "NonRedundant", "RAID1": "Mirrored", "RAID5": "StripedWithParity",
		"RAID6": "StripedWithParity", "RAID10": "SpannedMirrors", "RAID50": "SpannedStripesWithParity", "RAID60": "SpannedStripesWithParity"}[v.raid]
	return map[string]any{
		"@odata.id": b.volumeURI(i, v.id), "@odata.type": "#Volume.v1_9_0.Volume", "Id": v.id, "Name": v.name,
		"DisplayName": v.name, "RAIDType": v.raid, "VolumeType": nilIfEmpty(volumeType),
		"CapacityBytes": numberValue(v.capacity), "Encrypted": false, "BlockSizeBytes": numberValue(512),
		"Status": map[string]any{"State": "Enabled", "Health": "OK"},
		"Links":  map[string]any{"Drives": linkList(v.drives), "Drives@odata.count": numberValue(len(v.drives))},
	}
}

// raidRule is how many drives each level takes and how much of them is usable.
func raidRule(level string, n int) (usableDrives int, ok bool) {
	switch level {
	case "None":
		return 1, n == 1
	case "RAID0":
		return n, n >= 1
	case "RAID1":
		return 1, n == 2
	case "RAID5":
		return n - 1, n >= 3
	case "RAID6":
		return n - 2, n >= 4
	case "RAID10":
		return n / 2, n >= 4 && n%2 == 0
	case "RAID50":
		return n - 2, n >= 6 && n%2 == 0
	case "RAID60":
		return n - 4, n >= 8 && n%2 == 0
	}
	return 0, false
}

func (b *BMC) createVolume(i int, body []byte) (*reply, *redfishError) {
	st := b.m.storages[i]
	req, rerr := decodeBody(body)
	if rerr != nil {
		return nil, rerr
	}
	level, _ := req["RAIDType"].(string)
	if level == "" {
		if vt, _ := req["VolumeType"].(string); vt != "" {
			level = map[string]string{"NonRedundant": "RAID0", "Mirrored": "RAID1", "StripedWithParity": "RAID5", "SpannedMirrors": "RAID10"}[vt]
			if level == "" {
				return nil, errPropertyValue("VolumeType", vt)
			}
		}
	}
	if level == "" {
		return nil, errPropertyMissing("RAIDType")
	}
	allowed := st.raidTypes
	if len(allowed) == 0 {
		allowed = []string{"RAID0", "RAID1", "RAID5", "RAID10"}
	}
	if !slices.Contains(allowed, level) {
		return nil, errPropertyValue("RAIDType", level)
	}
	links := mapOf(req["Links"])
	if links == nil || links["Drives"] == nil {
		return nil, errPropertyMissing("Links/Drives")
	}
	var drives []string
	inUse := map[string]bool{}
	for _, v := range b.volumes[i] {
		for _, d := range v.drives {
			inUse[pathKey(d)] = true
		}
	}
	var smallest int64
	for _, dl := range anySlice(links["Drives"]) {
		id, _ := mapOf(dl)["@odata.id"].(string)
		k := pathKey(id)
		idx := slices.IndexFunc(st.drives, func(d string) bool { return pathKey(d) == k })
		if id == "" || idx < 0 {
			return nil, errorf(http.StatusBadRequest, "ResourceNotFound", "The drive "+id+" is not attached to the storage "+st.path+".", id)
		}
		if slices.ContainsFunc(drives, func(d string) bool { return pathKey(d) == k }) {
			return nil, errorf(http.StatusBadRequest, "PropertyValueConflict", "The drive "+id+" is listed more than once.", id)
		}
		if inUse[k] {
			return nil, errConflict("The drive " + id + " is already a member of a volume.")
		}
		drives = append(drives, st.drives[idx])
		if c := b.driveCapacity(st.drives[idx]); smallest == 0 || c < smallest {
			smallest = c
		}
	}
	usable, ok := raidRule(level, len(drives))
	if !ok {
		return nil, errorf(http.StatusBadRequest, "PropertyValueIncorrect",
			fmt.Sprintf("%s cannot be built from %d drive(s).", level, len(drives)), "Links/Drives")
	}
	capacity := int64(usable) * smallest
	if raw, ok := req["CapacityBytes"]; ok && raw != nil {
		n, isNum := numberOf(raw)
		if !isNum || n <= 0 || (capacity > 0 && int64(n) > capacity) {
			return nil, errorf(http.StatusBadRequest, "PropertyValueOutOfRange",
				fmt.Sprintf("The value %v for CapacityBytes is out of range (1..%d).", raw, capacity), "CapacityBytes")
		}
		capacity = int64(n)
	}
	// Controllers hand out the lowest free number, as PERC and Smart Array do.
	id := ""
	for n := 0; id == "" || b.volumeByID(i, id) != nil; n++ {
		id = fmt.Sprint(n + 1)
		if b.m.quirks.volumeIDs == "dell" {
			id = fmt.Sprintf("Disk.Virtual.%d:%s", n, lastSegment(st.path))
		}
	}
	name, _ := req["DisplayName"].(string)
	if name == "" {
		name, _ = req["Name"].(string)
	}
	if name == "" {
		name = "Virtual Disk " + fmt.Sprint(len(b.volumes[i]))
	}
	v := &volume{id: id, name: name, raid: level, capacity: capacity, drives: drives}
	b.volumes[i] = append(b.volumes[i], v)
	onReset := req["@Redfish.OperationApplyTime"] == "OnReset"
	if b.m.quirks.volumeAsync || onReset {
		v.pending = true
		t := b.newTask("RAIDConfiguration", "Create "+level+" volume "+name)
		t.waitReset = onReset
		t.onSuccess = func() {
			v.pending = false
			b.counters.VolumesCreated++
		}
		t.onFailure = func() { b.removeVolume(i, v) }
		b.logEvent("OK", "Volume "+name+" ("+level+") creation started as task "+t.id)
		return b.taskAccepted(t), nil
	}
	b.counters.VolumesCreated++
	b.logEvent("OK", "Volume "+name+" ("+level+") created")
	rep := b.docReply(b.volumeDoc(i, id))
	rep.status = http.StatusCreated
	rep.location = b.volumeURI(i, id)
	return rep, nil
}

func (b *BMC) removeVolume(i int, v *volume) {
	b.volumes[i] = slices.DeleteFunc(b.volumes[i], func(x *volume) bool { return x == v })
}

func (b *BMC) deleteVolume(i int, id, path string) (*reply, *redfishError) {
	v := b.volumeByID(i, id)
	if v == nil || v.pending {
		return nil, errNotFound(path)
	}
	if b.m.quirks.volumeAsync {
		t := b.newTask("RAIDConfiguration", "Delete volume "+v.id)
		t.onSuccess = func() {
			b.removeVolume(i, v)
			b.counters.VolumesDeleted++
		}
		return b.taskAccepted(t), nil
	}
	b.removeVolume(i, v)
	b.counters.VolumesDeleted++
	b.logEvent("OK", "Volume "+v.id+" deleted")
	return &reply{status: http.StatusNoContent}, nil
}

func (b *BMC) driveCapacity(id string) int64 {
	if d := b.m.tree.get(id); d != nil {
		if n, ok := numberOf(d.body["CapacityBytes"]); ok {
			return int64(n)
		}
	}
	return 0
}

func mustJSON(v any) []byte {
	raw, _ := json.Marshal(v)
	return raw
}

// secureErase wipes a drive that no volume uses; controllers that build
// volumes in the background erase in the background too.
func (b *BMC) secureErase(i int) (*reply, *redfishError) {
	drive := b.m.eraseDrives[i]
	for _, vs := range b.volumes {
		for _, v := range vs {
			if slices.ContainsFunc(v.drives, func(d string) bool { return pathKey(d) == pathKey(drive) }) {
				return nil, errConflict("The drive " + drive + " is a member of volume " + v.id + ".")
			}
		}
	}
	if b.m.quirks.volumeAsync {
		t := b.newTask("SecureErase", "Secure erase "+lastSegment(drive))
		t.onSuccess = func() { b.counters.DrivesErased++ }
		b.logEvent("OK", "Secure erase of "+lastSegment(drive)+" started as task "+t.id)
		return b.taskAccepted(t), nil
	}
	b.counters.DrivesErased++
	b.logEvent("OK", "Drive "+lastSegment(drive)+" securely erased")
	return &reply{status: http.StatusNoContent}, nil
}
