package bmcsim

import (
	"fmt"
	"net/http"
	"strings"
	"time"
)

// maxLogEntries bounds the event log as BMC SEL storage is bounded.
const maxLogEntries = 256

type logEntry struct {
	id       int
	created  time.Time
	severity string
	message  string
}

// logEvent records what happened in the first manager log (the SEL).
func (b *BMC) logEvent(severity, message string) {
	b.logSeq++
	b.logs = append(b.logs, logEntry{id: b.logSeq, created: time.Now(), severity: severity, message: message})
	if len(b.logs) > maxLogEntries {
		b.logs = b.logs[len(b.logs)-maxLogEntries:]
	}
}

func (b *BMC) logEntryURI(i int, id int) string {
	return strings.TrimRight(b.m.logEntries[i], "/") + "/" + fmt.Sprint(id+1000)
}

func (b *BMC) entryDoc(i int, e logEntry) map[string]any {
	return map[string]any{
		"@odata.id": b.logEntryURI(i, e.id), "@odata.type": "#LogEntry.v1_6_0.LogEntry", "Id": fmt.Sprint(e.id + 1000),
		"Name": "Log Entry", "EntryType": "Event", "Severity": e.severity, "Message": e.message,
		"MessageId": "Event.1.0.Simulated", "Created": e.created.UTC().Format(time.RFC3339),
	}
}

func (b *BMC) renderLogEntries(key string, i int) map[string]any {
	doc := b.baseDoc(key)
	members := anySlice(doc["Members"])
	if i == 0 {
		for _, e := range b.logs {
			members = append(members, b.entryDoc(i, e))
		}
	}
	if members == nil {
		members = []any{}
	}
	doc["Members"] = members
	doc["Members@odata.count"] = numberValue(len(members))
	return doc
}

func (b *BMC) logEntryDoc(i int, id string) map[string]any {
	if i != 0 {
		return nil
	}
	for _, e := range b.logs {
		if fmt.Sprint(e.id+1000) == id {
			return b.entryDoc(i, e)
		}
	}
	return nil
}

func (b *BMC) clearLog() (*reply, *redfishError) {
	b.logs = nil
	return &reply{status: http.StatusNoContent}, nil
}
