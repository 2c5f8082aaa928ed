package hardware

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/stmcginnis/gofish"
)

// Inventory walks the Redfish tree itself rather than through bmclib or
// gofish: both give up on a whole collection when one member answers 404
// ("failed to retrieve some items"), and on a whole resource when a number
// comes as a string. Real BMCs do both, so every member is read on its own
// and what cannot be read becomes a warning on the inventory. Only the
// service root and the system, without which there is nothing to
// describe, fail the read; so does a BMC that stops answering, since a
// member it did not answer tells nothing about the hardware.
func (s *session) Inventory(ctx context.Context) (Inventory, error) {
	var inv Inventory
	err := s.runAccounted(ctx, "inventory", func() (int, error) {
		api, err := s.gofishAPI(ctx)
		if err != nil {
			return 0, err
		}
		r := &reader{api: api}
		inv, err = r.inventory()
		return r.failed, err
	})
	return inv, err
}

// reader reads one inventory and keeps what it could not.
type reader struct {
	api      *gofish.APIClient
	warnings []InventoryWarning
	// failed counts the reads the BMC answered 5xx to (after the
	// transport's retries) that became warnings, so that session.run does
	// not take them for failures the walk swallowed.
	failed int
}

func (r *reader) warn(part, path, format string, args ...any) {
	r.warnings = append(r.warnings, InventoryWarning{Path: path, Error: fmt.Sprintf(format, args...), Part: part})
}

// fetch GETs path and decodes it into v.
func (r *reader) fetch(path string, v any) error {
	resp, err := r.api.Get(path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%d: unexpected status", resp.StatusCode)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return &Error{Kind: Unsupported, Op: "read " + path, Err: fmt.Errorf("not a Redfish resource: %w", err)}
	}
	return nil
}

// read is fetch for a part: ok is false, with a warning recorded, when
// the BMC answered with an error or with a body that is no resource. err
// is set only when the BMC did not answer or lost the session.
func (r *reader) read(part, path string, v any) (ok bool, err error) {
	err = r.fetch(path, v)
	if err == nil {
		return true, nil
	}
	st := statusOf(err)
	switch {
	case st == http.StatusUnauthorized:
		return false, err
	case st >= 400:
		if failedStatus(st) {
			r.failed++
		}
		r.warn(part, path, "answered %d", st)
		return false, nil
	case isKind(err, Unsupported):
		r.warn(part, path, "%v", errors.Unwrap(err))
		return false, nil
	}
	return false, err
}

// members reads a collection's member links; a collection that cannot be
// read or disagrees with itself is warned about.
func (r *reader) members(part, path string) ([]string, error) {
	var c struct {
		Members []odataLink `json:"Members"`
		Count   number      `json:"Members@odata.count"`
	}
	if ok, err := r.read(part, path, &c); !ok {
		return nil, err
	}
	if c.Count.set && int(c.Count.v) != len(c.Members) {
		r.warn(part, path, "Members@odata.count is %d but %d members are listed", int(c.Count.v), len(c.Members))
	}
	out := make([]string, 0, len(c.Members))
	for _, m := range c.Members {
		if m.ID != "" {
			out = append(out, m.ID)
		}
	}
	return out, nil
}

func (r *reader) inventory() (Inventory, error) {
	inv := Inventory{CPUs: []CPU{}, Drives: []Drive{}, NICs: []NIC{}}
	const rootPath = "/redfish/v1"
	var root struct {
		Systems       odataLink `json:"Systems"`
		Managers      odataLink `json:"Managers"`
		UpdateService odataLink `json:"UpdateService"`
	}
	if err := r.fetch(rootPath, &root); err != nil {
		return inv, err
	}
	systems, err := r.systemLinks(root.Systems.ID)
	if err != nil {
		return inv, err
	}
	var sys systemDoc
	if err := r.fetch(systems[0], &sys); err != nil {
		return inv, err
	}
	sys.ID = systems[0] // warnings name the link followed
	inv.Vendor, inv.Model, inv.Serial, inv.BIOSVersion = sys.Manufacturer, sys.Model, sys.SerialNumber, sys.BiosVersion
	if inv.Serial == "" {
		r.warn("", systems[0], "no SerialNumber")
	}
	for _, part := range []func(*Inventory, systemDoc) error{r.cpus, r.memory, r.drives, r.nics} {
		if err := part(&inv, sys); err != nil {
			return inv, err
		}
	}
	manager := ""
	if len(sys.Links.ManagedBy) > 0 {
		manager = sys.Links.ManagedBy[0].ID
	} else if root.Managers.ID != "" {
		ms, err := r.members("", root.Managers.ID)
		if err != nil {
			return inv, err
		}
		if len(ms) > 0 {
			manager = ms[0]
		}
	}
	if manager != "" {
		var m struct{ FirmwareVersion string }
		ok, err := r.read("", manager, &m)
		if err != nil {
			return inv, err
		}
		inv.BMCFirmware = m.FirmwareVersion
		if ok && m.FirmwareVersion == "" {
			r.warn("", manager, "no FirmwareVersion")
		}
	}
	if err := r.firmware(&inv, root.UpdateService.ID); err != nil {
		return inv, err
	}
	inv.Warnings = r.warnings
	return inv, nil
}

// systemLinks are the systems; none at all is an error, as there is then
// nothing to inspect.
func (r *reader) systemLinks(path string) ([]string, error) {
	var c struct {
		Members []odataLink `json:"Members"`
	}
	if path == "" {
		return nil, &Error{Kind: Unsupported, Op: "systems", Err: errors.New("the service root links no Systems")}
	}
	if err := r.fetch(path, &c); err != nil {
		return nil, err
	}
	if len(c.Members) == 0 || c.Members[0].ID == "" {
		return nil, &Error{Kind: Unsupported, Op: "systems", Err: errors.New("the BMC lists no computer system")}
	}
	return []string{c.Members[0].ID}, nil
}

func (r *reader) cpus(inv *Inventory, sys systemDoc) error {
	if err := r.processors(inv, sys); err != nil {
		return err
	}
	// The system's summary still counts the sockets when no Processor
	// could be read; their cores stay unknown.
	if n := int(sys.ProcessorSummary.Count.v); len(inv.CPUs) == 0 && n > 0 {
		threads := int(sys.ProcessorSummary.LogicalProcessorCount.v)
		for range n {
			inv.CPUs = append(inv.CPUs, CPU{Model: sys.ProcessorSummary.Model, Threads: threads / n})
		}
		inv.TotalThreads = threads
	}
	return nil
}

func (r *reader) processors(inv *Inventory, sys systemDoc) error {
	if sys.Processors.ID == "" {
		r.warn(PartCPUs, sys.ID, "no Processors")
		return nil
	}
	links, err := r.members(PartCPUs, sys.Processors.ID)
	if err != nil {
		return err
	}
	for _, l := range links {
		var p struct {
			Model                 string
			ProcessorType         string
			ProcessorArchitecture string
			TotalCores            number
			TotalThreads          number
			Status                statusDoc
		}
		ok, err := r.read(PartCPUs, l, &p)
		if err != nil {
			return err
		}
		// GPUs and FPGAs are processors too; empty sockets are listed.
		if !ok || p.Status.State == "Absent" || (p.ProcessorType != "" && p.ProcessorType != "CPU") {
			continue
		}
		r.need(PartCPUs, l, "TotalCores", p.TotalCores)
		cpu := CPU{Model: p.Model, Cores: int(p.TotalCores.v), Threads: int(p.TotalThreads.v)}
		inv.CPUs = append(inv.CPUs, cpu)
		inv.TotalCores += cpu.Cores
		inv.TotalThreads += cpu.Threads
		if inv.CPUArch == "" {
			inv.CPUArch = p.ProcessorArchitecture
		}
	}
	return nil
}

func (r *reader) memory(inv *Inventory, sys systemDoc) error {
	summaryGiB := int(sys.MemorySummary.TotalSystemMemoryGiB.v)
	if sys.Memory.ID == "" {
		inv.MemoryGiB = summaryGiB
		if summaryGiB == 0 {
			r.warn(PartMemory, sys.ID, "no Memory and no MemorySummary.TotalSystemMemoryGiB")
		}
		return nil
	}
	links, err := r.members(PartMemory, sys.Memory.ID)
	if err != nil {
		return err
	}
	var mib int64
	for _, l := range links {
		var m struct {
			CapacityMiB     number
			VolatileSizeMiB number
			Status          statusDoc
		}
		ok, err := r.read(PartMemory, l, &m)
		if err != nil {
			return err
		}
		if !ok || m.Status.State == "Absent" {
			continue
		}
		switch {
		case m.CapacityMiB.set:
			mib += int64(m.CapacityMiB.v)
		case m.VolatileSizeMiB.set:
			mib += int64(m.VolatileSizeMiB.v)
		default:
			r.need(PartMemory, l, "CapacityMiB", m.CapacityMiB)
		}
	}
	// The BMC's own total counts DIMMs whose links could not be followed.
	inv.MemoryGiB = max(int(mib>>10), summaryGiB)
	return nil
}

func (r *reader) drives(inv *Inventory, sys systemDoc) error {
	if sys.Storage.ID == "" {
		r.warn(PartDrives, sys.ID, "no Storage")
		return nil
	}
	ctls, err := r.members(PartDrives, sys.Storage.ID)
	if err != nil {
		return err
	}
	if len(ctls) == 0 {
		r.warn(PartDrives, sys.Storage.ID, "lists no storage controller")
	}
	for _, c := range ctls {
		var st struct {
			Drives      []odataLink `json:"Drives"`
			DrivesCount number      `json:"Drives@odata.count"`
		}
		ok, err := r.read(PartDrives, c, &st)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		if st.DrivesCount.set && int(st.DrivesCount.v) != len(st.Drives) {
			r.warn(PartDrives, c, "Drives@odata.count is %d but %d drives are listed", int(st.DrivesCount.v), len(st.Drives))
		}
		for _, l := range st.Drives {
			var d struct {
				ID            string `json:"Id"`
				Model         string
				MediaType     string
				Protocol      string
				CapacityBytes number
				Status        statusDoc
			}
			ok, err := r.read(PartDrives, l.ID, &d)
			if err != nil {
				return err
			}
			// A bay listed with nothing in it is no drive.
			if !ok || d.Status.State == "Absent" {
				continue
			}
			r.need(PartDrives, l.ID, "CapacityBytes", d.CapacityBytes)
			inv.Drives = append(inv.Drives, Drive{ID: d.ID, Model: d.Model, CapacityBytes: int64(d.CapacityBytes.v), MediaType: d.MediaType, Protocol: d.Protocol})
		}
	}
	return nil
}

func (r *reader) nics(inv *Inventory, sys systemDoc) error {
	if sys.EthernetInterfaces.ID == "" {
		r.warn(PartNICs, sys.ID, "no EthernetInterfaces")
		return nil
	}
	links, err := r.members(PartNICs, sys.EthernetInterfaces.ID)
	if err != nil {
		return err
	}
	for _, l := range links {
		var n struct {
			ID                  string `json:"Id"`
			MACAddress          string
			PermanentMACAddress string
		}
		ok, err := r.read(PartNICs, l, &n)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		mac := firstOf(n.PermanentMACAddress, n.MACAddress)
		if mac == "" {
			r.warn(PartNICs, l, "no MACAddress")
		}
		inv.NICs = append(inv.NICs, NIC{ID: n.ID, MAC: strings.ToLower(mac)})
	}
	return nil
}

func (r *reader) firmware(inv *Inventory, updateService string) error {
	if updateService == "" {
		return nil
	}
	var us struct {
		FirmwareInventory odataLink `json:"FirmwareInventory"`
	}
	if ok, err := r.read("", updateService, &us); !ok || us.FirmwareInventory.ID == "" {
		return err
	}
	links, err := r.members("", us.FirmwareInventory.ID)
	if err != nil {
		return err
	}
	for _, l := range links {
		var f struct{ Name, Version string }
		ok, err := r.read("", l, &f)
		if err != nil {
			return err
		}
		if ok {
			inv.Firmware = append(inv.Firmware, Firmware{Name: f.Name, Version: f.Version})
		}
	}
	return nil
}

// need warns about a property the part lacks or that holds no number.
func (r *reader) need(part, path, name string, n number) {
	switch {
	case n.bad != "":
		r.warn(part, path, "%s is %s, not a number", name, n.bad)
	case !n.set:
		r.warn(part, path, "no %s", name)
	}
}

type odataLink struct {
	ID string `json:"@odata.id"`
}

type statusDoc struct{ State string }

type systemDoc struct {
	ID               string `json:"@odata.id"`
	Manufacturer     string
	Model            string
	SerialNumber     string
	BiosVersion      string
	MemorySummary    struct{ TotalSystemMemoryGiB number }
	ProcessorSummary struct {
		Count                 number
		LogicalProcessorCount number
		Model                 string
	}
	Processors         odataLink
	Memory             odataLink
	Storage            odataLink
	EthernetInterfaces odataLink
	Links              struct{ ManagedBy []odataLink }
}

// number is a Redfish number, which some BMCs send as a string
// ("CapacityMiB": "65536"); one that is neither is kept as bad, so that a
// warning can quote it rather than the whole resource being lost.
type number struct {
	v   float64
	set bool
	bad string
}

func (n *number) UnmarshalJSON(b []byte) error {
	text := strings.TrimSpace(string(b))
	if text == "null" {
		return nil
	}
	if unq, err := strconv.Unquote(text); err == nil {
		text = strings.TrimSpace(unq)
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		n.bad = string(b)
		return nil
	}
	n.v, n.set = v, true
	return nil
}

func firstOf(ss ...string) string {
	for _, s := range ss {
		if s != "" {
			return s
		}
	}
	return ""
}
