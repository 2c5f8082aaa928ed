package bmcsim

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// BMC is one simulated baseboard management controller and the host
// behind it. All Redfish state is behind mu; the network side (listener,
// reboot) is behind netMu so that a rebooting BMC never blocks state reads.
type BMC struct {
	id, vendor         string
	address            string // host:port
	scheme             string
	username, password string
	serial, uuid       string
	macs               []string
	cfg                Config
	m                  *model
	tlsConfig          *tls.Config
	closing            chan struct{}

	netMu     sync.Mutex
	server    *http.Server
	rebooting bool
	closed    bool
	wg        sync.WaitGroup

	mu          sync.Mutex
	rng         *rand.Rand
	faults      Faults
	power       string
	powerGen    uint64 // changes on every power transition; stale timers check it
	boot        bootOverride
	systemProps map[string]any
	bios        biosState
	volumes     [][]*volume
	media       []mediaState
	sessions    map[string]*session
	accounts    []*account
	tasks       []*task
	taskSeq     int
	logs        []logEntry
	logSeq      int
	requests    []Request
	host        hostState
	hw          host // the machine: simulated or a VM
	counters    Counters
}

// Counters are the side effects a BMC has performed, for tests that must
// know what really happened rather than what a client believed.
type Counters struct {
	Requests        int `json:"requests"`
	Resets          int `json:"resets"`
	PowerOns        int `json:"power_ons"`
	BIOSApplies     int `json:"bios_applies"`
	BIOSResets      int `json:"bios_resets"`
	VolumesCreated  int `json:"volumes_created"`
	VolumesDeleted  int `json:"volumes_deleted"`
	MediaInserts    int `json:"media_inserts"`
	MediaEjects     int `json:"media_ejects"`
	Netboots        int `json:"netboots"`
	Installs        int `json:"installs"`
	PhoneHomes      int `json:"phone_homes"`
	FirmwareUpdates int `json:"firmware_updates"`
	TasksFailed     int `json:"tasks_failed"`
	SessionsCreated int `json:"sessions_created"`
	AuthFailures    int `json:"auth_failures"`
	BMCReboots      int `json:"bmc_reboots"`
	DrivesErased    int `json:"drives_erased"`
	// Injected faults, so that a test knows what its client went through.
	Faults5xx         int `json:"faults_5xx"`
	FaultHangs        int `json:"faults_hangs"`
	FaultSessionDrops int `json:"faults_session_drops"`
}

// maxRequestLog bounds the requests a BMC remembers.
const maxRequestLog = 1024

// Request is one request as the BMC received it, for tests that must know
// when a client really sent something (its resends, its waits) rather
// than when it believed it did.
type Request struct {
	At     time.Time `json:"at"`
	Method string    `json:"method"`
	Path   string    `json:"path"`
	// Fault is the status of an injected failure answer, 0 for none.
	Fault int `json:"fault,omitempty"`
	// Hung is an injected hang.
	Hung bool `json:"hung,omitempty"`
}

// Requests returns the latest requests (up to maxRequestLog), oldest first.
func (b *BMC) Requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Request(nil), b.requests...)
}

// retryAfterValue is the Retry-After header of a busy answer at now.
func retryAfterValue(f Faults, now time.Time) string {
	wait := time.Duration(f.RetryAfter) * time.Second
	if f.RetryAfterDate {
		// An HTTP-date has whole seconds: round up so the date asks for
		// at least RetryAfter.
		return now.Add(wait).Add(time.Second - 1).UTC().Format(http.TimeFormat)
	}
	return strconv.Itoa(f.RetryAfter)
}

// reply is a successful answer, written after the state lock is released.
type reply struct {
	status   int
	body     []byte
	etag     string
	location string
	header   map[string]string
}

func jsonReply(status int, doc map[string]any) *reply {
	raw, _ := json.Marshal(doc)
	return &reply{status: status, body: raw}
}

// ID is the BMC's name in the fleet and manifest.
func (b *BMC) ID() string { return b.id }

// Vendor is the flavour the BMC imitates.
func (b *BMC) Vendor() string { return b.vendor }

// Address is the base URL clients use (https://ip:port or http://ip:port).
func (b *BMC) Address() string { return b.scheme + "://" + b.address }

// HostPort is the listen address without a scheme.
func (b *BMC) HostPort() string { return b.address }

// Credentials returns the factory user and password (those of the
// manifest); after a client rotates them, Authenticates tells what works.
func (b *BMC) Credentials() (string, string) { return b.username, b.password }

// Serial is the host's serial number (service tag on Dell).
func (b *BMC) Serial() string { return b.serial }

// MACs are the host's NIC addresses, the first being the PXE NIC.
func (b *BMC) MACs() []string { return append([]string(nil), b.macs...) }

func (b *BMC) start() error {
	ln, err := net.Listen("tcp", b.address)
	if err != nil {
		return err
	}
	b.address = ln.Addr().String()
	b.serve(ln)
	return nil
}

func (b *BMC) serve(ln net.Listener) {
	srv := &http.Server{Handler: b, ReadHeaderTimeout: 30 * time.Second, ErrorLog: discardLogger()}
	if b.tlsConfig != nil {
		ln = tls.NewListener(ln, b.tlsConfig)
	}
	b.server = srv
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		_ = srv.Serve(ln)
	}()
}

func (b *BMC) close() {
	b.netMu.Lock()
	if b.closed {
		b.netMu.Unlock()
		return
	}
	b.closed = true
	close(b.closing)
	if b.server != nil {
		_ = b.server.Close()
	}
	b.netMu.Unlock()
	b.wg.Wait()
	b.mu.Lock()
	b.powerGen++ // stops host timers from acting on a closed BMC
	b.mu.Unlock()
	b.hw.close()
}

func (b *BMC) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	f := b.faults
	b.counters.Requests++
	arrived := time.Now()
	// Draws in a fixed order, and none for a rate of 0, so a seed replays
	// the same faults for the same requests.
	hang := f.Hang || b.draw(f.HangRate)
	fail := !hang && b.draw(f.ErrorRate)
	status := f.ErrorStatus
	if fail && status == 0 {
		status = []int{http.StatusInternalServerError, http.StatusServiceUnavailable}[b.rng.IntN(2)]
	}
	// Only a request holding a session can notice its loss: dropping
	// sessions under a login or an anonymous read would be invisible.
	if !hang && !fail && r.Header.Get("X-Auth-Token") != "" && b.draw(f.SessionDropRate) {
		b.dropSessions()
		b.counters.FaultSessionDrops++
		b.logEvent("Warning", "All sessions were lost")
	}
	switch {
	case hang:
		b.counters.FaultHangs++
	case fail:
		b.counters.Faults5xx++
	}
	rec := Request{At: arrived, Method: r.Method, Path: r.URL.Path, Hung: hang}
	if fail {
		rec.Fault = status
	}
	b.requests = append(b.requests, rec)
	if len(b.requests) > maxRequestLog {
		b.requests = b.requests[len(b.requests)-maxRequestLog:]
	}
	delay := f.Latency
	if f.LatencyJitter > 0 {
		delay += time.Duration(b.rng.Int64N(int64(f.LatencyJitter)))
	}
	b.mu.Unlock()

	if hang {
		select {
		case <-r.Context().Done():
		case <-b.closing:
		}
		return
	}
	if delay > 0 {
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-b.closing:
			t.Stop()
			return
		}
	}
	if fail {
		if f.RetryAfter > 0 && (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) {
			w.Header().Set("Retry-After", retryAfterValue(f, time.Now()))
		}
		if status == http.StatusTooManyRequests {
			writeError(w, errorf(status, "ServiceTemporarilyUnavailable", "The service is busy; retry the request later."))
			return
		}
		writeError(w, errorf(status, "InternalError", "The request failed due to an internal service error. The service is still operational."))
		return
	}

	var body []byte
	if r.Body != nil {
		var err error
		body, err = io.ReadAll(io.LimitReader(r.Body, 256<<20))
		if err != nil {
			writeError(w, errBadJSON(err.Error()))
			return
		}
	}

	b.mu.Lock()
	rep, rerr := b.handle(r, body)
	b.mu.Unlock()

	if rerr != nil {
		if rerr.status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="Redfish"`)
		}
		writeError(w, rerr)
		return
	}
	h := w.Header()
	h.Set("OData-Version", "4.0")
	h.Set("Cache-Control", "no-cache")
	if rep.etag != "" {
		h.Set("ETag", rep.etag)
	}
	if rep.location != "" {
		h.Set("Location", rep.location)
	}
	for k, v := range rep.header {
		h.Set(k, v)
	}
	if rep.body != nil {
		h.Set("Content-Type", "application/json; charset=utf-8")
	}
	if rep.status == 0 {
		rep.status = http.StatusOK
	}
	w.WriteHeader(rep.status)
	if r.Method != http.MethodHead && rep.body != nil && rep.status != http.StatusNoContent {
		_, _ = w.Write(rep.body)
	}
}

// draw is true for the given fraction of calls; with mu held.
func (b *BMC) draw(rate float64) bool {
	return rate > 0 && b.rng.Float64() < rate
}

// handle runs with mu held.
func (b *BMC) handle(r *http.Request, body []byte) (*reply, *redfishError) {
	now := time.Now()
	b.advanceTasks(now)
	key := pathKey(r.URL.Path)
	if !strings.HasPrefix(key, "/redfish") && !b.m.roleAt(key) {
		return nil, errNotFound(r.URL.Path)
	}
	if !b.public(r, key) {
		if err := b.authenticate(r, now); err != nil {
			return nil, err
		}
	}
	// If-Match guards changes to a resource. Actions (POST) ignore it:
	// bmclib ejects and then inserts media holding one ETag, and gofish
	// posts Reset with a tag the host's POST may have outdated, so a
	// service that checked would break the standard client.
	if r.Method == http.MethodPatch || r.Method == http.MethodPut || r.Method == http.MethodDelete {
		if err := b.checkIfMatch(r, key); err != nil {
			return nil, err
		}
	}
	rl, i := b.m.roles[key], b.m.index[key]
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		return b.get(key, r.URL.Path)
	case http.MethodPatch:
		return b.patch(rl, i, key, r.URL.Path, body)
	case http.MethodPost:
		return b.post(rl, i, key, r, body)
	case http.MethodDelete:
		return b.delete(key, r.URL.Path)
	case http.MethodPut:
		return nil, errMethod(r.Method, r.URL.Path)
	}
	return nil, errMethod(r.Method, r.URL.Path)
}

func (m *model) roleAt(key string) bool { _, ok := m.roles[key]; return ok }

// public lists what a client may reach before it has logged in.
func (b *BMC) public(r *http.Request, key string) bool {
	switch key {
	case "/redfish", "/redfish/v1", "/redfish/v1/odata", "/redfish/v1/$metadata":
		return r.Method == http.MethodGet || r.Method == http.MethodHead
	}
	return r.Method == http.MethodPost && key == pathKey(b.m.sessions)
}

// get answers a read of any resource: rendered state or the base tree,
// in the shape the tree faults in force give it.
func (b *BMC) get(key, path string) (*reply, *redfishError) {
	if len(b.faults.Tree) > 0 {
		return b.getFaulty(key, path)
	}
	return b.getPlain(key, path)
}

func (b *BMC) getPlain(key, path string) (*reply, *redfishError) {
	if doc := b.render(key); doc != nil {
		return b.docReply(doc), nil
	}
	if d := b.m.tree.docs[key]; d != nil {
		return &reply{body: d.raw, etag: b.tagFor(d.etag)}, nil
	}
	if rep := b.getMember(key); rep != nil {
		return rep, nil
	}
	return nil, errNotFound(path)
}

func (b *BMC) tagFor(etag string) string {
	if b.m.quirks.weakETag {
		return "W/" + etag
	}
	return etag
}

// docReply encodes a rendered document with its ETag; iLO also echoes the
// tag inside the body as @odata.etag.
func (b *BMC) docReply(doc map[string]any) *reply {
	delete(doc, "@odata.etag")
	raw, _ := json.Marshal(doc)
	tag := b.tagFor(etagOf(raw))
	if b.m.quirks.weakETag && len(raw) > 1 {
		quoted, _ := json.Marshal(tag)
		sep := ","
		if len(raw) == 2 {
			sep = ""
		}
		raw = append([]byte(`{"@odata.etag":`+string(quoted)+sep), raw[1:]...)
	}
	return &reply{body: raw, etag: tag}
}

// currentETag is the tag a client must hold to change the resource at key.
// It is the tag a read hands out, tree faults and all.
func (b *BMC) currentETag(key string) string {
	if rep, err := b.get(key, key); err == nil {
		return rep.etag
	}
	return ""
}

func (b *BMC) checkIfMatch(r *http.Request, key string) *redfishError {
	want := r.Header.Get("If-Match")
	if want == "" || strings.TrimSpace(want) == "*" {
		return nil
	}
	cur := b.currentETag(key)
	if cur == "" {
		return nil
	}
	for _, tag := range strings.Split(want, ",") {
		if opaque(tag) == opaque(cur) {
			return nil
		}
	}
	return errorf(http.StatusPreconditionFailed, "PreconditionFailed",
		"The ETag supplied did not match the ETag required to change this resource.")
}

// opaque compares tags weakly: iLO hands out weak tags and takes them back.
func opaque(tag string) string {
	tag = strings.TrimSpace(tag)
	tag = strings.TrimPrefix(tag, "W/")
	return strings.Trim(tag, `"`)
}

// render returns the current document for a path that has state, or nil.
func (b *BMC) render(key string) map[string]any {
	rl, ok := b.m.roles[key]
	if !ok {
		return nil
	}
	i := b.m.index[key]
	switch rl {
	case roleSystem:
		return b.renderSystem()
	case roleChassis:
		return b.renderChassis(key, i)
	case roleNIC:
		return b.renderNIC(key, i)
	case roleBios:
		return b.renderBios()
	case roleBiosSettings:
		return b.renderBiosSettings()
	case roleStorage:
		return b.renderStorage(key, i)
	case roleVolumes:
		return b.renderVolumes(key, i)
	case roleMediaSlot:
		return b.renderMedia(key, i)
	case roleSessionService:
		return b.renderSessionService(key)
	case roleSessions:
		return b.renderSessions(key)
	case roleTasks:
		return b.renderTasks(key)
	case roleLogEntries:
		return b.renderLogEntries(key, i)
	case roleJobs:
		return b.renderJobs(key)
	case roleAccounts:
		return b.renderAccounts(key)
	}
	return nil
}

// getMember renders members of collections whose members are state:
// sessions, tasks, volumes, log entries and Dell jobs.
func (b *BMC) getMember(key string) *reply {
	parent := key[:strings.LastIndex(key, "/")]
	id := key[len(parent)+1:]
	rl, ok := b.m.roles[parent]
	if !ok {
		return nil
	}
	var doc map[string]any
	switch rl {
	case roleSessions:
		doc = b.sessionDoc(id)
	case roleTasks:
		doc = b.taskDoc(id)
	case roleJobs:
		doc = b.jobDoc(parent, id)
	case roleAccounts:
		doc = b.accountDoc(id)
	case roleVolumes:
		doc = b.volumeDoc(b.m.index[parent], id)
	case roleLogEntries:
		doc = b.logEntryDoc(b.m.index[parent], id)
	}
	if doc == nil {
		return nil
	}
	return b.docReply(doc)
}

func (b *BMC) baseDoc(key string) map[string]any {
	if d := b.m.tree.docs[key]; d != nil {
		return cloneMap(d.body)
	}
	return nil
}

func (b *BMC) patch(rl role, i int, key, path string, body []byte) (*reply, *redfishError) {
	switch rl {
	case roleSystem:
		return b.patchSystem(body)
	case roleBiosSettings:
		return b.patchBiosSettings(body)
	case roleBios:
		if b.m.settings == b.m.bios {
			return b.patchBiosSettings(body)
		}
		return nil, errorf(http.StatusMethodNotAllowed, "PropertyNotWritable", "BIOS attributes are read-only here; PATCH the settings object "+b.m.settings+".")
	case roleMediaSlot:
		return b.patchMedia(i, body)
	}
	if parent := key[:strings.LastIndex(key, "/")]; b.m.roles[parent] == roleAccounts {
		return b.patchAccount(key[len(parent)+1:], path, body)
	}
	if b.m.tree.docs[key] == nil && b.getMember(key) == nil {
		return nil, errNotFound(path)
	}
	return nil, errMethod(http.MethodPatch, path)
}

func (b *BMC) post(rl role, i int, key string, r *http.Request, body []byte) (*reply, *redfishError) {
	path := r.URL.Path
	switch rl {
	case roleSessions:
		return b.createSession(body, r)
	case roleReset:
		return b.resetSystem(body)
	case roleBiosReset:
		return b.resetBios()
	case roleVolumes:
		return b.createVolume(i, body)
	case roleMediaInsert:
		return b.insertMedia(i, body)
	case roleMediaEject:
		return b.ejectMedia(i)
	case roleFirmwarePush:
		return b.pushFirmware(r, body)
	case roleSimpleUpdate:
		return b.simpleUpdate(body)
	case roleStartUpdate:
		return b.startUpdate()
	case roleClearLog:
		return b.clearLog()
	case roleJobs:
		return b.createJob(body)
	case roleManagerReset:
		return b.resetManager(body)
	case roleDriveErase:
		return b.secureErase(i)
	}
	if strings.Contains(key, "/actions/") {
		return nil, errorf(http.StatusNotFound, "ActionNotSupported", "The action "+path+" is not supported by the resource.", path)
	}
	if b.m.tree.docs[key] == nil && b.getMember(key) == nil {
		return nil, errNotFound(path)
	}
	return nil, errMethod(http.MethodPost, path)
}

func (b *BMC) delete(key, path string) (*reply, *redfishError) {
	parent := key[:strings.LastIndex(key, "/")]
	id := key[len(parent)+1:]
	switch b.m.roles[parent] {
	case roleSessions:
		return b.deleteSession(id, path)
	case roleVolumes:
		return b.deleteVolume(b.m.index[parent], id, path)
	case roleJobs:
		return b.deleteJob(id, path)
	}
	if b.m.tree.docs[key] == nil && b.render(key) == nil {
		return nil, errNotFound(path)
	}
	return nil, errMethod(http.MethodDelete, path)
}

// decodeBody parses a JSON object request body.
func decodeBody(body []byte) (map[string]any, *redfishError) {
	if len(strings.TrimSpace(string(body))) == 0 {
		return map[string]any{}, nil
	}
	obj, err := decodeObject(body)
	if err != nil {
		return nil, errBadJSON(err.Error())
	}
	return obj, nil
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
