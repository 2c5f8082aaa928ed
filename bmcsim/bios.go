package bmcsim

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// biosState keeps the attributes in force and those staged for the next
// reset, which is when real firmware reads its settings.
type biosState struct {
	current  map[string]any
	defaults map[string]any
	pending  map[string]any
	jobID    string // iDRAC configuration job waiting for the reset
	applied  time.Time
}

func (s *biosState) jobPending() bool { return s.jobID != "" }

func newBiosState(m *model) biosState {
	s := biosState{current: map[string]any{}, pending: map[string]any{}}
	if d := m.tree.get(m.bios); d != nil {
		if attrs := mapOf(d.body["Attributes"]); attrs != nil {
			s.current = cloneMap(attrs)
		}
	}
	s.defaults = cloneMap(s.current)
	return s
}

func (b *BMC) renderBios() map[string]any {
	doc := b.baseDoc(pathKey(b.m.bios))
	doc["Attributes"] = cloneMap(b.bios.current)
	if rs := mapOf(doc["@Redfish.Settings"]); rs != nil && !b.bios.applied.IsZero() {
		rs["Time"] = b.bios.applied.UTC().Format(time.RFC3339)
	}
	return doc
}

func (b *BMC) renderBiosSettings() map[string]any {
	doc := b.baseDoc(pathKey(b.m.settings))
	if doc == nil {
		doc = map[string]any{"@odata.id": b.m.settings, "@odata.type": "#Bios.v1_2_0.Bios", "Id": "Settings", "Name": "BIOS Pending Settings"}
	}
	attrs := cloneMap(b.bios.pending)
	if b.m.quirks.mergedSettings {
		// iLO's settings object is the whole future attribute set.
		attrs = cloneMap(b.bios.current)
		for k, v := range b.bios.pending {
			attrs[k] = v
		}
	}
	doc["Attributes"] = attrs
	return doc
}

func (b *BMC) patchBiosSettings(body []byte) (*reply, *redfishError) {
	req, rerr := decodeBody(body)
	if rerr != nil {
		return nil, rerr
	}
	raw, ok := req["Attributes"]
	if !ok {
		return nil, errPropertyMissing("Attributes")
	}
	attrs := mapOf(raw)
	if attrs == nil {
		return nil, errorf(http.StatusBadRequest, "PropertyValueTypeError", "The value for the property Attributes is of a different type than the property can accept.", "Attributes")
	}
	for k := range req {
		if k != "Attributes" && k != "@Redfish.SettingsApplyTime" && !strings.HasPrefix(k, "@odata.") {
			return nil, errorf(http.StatusBadRequest, "PropertyUnknown", "The property "+k+" is not in the list of valid properties for the resource.", k)
		}
	}
	applyTime, explicit := "OnReset", false
	if at := mapOf(req["@Redfish.SettingsApplyTime"]); at != nil {
		s, _ := at["ApplyTime"].(string)
		supported := b.m.applyTimes
		if len(supported) == 0 {
			supported = []string{"OnReset"}
		}
		if !slices.Contains(supported, s) {
			return nil, errPropertyValue("@Redfish.SettingsApplyTime/ApplyTime", s)
		}
		applyTime, explicit = s, true
	}
	if b.m.quirks.dellJobs && b.bios.jobPending() {
		return nil, errorf(http.StatusBadRequest, "IDRAC.2.8.SYS011",
			"Pending configuration values are already committed, unable to perform another set operation.")
	}
	staged := map[string]any{}
	for k, v := range attrs {
		cur, ok := b.bios.current[k]
		if !ok {
			return nil, errorf(http.StatusBadRequest, "PropertyUnknown", "The property Attributes/"+k+" is not in the list of valid properties for the resource.", "Attributes/"+k)
		}
		cv, ok := coerceAttribute(cur, v)
		if !ok {
			return nil, errorf(http.StatusBadRequest, "PropertyValueTypeError", "The value for the property Attributes/"+k+" is of a different type than the property can accept.", "Attributes/"+k)
		}
		staged[k] = cv
	}
	for k, v := range staged {
		b.bios.pending[k] = v
	}
	b.logEvent("OK", "BIOS settings staged ("+strconv.Itoa(len(staged))+" attributes, "+applyTime+")")
	if applyTime == "Immediate" {
		b.applyPendingBios()
		return b.docReply(b.renderBios()), nil
	}
	if b.m.quirks.dellJobs && explicit {
		t := b.newTask("BIOSConfiguration", "Configure: BIOS.Setup.1-1")
		t.waitReset = true
		t.target = b.m.settings
		b.bios.jobID = t.id
		rep := &reply{status: http.StatusAccepted, location: b.jobLocation(t.id)}
		return rep, nil
	}
	return jsonReply(http.StatusOK, successBody("SystemResetRequired", "One or more properties were changed and will not take effect until system is reset.")), nil
}

// coerceAttribute takes values of the attribute's own type; bmclib sends
// every value as a string, so numeric and boolean strings are converted.
func coerceAttribute(cur, v any) (any, bool) {
	switch cur.(type) {
	case string:
		s, ok := v.(string)
		return s, ok
	case json.Number, float64:
		if n, ok := numberOf(v); ok {
			return json.Number(strconv.FormatFloat(n, 'f', -1, 64)), true
		}
		if s, ok := v.(string); ok {
			if _, err := strconv.ParseFloat(s, 64); err == nil {
				return json.Number(s), true
			}
		}
		return nil, false
	case bool:
		if bv, ok := v.(bool); ok {
			return bv, true
		}
		if s, ok := v.(string); ok {
			if bv, err := strconv.ParseBool(s); err == nil {
				return bv, true
			}
		}
		return nil, false
	}
	return v, true
}

// applyPendingBios runs at reset, when firmware reads its staged settings.
func (b *BMC) applyPendingBios() {
	if len(b.bios.pending) == 0 {
		return
	}
	for k, v := range b.bios.pending {
		b.bios.current[k] = v
	}
	b.bios.pending = map[string]any{}
	b.bios.jobID = ""
	b.bios.applied = time.Now()
	b.counters.BIOSApplies++
	b.logEvent("OK", "BIOS settings applied")
}

func (b *BMC) resetBios() (*reply, *redfishError) {
	if b.m.quirks.dellJobs && b.bios.jobPending() {
		return nil, errorf(http.StatusBadRequest, "IDRAC.2.8.SYS011",
			"Pending configuration values are already committed, unable to perform another set operation.")
	}
	for k, v := range b.bios.defaults {
		if b.bios.current[k] != v {
			b.bios.pending[k] = v
		}
	}
	b.counters.BIOSResets++
	b.logEvent("OK", "BIOS reset to defaults requested; applies at next reset")
	return &reply{status: http.StatusNoContent}, nil
}

func successBody(id, message string) map[string]any {
	return map[string]any{"@Message.ExtendedInfo": []any{map[string]any{
		"MessageId": "Base.1.8." + id, "Message": message, "Severity": "OK", "MessageArgs": []any{}, "Resolution": "None"}}}
}
