package bmcsim

import (
	"reflect"
	"time"
)

// VolumeInfo is a RAID volume as the controller holds it.
type VolumeInfo struct {
	ID            string   `json:"id"`
	Name          string   `json:"name"`
	RAIDType      string   `json:"raid_type"`
	CapacityBytes int64    `json:"capacity_bytes"`
	Drives        []string `json:"drives"`
	Building      bool     `json:"building,omitempty"`
}

// MediaInfo is one virtual media slot.
type MediaInfo struct {
	Slot     string `json:"slot"`
	Image    string `json:"image,omitempty"`
	Inserted bool   `json:"inserted"`
}

// TaskInfo is one TaskService task (an iDRAC job on Dell).
type TaskInfo struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
}

// State is a snapshot of everything a BMC and its host hold.
type State struct {
	ID           string         `json:"id"`
	Vendor       string         `json:"vendor"`
	Power        string         `json:"power"`
	BootOverride BootOverride   `json:"boot_override"`
	BIOS         map[string]any `json:"bios"`
	BIOSPending  map[string]any `json:"bios_pending,omitempty"`
	Volumes      []VolumeInfo   `json:"volumes"`
	Media        []MediaInfo    `json:"media"`
	Tasks        []TaskInfo     `json:"tasks"`
	Sessions     int            `json:"sessions"`
	Accounts     []AccountInfo  `json:"accounts"`
	Host         HostInfo       `json:"host"`
	Counters     Counters       `json:"counters"`
	Faults       Faults         `json:"faults"`
	Rebooting    bool           `json:"rebooting"`
	Log          []string       `json:"log,omitempty"`
}

// State returns a copy of the BMC's current state.
func (b *BMC) State() State {
	rebooting := b.Rebooting()
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.advanceTasks(now)
	b.pruneSessions(now)
	s := State{
		ID: b.id, Vendor: b.vendor, Power: b.hw.power(), BootOverride: b.boot,
		BIOS: cloneMap(b.bios.current), BIOSPending: cloneMap(b.bios.pending),
		Sessions: len(b.sessions), Host: b.host, Counters: b.counters, Faults: b.faults, Rebooting: rebooting,
	}
	s.Host.Fetched = append([]string(nil), b.host.Fetched...)
	if vm, ok := b.hw.(interface{ info() *VMInfo }); ok {
		s.Host.VM = vm.info() // PID and boots change without the BMC's doing
	}
	for i, vs := range b.volumes {
		for _, v := range vs {
			vi := VolumeInfo{ID: v.id, Name: v.name, RAIDType: v.raid, CapacityBytes: v.capacity, Building: v.pending}
			for _, d := range v.drives {
				vi.Drives = append(vi.Drives, lastSegment(d))
			}
			_ = i
			s.Volumes = append(s.Volumes, vi)
		}
	}
	for i, m := range b.media {
		s.Media = append(s.Media, MediaInfo{Slot: lastSegment(b.m.mediaSlots[i]), Image: m.image, Inserted: m.inserted})
	}
	for _, t := range b.tasks {
		st, _, _ := t.phase(now)
		s.Tasks = append(s.Tasks, TaskInfo{ID: t.id, Name: t.name, State: st})
	}
	for _, a := range b.accounts {
		if a.user != "" || a.enabled {
			s.Accounts = append(s.Accounts, AccountInfo{ID: a.id, UserName: a.user, RoleID: a.role, Enabled: a.enabled})
		}
	}
	for _, e := range b.logs {
		s.Log = append(s.Log, e.severity+": "+e.message)
	}
	return s
}

// Counters returns the side effects performed so far.
func (b *BMC) Counters() Counters {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advanceTasks(time.Now())
	return b.counters
}

// plus adds two sets of counters field by field; reflection keeps a
// counter added later from being left out of the sum.
func (c Counters) plus(o Counters) Counters {
	a, b := reflect.ValueOf(&c).Elem(), reflect.ValueOf(o)
	for i := range a.NumField() {
		a.Field(i).SetInt(a.Field(i).Int() + b.Field(i).Int())
	}
	return c
}

// PowerState is the host's power state as Redfish reports it.
func (b *BMC) PowerState() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hw.power()
}

// Host returns what the host is doing.
func (b *BMC) Host() HostInfo {
	return b.State().Host
}
