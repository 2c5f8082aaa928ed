package testimage

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"time"
)

// PhoneHome is one cloud-init phone_home call.
type PhoneHome struct {
	Path       string
	InstanceID string
	Hostname   string
	At         time.Time
}

// PhoneHomeServer is an HTTP server on 127.0.0.1 that records phone_home
// POSTs. A guest on qemu's user network reaches it at GuestURL.
type PhoneHomeServer struct {
	srv   *httptest.Server
	calls chan PhoneHome
}

// StartPhoneHomeServer starts the server; Close it when done.
func StartPhoneHomeServer() *PhoneHomeServer {
	p := &PhoneHomeServer{calls: make(chan PhoneHome, 16)}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST only", http.StatusMethodNotAllowed)
			return
		}
		if err := r.ParseForm(); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		call := PhoneHome{Path: r.URL.Path, InstanceID: r.PostForm.Get("instance_id"), Hostname: r.PostForm.Get("hostname"), At: time.Now()}
		select {
		case p.calls <- call:
		default: // nobody is reading; drop rather than block the guest
		}
		w.WriteHeader(http.StatusOK)
	}))
	return p
}

// GuestURL is the server's URL as the guest sees it, with path appended
// (cloud-init replaces $INSTANCE_ID in it).
func (p *PhoneHomeServer) GuestURL(path string) string {
	port := p.srv.URL[strings.LastIndex(p.srv.URL, ":")+1:]
	if _, err := strconv.Atoi(port); err != nil {
		panic("testimage: unexpected test server URL " + p.srv.URL)
	}
	return "http://" + GuestHostAddr + ":" + port + path
}

// Calls delivers phone_home calls as they arrive.
func (p *PhoneHomeServer) Calls() <-chan PhoneHome { return p.calls }

// Close stops the server.
func (p *PhoneHomeServer) Close() { p.srv.Close() }
