package bmcsim

import (
	"fmt"
	"os"
	"slices"
	"strings"
)

// role says which state machine answers a path. Everything without a role
// is served from the base tree as it is.
type role int

const (
	roleNone role = iota
	roleAccounts
	roleSystem
	roleReset
	roleBios
	roleBiosSettings
	roleBiosReset
	roleVolumes
	roleMediaSlot
	roleMediaInsert
	roleMediaEject
	roleSessionService
	roleSessions
	roleTaskService
	roleTasks
	roleUpdateService
	roleFirmwarePush
	roleSimpleUpdate
	roleStartUpdate
	roleLogEntries
	roleClearLog
	roleJobs
	roleManagerReset
	roleChassis
	roleNIC
	roleStorage
	roleDriveErase
)

type storageModel struct {
	path      string
	volumes   string
	drives    []string // @odata.id of each drive
	raidTypes []string
}

// model is what the simulator learned about a flavour's tree: where the
// resources its state machine drives live. One per flavour, shared.
type model struct {
	tree   *tree
	quirks quirks

	roles map[string]role // by pathKey
	// owner maps a role path key to its index (storage, media slot, log).
	index map[string]int

	system, manager   string
	chassis           []string
	nics              []string
	resetAdvertised   []string
	resetAccepted     []string
	bootTargets       []string
	bios, settings    string
	applyTimes        []string
	storages          []storageModel
	mediaSlots        []string
	sessions          string
	tasks             string
	accounts          string
	logEntries        []string
	jobs              []string
	firmwareInventory string
	eraseDrives       []string // drive @odata.id per Drive.SecureErase target
}

func newModel(t *tree, q quirks) (*model, error) {
	m := &model{tree: t, quirks: q, roles: map[string]role{}, index: map[string]int{}}
	rootDoc := t.get("/redfish/v1")
	if rootDoc == nil {
		return nil, fmt.Errorf("tree has no service root")
	}
	if t.get("/redfish") == nil {
		t.put("/redfish", map[string]any{"v1": "/redfish/v1/"})
	}
	root := rootDoc.body

	systems := t.get(linkOf(root, "Systems"))
	if systems == nil || len(memberLinks(systems.body)) == 0 {
		return nil, fmt.Errorf("tree has no computer system")
	}
	m.system = memberLinks(systems.body)[0]
	sys := t.get(m.system)
	if sys == nil {
		return nil, fmt.Errorf("system %s is linked but missing", m.system)
	}
	m.set(m.system, roleSystem, 0)
	// iDRAC 6+ keeps virtual media under the system; recorded trees of
	// older System documents lack the link although the slots are there.
	if linkOf(sys.body, "VirtualMedia") == "" && t.get(m.system+"/VirtualMedia") != nil {
		sys.body["VirtualMedia"] = link(t.get(m.system + "/VirtualMedia").id)
	}

	if mgrs := t.get(linkOf(root, "Managers")); mgrs != nil {
		if ms := memberLinks(mgrs.body); len(ms) > 0 {
			m.manager = ms[0]
		}
	}
	if chs := t.get(linkOf(root, "Chassis")); chs != nil {
		for _, c := range memberLinks(chs.body) {
			if t.get(c) != nil {
				m.chassis = append(m.chassis, c)
				m.set(c, roleChassis, len(m.chassis)-1)
			}
		}
	}

	reset := mapOf(mapOf(sys.body["Actions"])["#ComputerSystem.Reset"])
	if target, _ := reset["target"].(string); target != "" {
		m.set(target, roleReset, 0)
		m.resetAdvertised = stringsOf(reset["ResetType@Redfish.AllowableValues"])
		if info, _ := reset["@Redfish.ActionInfo"].(string); len(m.resetAdvertised) == 0 && info != "" {
			if d := t.get(info); d != nil {
				for _, p := range anySlice(d.body["Parameters"]) {
					if mapOf(p)["Name"] == "ResetType" {
						m.resetAdvertised = stringsOf(mapOf(p)["AllowableValues"])
					}
				}
			}
		}
	}
	m.resetAccepted = m.resetAdvertised
	if len(q.resetAccepted) > 0 {
		m.resetAccepted = q.resetAccepted
	}
	if len(m.resetAccepted) == 0 {
		m.resetAccepted = []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "Nmi", "ForceOn", "PushPowerButton", "PowerCycle"}
	}
	m.bootTargets = stringsOf(mapOf(sys.body["Boot"])["BootSourceOverrideTarget@Redfish.AllowableValues"])
	if len(m.bootTargets) == 0 {
		m.bootTargets = []string{"None", "Pxe", "Cd", "Usb", "Hdd", "BiosSetup", "Utilities", "Diags", "UefiShell", "UefiTarget", "SDCard", "UefiHttp", "RemoteDrive"}
	}

	if b := linkOf(sys.body, "Bios"); b != "" && t.get(b) != nil {
		m.bios = t.get(b).id
		m.set(m.bios, roleBios, 0)
		bios := t.get(b).body
		settings := mapOf(bios["@Redfish.Settings"])
		m.applyTimes = stringsOf(settings["SupportedApplyTimes"])
		m.settings = linkOf(settings, "SettingsObject")
		if m.settings == "" {
			// Without a settings object the service takes PATCH on Bios itself.
			m.settings = m.bios
		} else {
			m.set(m.settings, roleBiosSettings, 0)
		}
		if target, _ := mapOf(mapOf(bios["Actions"])["#Bios.ResetBios"])["target"].(string); target != "" {
			m.set(target, roleBiosReset, 0)
		}
	}

	if d := t.get(linkOf(sys.body, "EthernetInterfaces")); d != nil {
		for _, n := range memberLinks(d.body) {
			if t.get(n) != nil {
				m.nics = append(m.nics, n)
				m.set(n, roleNIC, len(m.nics)-1)
			}
		}
	}

	if sc := t.get(linkOf(sys.body, "Storage")); sc != nil {
		for _, s := range memberLinks(sc.body) {
			sd := t.get(s)
			if sd == nil {
				continue
			}
			st := storageModel{path: sd.id, volumes: linkOf(sd.body, "Volumes")}
			for _, d := range anySlice(sd.body["Drives"]) {
				if id, _ := mapOf(d)["@odata.id"].(string); id != "" {
					st.drives = append(st.drives, id)
					if dd := t.get(id); dd != nil {
						if target, _ := mapOf(mapOf(dd.body["Actions"])["#Drive.SecureErase"])["target"].(string); target != "" {
							m.eraseDrives = append(m.eraseDrives, dd.id)
							m.set(target, roleDriveErase, len(m.eraseDrives)-1)
						}
					}
				}
			}
			for _, c := range anySlice(sd.body["StorageControllers"]) {
				st.raidTypes = append(st.raidTypes, stringsOf(mapOf(c)["SupportedRAIDTypes"])...)
			}
			if vd := t.get(st.volumes); vd != nil {
				for _, capLink := range anySlice(mapOf(vd.body["@Redfish.CollectionCapabilities"])["Capabilities"]) {
					if cd := t.get(linkOf(mapOf(capLink), "CapabilitiesObject")); cd != nil {
						if rt := stringsOf(cd.body["RAIDType@Redfish.AllowableValues"]); len(rt) > 0 {
							st.raidTypes = rt
						}
					}
				}
			}
			m.storages = append(m.storages, st)
			m.set(st.path, roleStorage, len(m.storages)-1)
			if st.volumes != "" {
				if t.get(st.volumes) == nil {
					collection(t, st.volumes, "VolumeCollection", "Volume Collection")
				}
				m.set(st.volumes, roleVolumes, len(m.storages)-1)
			}
		}
	}

	// Virtual media hangs off the manager, the system, or both.
	var mediaColls []string
	if m.manager != "" {
		if md := t.get(m.manager); md != nil {
			mediaColls = append(mediaColls, linkOf(md.body, "VirtualMedia"))
		}
	}
	mediaColls = append(mediaColls, linkOf(sys.body, "VirtualMedia"))
	for _, c := range mediaColls {
		cd := t.get(c)
		if cd == nil {
			continue
		}
		for _, s := range memberLinks(cd.body) {
			sd := t.get(s)
			if sd == nil {
				continue
			}
			m.mediaSlots = append(m.mediaSlots, sd.id)
			i := len(m.mediaSlots) - 1
			m.set(sd.id, roleMediaSlot, i)
			acts := mapOf(sd.body["Actions"])
			if target, _ := mapOf(acts["#VirtualMedia.InsertMedia"])["target"].(string); target != "" {
				m.set(target, roleMediaInsert, i)
			}
			if target, _ := mapOf(acts["#VirtualMedia.EjectMedia"])["target"].(string); target != "" {
				m.set(target, roleMediaEject, i)
			}
			// Oem.Hpe variants and standard paths land on the same slot.
			m.set(sd.id+"/Actions/VirtualMedia.InsertMedia", roleMediaInsert, i)
			m.set(sd.id+"/Actions/VirtualMedia.EjectMedia", roleMediaEject, i)
		}
	}

	// Sessions and tasks are state, so they exist even where a recorded
	// tree lacks their files (the Dell composite has neither root).
	m.sessions = linkOf(mapOf(root["Links"]), "Sessions")
	if m.sessions == "" {
		m.sessions = "/redfish/v1/SessionService/Sessions"
	}
	ss := linkOf(root, "SessionService")
	if ss == "" {
		ss = "/redfish/v1/SessionService"
	}
	if t.get(ss) == nil {
		t.put(ss, map[string]any{"@odata.type": "#SessionService.v1_1_8.SessionService", "Id": "SessionService", "Name": "Session Service",
			"ServiceEnabled": true, "SessionTimeout": numberValue(1800), "Sessions": link(m.sessions)})
	}
	if t.get(m.sessions) == nil {
		collection(t, m.sessions, "SessionCollection", "Session Collection")
	}
	m.set(ss, roleSessionService, 0)
	m.set(m.sessions, roleSessions, 0)

	// Accounts are state too; recorded trees hold one or two, or none.
	as := linkOf(root, "AccountService")
	if as == "" {
		as = "/redfish/v1/AccountService"
		root["AccountService"] = link(as)
	}
	if t.get(as) == nil {
		t.put(as, map[string]any{"@odata.type": "#AccountService.v1_5_0.AccountService", "Id": "AccountService",
			"Name": "Account Service", "ServiceEnabled": true, "Accounts": link(as + "/Accounts")})
	}
	m.accounts = linkOf(t.get(as).body, "Accounts")
	if m.accounts == "" {
		m.accounts = as + "/Accounts"
	}
	if t.get(m.accounts) == nil {
		collection(t, m.accounts, "ManagerAccountCollection", "Accounts")
	}
	m.set(m.accounts, roleAccounts, 0)

	ts := linkOf(root, "TaskService")
	if ts == "" {
		ts = "/redfish/v1/TaskService"
	}
	if t.get(ts) == nil {
		t.put(ts, map[string]any{"@odata.type": "#TaskService.v1_1_4.TaskService", "Id": "TaskService", "Name": "Task Service",
			"ServiceEnabled": true, "Tasks": link(ts + "/Tasks")})
	}
	m.tasks = linkOf(t.get(ts).body, "Tasks")
	if m.tasks == "" {
		m.tasks = ts + "/Tasks"
	}
	if t.get(m.tasks) == nil {
		collection(t, m.tasks, "TaskCollection", "Task Collection")
	}
	m.set(ts, roleTaskService, 0)
	m.set(m.tasks, roleTasks, 0)

	if us := linkOf(root, "UpdateService"); us != "" && t.get(us) != nil {
		ud := t.get(us).body
		m.set(us, roleUpdateService, 0)
		for _, k := range []string{"MultipartHttpPushUri", "HttpPushUri"} {
			if u, _ := ud[k].(string); u != "" {
				m.set(u, roleFirmwarePush, 0)
			}
		}
		acts := mapOf(ud["Actions"])
		if target, _ := mapOf(acts["#UpdateService.SimpleUpdate"])["target"].(string); target != "" {
			m.set(target, roleSimpleUpdate, 0)
		}
		m.set(us+"/Actions/UpdateService.StartUpdate", roleStartUpdate, 0)
		m.firmwareInventory = linkOf(ud, "FirmwareInventory")
	}

	if m.manager != "" {
		if md := t.get(m.manager); md != nil {
			if target, _ := mapOf(mapOf(md.body["Actions"])["#Manager.Reset"])["target"].(string); target != "" {
				m.set(target, roleManagerReset, 0)
			}
			if lc := t.get(linkOf(md.body, "LogServices")); lc != nil {
				for _, l := range memberLinks(lc.body) {
					ld := t.get(l)
					if ld == nil {
						continue
					}
					e := linkOf(ld.body, "Entries")
					if e == "" {
						continue
					}
					if t.get(e) == nil {
						collection(t, e, "LogEntryCollection", "Log Entries")
					}
					m.logEntries = append(m.logEntries, e)
					m.set(e, roleLogEntries, len(m.logEntries)-1)
					if target, _ := mapOf(mapOf(ld.body["Actions"])["#LogService.ClearLog"])["target"].(string); target != "" {
						m.set(target, roleClearLog, len(m.logEntries)-1)
					}
				}
			}
		}
	}
	if q.dellJobs && m.manager != "" {
		for _, j := range []string{m.manager + "/Jobs", m.manager + "/Oem/Dell/Jobs"} {
			if t.get(j) == nil {
				collection(t, j, "DellJobCollection", "JobQueue")
			}
			m.jobs = append(m.jobs, t.get(j).id)
			m.set(j, roleJobs, 0)
		}
	}
	if err := t.seal(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *model) set(path string, r role, i int) {
	k := pathKey(path)
	m.roles[k] = r
	m.index[k] = i
}

func anySlice(v any) []any {
	s, _ := v.([]any)
	return s
}

// detectVendor guesses the quirks of a recorded tree from what its service
// root and system say about themselves.
func detectVendor(t *tree) string {
	var words []string
	if r := t.get("/redfish/v1"); r != nil {
		v, _ := r.body["Vendor"].(string)
		p, _ := r.body["Product"].(string)
		words = append(words, v, p)
		if sys := t.get(linkOf(r.body, "Systems")); sys != nil {
			if ms := memberLinks(sys.body); len(ms) > 0 {
				if sd := t.get(ms[0]); sd != nil {
					mf, _ := sd.body["Manufacturer"].(string)
					words = append(words, mf)
				}
			}
		}
	}
	s := strings.ToLower(strings.Join(words, " "))
	switch {
	case strings.Contains(s, "dell"):
		return VendorDell
	case strings.Contains(s, "hpe") || strings.Contains(s, "hewlett"):
		return VendorHPE
	case strings.Contains(s, "supermicro"):
		return VendorSupermicro
	}
	return VendorGeneric
}

// flavourCache builds each flavour's model once per fleet.
type flavourCache struct {
	mockup    string
	renameIDs bool
	models    map[string]*model
}

func (c *flavourCache) model(vendor string) (*model, error) {
	if m, ok := c.models[vendor]; ok {
		return m, nil
	}
	var t *tree
	if c.mockup != "" {
		var err error
		if _, err = os.Stat(c.mockup); err != nil {
			return nil, err
		}
		if t, err = loadMockup(c.mockup); err != nil {
			return nil, err
		}
		if c.renameIDs {
			renameFirstMembers(t)
		}
	} else {
		t = builtinTree(vendor)
	}
	m, err := newModel(t, quirksFor(vendor))
	if err != nil {
		return nil, err
	}
	c.models[vendor] = m
	return m, nil
}

func (m *model) acceptsReset(t string) bool { return slices.Contains(m.resetAccepted, t) }

// renameFirstMembers gives the first System, Manager and Chassis the ID
// "1" (the Supermicro/HPE spelling bmclib knows).
func renameFirstMembers(t *tree) {
	root := t.get("/redfish/v1")
	for _, coll := range []string{"Systems", "Managers", "Chassis"} {
		c := t.get(linkOf(root.body, coll))
		if c == nil {
			continue
		}
		if ms := memberLinks(c.body); len(ms) > 0 {
			t.rename(ms[0], strings.TrimRight(c.id, "/")+"/1")
		}
	}
}
