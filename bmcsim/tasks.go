package bmcsim

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"strings"
	"time"
)

// task is a TaskService task (an iDRAC job on Dell). Its state is a
// function of time, computed when read; side effects run once, under the
// BMC lock, when a read or request first finds it finished.
type task struct {
	id, name, kind string
	target         string
	created        time.Time
	duration       time.Duration
	waitReset      bool // scheduled until the host next resets (iDRAC OnReset jobs)
	resetAt        time.Time
	fail           bool
	done           bool
	ended          time.Time
	onSuccess      func()
	onFailure      func()
}

func (b *BMC) newTask(kind, name string) *task {
	b.taskSeq++
	id := fmt.Sprint(b.taskSeq)
	if b.m.quirks.taskPrefix != "" {
		id = fmt.Sprintf("%s%012d", b.m.quirks.taskPrefix, 700000000000+b.rng.Int64N(100000000000))
	}
	for b.m.tree.get(b.m.tasks+"/"+id) != nil || b.taskByID(id) != nil {
		b.taskSeq++
		id = fmt.Sprint(b.taskSeq)
	}
	t := &task{id: id, name: name, kind: kind, created: time.Now(), duration: b.cfg.scaled(b.cfg.TaskDuration), fail: b.faults.TaskException}
	b.tasks = append(b.tasks, t)
	if len(b.tasks) > 256 {
		b.tasks = b.tasks[len(b.tasks)-256:]
	}
	return t
}

func (b *BMC) taskByID(id string) *task {
	for _, t := range b.tasks {
		if strings.EqualFold(t.id, id) {
			return t
		}
	}
	return nil
}

// phase reports Redfish TaskState, the iDRAC JobState and percent done.
func (t *task) phase(now time.Time) (state, job string, pct int) {
	start := t.created
	if t.waitReset {
		if t.resetAt.IsZero() {
			return "Pending", "Scheduled", 0
		}
		start = t.resetAt
	}
	el := now.Sub(start)
	if t.duration <= 0 || el >= t.duration {
		if t.fail {
			return "Exception", "Failed", 100
		}
		return "Completed", "Completed", 100
	}
	pct = int(100 * el / t.duration)
	if pct < 10 && t.kind == "FirmwareUpdate" {
		return "Starting", "Downloading", pct
	}
	return "Running", "Running", pct
}

// advanceTasks applies the side effects of tasks that have finished.
func (b *BMC) advanceTasks(now time.Time) {
	for _, t := range b.tasks {
		if t.done {
			continue
		}
		state, _, _ := t.phase(now)
		if state != "Completed" && state != "Exception" {
			continue
		}
		t.done = true
		t.ended = now
		if t.fail {
			b.counters.TasksFailed++
			b.logEvent("Critical", "Task "+t.id+" ("+t.name+") failed")
			if t.onFailure != nil {
				t.onFailure()
			}
			continue
		}
		b.logEvent("OK", "Task "+t.id+" ("+t.name+") completed")
		if t.onSuccess != nil {
			t.onSuccess()
		}
	}
}

func (b *BMC) releaseTasksWaitingForReset() {
	now := time.Now()
	for _, t := range b.tasks {
		if t.waitReset && t.resetAt.IsZero() {
			t.resetAt = now
		}
	}
}

func (b *BMC) taskURI(id string) string { return strings.TrimRight(b.m.tasks, "/") + "/" + id }

func (b *BMC) jobLocation(id string) string {
	if len(b.m.jobs) > 0 {
		return strings.TrimRight(b.m.jobs[0], "/") + "/" + id
	}
	return b.taskURI(id)
}

func (b *BMC) taskDoc(id string) map[string]any {
	t := b.taskByID(id)
	if t == nil {
		return nil
	}
	state, job, pct := t.phase(time.Now())
	status, severity, msg := "OK", "OK", "Task "+state
	switch state {
	case "Exception":
		status, severity, msg = "Critical", "Critical", "The task failed: the operation could not be completed by the device."
	case "Completed":
		msg = "The task successfully completed."
	case "Pending":
		msg = "Task successfully scheduled; it runs at the next host reset."
	}
	doc := map[string]any{
		"@odata.id": b.taskURI(t.id), "@odata.type": "#Task.v1_4_3.Task", "Id": t.id, "Name": t.name,
		"TaskState": state, "TaskStatus": status, "PercentComplete": numberValue(pct),
		"StartTime": t.created.UTC().Format(time.RFC3339),
		"Messages":  []any{map[string]any{"MessageId": "TaskEvent.1.0." + state, "Message": msg, "Severity": severity, "MessageArgs": []any{}}},
	}
	if !t.ended.IsZero() {
		doc["EndTime"] = t.ended.UTC().Format(time.RFC3339)
	}
	if b.m.quirks.dellJobs {
		doc["Oem"] = map[string]any{"Dell": b.dellJob(t, job, pct, msg)}
	}
	return doc
}

func (b *BMC) dellJob(t *task, job string, pct int, msg string) map[string]any {
	return map[string]any{
		"@odata.type": "#DellJob.v1_5_0.DellJob", "Id": t.id, "Name": t.name, "JobState": job, "JobType": t.kind,
		"Message": msg, "MessageId": "IDRAC.2.8.JCP001", "PercentComplete": numberValue(pct),
		"StartTime": "TIME_NOW", "EndTime": nil, "CompletionTime": nil, "TargetSettingsURI": nilIfEmpty(t.target),
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func (b *BMC) renderTasks(key string) map[string]any {
	doc := b.baseDoc(key)
	ids := memberLinks(doc)
	for _, t := range b.tasks {
		ids = append(ids, b.taskURI(t.id))
	}
	doc["Members"] = linkList(ids)
	doc["Members@odata.count"] = numberValue(len(ids))
	return doc
}

func (b *BMC) renderJobs(key string) map[string]any {
	doc := b.baseDoc(key)
	ids := memberLinks(doc)
	base := b.m.tree.docs[key].id
	for _, t := range b.tasks {
		ids = append(ids, strings.TrimRight(base, "/")+"/"+t.id)
	}
	doc["Members"] = linkList(ids)
	doc["Members@odata.count"] = numberValue(len(ids))
	return doc
}

func (b *BMC) jobDoc(parent, id string) map[string]any {
	t := b.taskByID(id)
	if t == nil {
		return nil
	}
	_, job, pct := t.phase(time.Now())
	doc := b.dellJob(t, job, pct, "Job "+job)
	doc["@odata.id"] = strings.TrimRight(b.m.tree.docs[parent].id, "/") + "/" + t.id
	return doc
}

// createJob is iDRAC's way to commit staged BIOS changes: POST to the job
// queue with the settings URI to apply at the next reset.
func (b *BMC) createJob(body []byte) (*reply, *redfishError) {
	req, rerr := decodeBody(body)
	if rerr != nil {
		return nil, rerr
	}
	target, _ := req["TargetSettingsURI"].(string)
	if target == "" {
		return nil, errPropertyMissing("TargetSettingsURI")
	}
	if pathKey(target) != pathKey(b.m.settings) {
		return nil, errPropertyValue("TargetSettingsURI", target)
	}
	if b.bios.jobPending() {
		return nil, errorf(http.StatusBadRequest, "IDRAC.2.8.SYS011",
			"Pending configuration values are already committed, unable to perform another set operation.")
	}
	if len(b.bios.pending) == 0 {
		return nil, errorf(http.StatusBadRequest, "IDRAC.2.8.SYS030", "No pending data present to create a Configuration job.")
	}
	t := b.newTask("BIOSConfiguration", "Configure: BIOS.Setup.1-1")
	t.waitReset = true
	t.target = b.m.settings
	b.bios.jobID = t.id
	return &reply{status: http.StatusOK, location: b.jobLocation(t.id)}, nil
}

// deleteJob cancels a job; deleting a scheduled BIOS job drops the staged values.
func (b *BMC) deleteJob(id, path string) (*reply, *redfishError) {
	t := b.taskByID(id)
	if t == nil {
		return nil, errNotFound(path)
	}
	if strings.EqualFold(b.bios.jobID, t.id) {
		b.bios.jobID = ""
		b.bios.pending = map[string]any{}
	}
	b.tasks = removeTask(b.tasks, t)
	return jsonReply(http.StatusOK, successBody("Success", "Successfully Completed Request")), nil
}

func removeTask(ts []*task, t *task) []*task {
	out := ts[:0]
	for _, x := range ts {
		if x != t {
			out = append(out, x)
		}
	}
	return out
}

// taskAccepted answers a long request with 202 and the task's URI, which
// is where bmclib looks for the task id.
func (b *BMC) taskAccepted(t *task) *reply {
	rep := b.docReply(b.taskDoc(t.id))
	rep.status = http.StatusAccepted
	rep.location = b.taskURI(t.id)
	rep.etag = ""
	if b.m.quirks.acceptedBody {
		rep.body = mustJSON(map[string]any{"Accepted": map[string]any{
			"code": "Base.v1_4_0.Accepted", "Message": "Successfully Accepted Request. Please see the location header and ExtendedInfo for more information.",
			"@Message.ExtendedInfo": []any{map[string]any{"MessageId": "SMC.1.0.OemSimpleupdateAcceptedMessage",
				"Severity": "OK", "Resolution": "No resolution was required.", "Message": "Please also check Task Resource " + b.taskURI(t.id) + " to see more information.",
				"MessageArgs": []any{b.taskURI(t.id)}}}}})
	}
	return rep
}

func (b *BMC) firmwareTask(name string, onReset bool) *task {
	t := b.newTask("FirmwareUpdate", name)
	t.waitReset = onReset && b.m.quirks.dellJobs
	t.onSuccess = func() {
		b.counters.FirmwareUpdates++
	}
	return t
}

// pushFirmware takes an image on MultipartHttpPushUri or HttpPushUri.
func (b *BMC) pushFirmware(r *http.Request, body []byte) (*reply, *redfishError) {
	onReset := false
	name := "Firmware Update"
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if strings.HasPrefix(mt, "multipart/") {
		mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
		var file int64
		sawFile := false
		for {
			p, err := mr.NextPart()
			if err == io.EOF {
				break
			}
			if err != nil {
				return nil, errorf(http.StatusBadRequest, "MalformedJSON", "The multipart request could not be parsed: "+err.Error())
			}
			switch p.FormName() {
			case "UpdateFile":
				sawFile = true
				file, _ = io.Copy(io.Discard, p)
			case "UpdateParameters":
				data, _ := io.ReadAll(p)
				up, rerr := decodeBody(data)
				if rerr != nil {
					return nil, rerr
				}
				onReset = up["@Redfish.OperationApplyTime"] == "OnReset"
				if ts := stringsOf(up["Targets"]); len(ts) > 0 {
					name = "Firmware Update: " + lastSegment(ts[0])
				}
			}
		}
		if !sawFile || file == 0 {
			return nil, errPropertyMissing("UpdateFile")
		}
	} else if len(body) == 0 {
		return nil, errorf(http.StatusBadRequest, "PropertyMissing", "The request carried no firmware image.")
	}
	t := b.firmwareTask(name, onReset)
	b.logEvent("OK", "Firmware image received; task "+t.id+" created")
	return b.taskAccepted(t), nil
}

func (b *BMC) simpleUpdate(body []byte) (*reply, *redfishError) {
	req, rerr := decodeBody(body)
	if rerr != nil {
		return nil, rerr
	}
	img, _ := req["ImageURI"].(string)
	if img == "" {
		return nil, errActionParameterMissing("UpdateService.SimpleUpdate", "ImageURI")
	}
	t := b.firmwareTask("Firmware Update: "+lastSegment(img), false)
	return b.taskAccepted(t), nil
}

func (b *BMC) startUpdate() (*reply, *redfishError) {
	t := b.firmwareTask("Firmware Update", false)
	return b.taskAccepted(t), nil
}
