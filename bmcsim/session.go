package bmcsim

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"
	"time"
)

// maxSessions is Lenovo XCC's session cap, applied to every flavour so
// that clients leaking sessions fail here before they fail in a rack.
const maxSessions = 16

type session struct {
	id, token, user string
	created, used   time.Time
}

func randomHex(n int) string {
	buf := make([]byte, n)
	_, _ = rand.Read(buf)
	return hex.EncodeToString(buf)
}

func (b *BMC) pruneSessions(now time.Time) {
	for tok, s := range b.sessions {
		if now.Sub(s.used) > b.cfg.SessionTimeout {
			delete(b.sessions, tok)
		}
	}
}

func (b *BMC) credentialsMatch(user, pass string) bool { return b.authenticates(user, pass) }

// authenticate accepts a live session token or Basic credentials.
func (b *BMC) authenticate(r *http.Request, now time.Time) *redfishError {
	if tok := r.Header.Get("X-Auth-Token"); tok != "" {
		b.pruneSessions(now)
		if s, ok := b.sessions[tok]; ok {
			s.used = now
			return nil
		}
		b.counters.AuthFailures++
		return errorf(http.StatusUnauthorized, "NoValidSession", "There is no valid session established with the implementation.")
	}
	if user, pass, ok := r.BasicAuth(); ok {
		if b.credentialsMatch(user, pass) {
			return nil
		}
		b.counters.AuthFailures++
		return errorf(http.StatusUnauthorized, "InsufficientPrivilege", "The user name or password is not correct.")
	}
	b.counters.AuthFailures++
	return errorf(http.StatusUnauthorized, "NoValidSession", "There is no valid session established with the implementation.")
}

func (b *BMC) createSession(body []byte, r *http.Request) (*reply, *redfishError) {
	req, rerr := decodeBody(body)
	if rerr != nil {
		return nil, rerr
	}
	user, ok := req["UserName"].(string)
	if !ok {
		return nil, errPropertyMissing("UserName")
	}
	pass, ok := req["Password"].(string)
	if !ok {
		return nil, errPropertyMissing("Password")
	}
	if !b.credentialsMatch(user, pass) {
		b.counters.AuthFailures++
		b.logEvent("Warning", "Login failed for user "+user+" from "+r.RemoteAddr)
		return nil, errorf(http.StatusUnauthorized, "InsufficientPrivilege", "The user name or password is not correct.")
	}
	now := time.Now()
	b.pruneSessions(now)
	if len(b.sessions) >= maxSessions {
		return nil, errorf(http.StatusServiceUnavailable, "SessionLimitExceeded",
			"The session establishment failed due to the number of simultaneous sessions exceeding the limit of the implementation.")
	}
	s := &session{id: randomHex(8), token: randomHex(16), user: user, created: now, used: now}
	b.sessions[s.token] = s
	b.counters.SessionsCreated++
	doc := b.sessionDoc(strings.ToLower(s.id))
	rep := b.docReply(doc)
	rep.status = http.StatusCreated
	rep.location = doc["@odata.id"].(string)
	rep.header = map[string]string{"X-Auth-Token": s.token}
	return rep, nil
}

func (b *BMC) sessionByID(id string) *session {
	for _, s := range b.sessions {
		if strings.EqualFold(s.id, id) {
			return s
		}
	}
	return nil
}

func (b *BMC) sessionDoc(id string) map[string]any {
	b.pruneSessions(time.Now())
	s := b.sessionByID(id)
	if s == nil {
		return nil
	}
	return map[string]any{
		"@odata.id": strings.TrimRight(b.m.sessions, "/") + "/" + s.id, "@odata.type": "#Session.v1_3_0.Session",
		"Id": s.id, "Name": "User Session", "UserName": s.user, "CreatedTime": s.created.UTC().Format(time.RFC3339),
	}
}

func (b *BMC) renderSessions(key string) map[string]any {
	b.pruneSessions(time.Now())
	doc := b.baseDoc(key)
	var ids []string
	for _, s := range b.sessions {
		ids = append(ids, strings.TrimRight(b.m.sessions, "/")+"/"+s.id)
	}
	sortStrings(ids)
	doc["Members"] = linkList(ids)
	doc["Members@odata.count"] = numberValue(len(ids))
	return doc
}

func (b *BMC) renderSessionService(key string) map[string]any {
	doc := b.baseDoc(key)
	doc["SessionTimeout"] = numberValue(int(b.cfg.SessionTimeout / time.Second))
	return doc
}

func (b *BMC) deleteSession(id, path string) (*reply, *redfishError) {
	s := b.sessionByID(id)
	if s == nil {
		return nil, errNotFound(path)
	}
	delete(b.sessions, s.token)
	return &reply{status: http.StatusNoContent}, nil
}

// dropSessions forgets every session, as a BMC does when its session
// store is lost (firmware crash, reboot).
func (b *BMC) dropSessions() {
	b.sessions = map[string]*session{}
}
