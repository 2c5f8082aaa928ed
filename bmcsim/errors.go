package bmcsim

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// redfishError is what a handler returns instead of writing a response, so
// that every refusal leaves the BMC in the same Redfish error shape.
type redfishError struct {
	status    int
	messageID string // Base registry id without the version prefix, or a vendor id
	message   string
	args      []string
}

func (e *redfishError) Error() string {
	return strconv.Itoa(e.status) + " " + e.messageID + ": " + e.message
}

func errorf(status int, messageID, message string, args ...string) *redfishError {
	return &redfishError{status: status, messageID: messageID, message: message, args: args}
}

func errBadJSON(detail string) *redfishError {
	return errorf(http.StatusBadRequest, "MalformedJSON", "The request body submitted was malformed JSON and could not be parsed by the receiving service: "+detail)
}

func errNotFound(path string) *redfishError {
	return errorf(http.StatusNotFound, "ResourceMissingAtURI", "The resource at the URI "+path+" was not found.", path)
}

func errMethod(method, path string) *redfishError {
	return errorf(http.StatusMethodNotAllowed, "OperationNotAllowed", "The "+method+" operation is not allowed on "+path+".", path)
}

func errPropertyMissing(name string) *redfishError {
	return errorf(http.StatusBadRequest, "PropertyMissing", "The property "+name+" is a required property and must be included in the request.", name)
}

func errPropertyValue(name, value string) *redfishError {
	return errorf(http.StatusBadRequest, "PropertyValueNotInList", "The value "+value+" for the property "+name+" is not in the list of acceptable values.", value, name)
}

func errActionParameterMissing(action, param string) *redfishError {
	return errorf(http.StatusBadRequest, "ActionParameterMissing", "The action "+action+" requires the parameter "+param+" to be present in the request body.", action, param)
}

func errActionValue(action, param, value string) *redfishError {
	return errorf(http.StatusBadRequest, "ActionParameterValueNotInList", "The value "+value+" for the parameter "+param+" in the action "+action+" is not in the list of acceptable values.", value, param, action)
}

func errConflict(message string) *redfishError {
	return errorf(http.StatusConflict, "ResourceInUse", message)
}

// writeError renders the error body of the Redfish specification; the
// vendor prefix differs per BMC but the structure is what clients parse.
func writeError(w http.ResponseWriter, e *redfishError) {
	id := e.messageID
	if !containsDot(id) {
		id = "Base.1.8." + id
	}
	args := e.args
	if args == nil {
		args = []string{}
	}
	body := map[string]any{
		"error": map[string]any{
			"code":    id,
			"message": e.message,
			"@Message.ExtendedInfo": []any{map[string]any{
				"@odata.type": "#Message.v1_1_1.Message",
				"MessageId":   id,
				"Message":     e.message,
				"MessageArgs": args,
				"Severity":    "Critical",
				"Resolution":  "Correct the request and resubmit it.",
			}},
		},
	}
	raw, _ := json.Marshal(body)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(e.status)
	_, _ = w.Write(raw)
}

func containsDot(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '.' {
			return true
		}
	}
	return false
}
