package bmcsim

import (
	"crypto/subtle"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// accountSlots is the size of the fixed account table; bmclib (like
// iDRAC) creates users by filling the first free slot after slot 1.
const accountSlots = 16

type account struct {
	id, user, password, role string
	enabled, locked          bool
}

// AccountInfo is one BMC user, without its password.
type AccountInfo struct {
	ID       string `json:"id"`
	UserName string `json:"user_name"`
	RoleID   string `json:"role_id"`
	Enabled  bool   `json:"enabled"`
}

func newAccounts(user, password string) []*account {
	out := make([]*account, accountSlots)
	for i := range out {
		out[i] = &account{id: fmt.Sprint(i + 1), role: "None"}
	}
	// Slot 1 is reserved (iDRAC's anonymous slot); the factory user is 2.
	out[1] = &account{id: "2", user: user, password: password, role: "Administrator", enabled: true}
	return out
}

func (b *BMC) accountByID(id string) *account {
	for _, a := range b.accounts {
		if strings.EqualFold(a.id, id) {
			return a
		}
	}
	return nil
}

func (b *BMC) accountURI(id string) string {
	return strings.TrimRight(b.m.accounts, "/") + "/" + id
}

func (b *BMC) renderAccounts(key string) map[string]any {
	doc := b.baseDoc(key)
	var ids []string
	for _, a := range b.accounts {
		ids = append(ids, b.accountURI(a.id))
	}
	doc["Members"] = linkList(ids)
	doc["Members@odata.count"] = numberValue(len(ids))
	return doc
}

func (b *BMC) accountDoc(id string) map[string]any {
	a := b.accountByID(id)
	if a == nil {
		return nil
	}
	doc := map[string]any{
		"@odata.id": b.accountURI(a.id), "@odata.type": "#ManagerAccount.v1_8_0.ManagerAccount",
		"Id": a.id, "Name": "User Account", "UserName": a.user, "RoleId": a.role,
		"Enabled": a.enabled, "Locked": a.locked, "Password": nil,
		"AccountTypes": anyStrings([]string{"Redfish", "OEM"}),
	}
	role := "/redfish/v1/AccountService/Roles/" + a.role
	if b.m.tree.get(role) != nil {
		doc["Links"] = map[string]any{"Role": link(role)}
	}
	return doc
}

func validRole(r string) bool {
	return slices.Contains([]string{"Administrator", "Operator", "ReadOnly", "None"}, r)
}

// patchAccount edits a slot: bmclib creates, changes and deletes users
// this way, with the whole slot table fixed.
func (b *BMC) patchAccount(id, path string, body []byte) (*reply, *redfishError) {
	a := b.accountByID(id)
	if a == nil {
		return nil, errNotFound(path)
	}
	req, rerr := decodeBody(body)
	if rerr != nil {
		return nil, rerr
	}
	next := *a
	for k, v := range req {
		switch k {
		case "UserName":
			s, ok := v.(string)
			if !ok {
				return nil, errorf(http.StatusBadRequest, "PropertyValueTypeError", "The value for the property UserName is of a different type than the property can accept.", "UserName")
			}
			for _, o := range b.accounts {
				if o != a && s != "" && o.user == s {
					return nil, errorf(http.StatusBadRequest, "ResourceAlreadyExists", "An account with the user name "+s+" already exists.", "UserName")
				}
			}
			next.user = s
		case "Password":
			if v == nil {
				continue
			}
			s, ok := v.(string)
			if !ok || len(s) < 4 || len(s) > 127 {
				return nil, errorf(http.StatusBadRequest, "PropertyValueFormatError", "The password must be 4 to 127 characters.", "Password")
			}
			next.password = s
		case "RoleId":
			s, _ := v.(string)
			if !validRole(s) {
				return nil, errPropertyValue("RoleId", s)
			}
			next.role = s
		case "Enabled", "Locked":
			bv, ok := v.(bool)
			if !ok {
				return nil, errorf(http.StatusBadRequest, "PropertyValueTypeError", "The value for the property "+k+" is of a different type than the property can accept.", k)
			}
			if k == "Enabled" {
				next.enabled = bv
			} else {
				next.locked = bv
			}
		case "AccountTypes", "OEMAccountTypes", "PasswordChangeRequired", "@odata.etag", "@odata.id", "@odata.type":
		default:
			return nil, errorf(http.StatusBadRequest, "PropertyUnknown", "The property "+k+" is not in the list of valid properties for the resource.", k)
		}
	}
	if next.enabled && (next.user == "" || next.password == "") {
		return nil, errorf(http.StatusBadRequest, "PropertyMissing", "An enabled account needs a UserName and a Password.", "UserName")
	}
	if next.user == "" {
		next.password = ""
	}
	*a = next
	b.logEvent("OK", "Account "+a.id+" changed")
	return b.docReply(b.accountDoc(a.id)), nil
}

// authenticates checks user and password against every enabled account.
func (b *BMC) authenticates(user, pass string) bool {
	ok := 0
	for _, a := range b.accounts {
		if !a.enabled || a.locked || a.password == "" {
			continue
		}
		u := subtle.ConstantTimeCompare([]byte(user), []byte(a.user))
		p := subtle.ConstantTimeCompare([]byte(pass), []byte(a.password))
		ok |= u & p
	}
	return ok == 1
}

// Authenticates reports whether the BMC would accept these credentials
// now, for tests of credential rotation.
func (b *BMC) Authenticates(user, pass string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.authenticates(user, pass)
}
