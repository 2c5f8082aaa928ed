package bmcsim

import (
	"encoding/json"
	"io"
	"net/http"
)

// AdminHandler serves the fleet's control endpoint, for operators and
// tests to change faults while clients are running:
//
//	GET    /bmcs                       manifest entries
//	GET    /bmcs/{id}                  State of one BMC
//	GET    /counters                   every BMC's Counters and their sum
//	PUT    /faults                     faults on every BMC (JSON Faults)
//	PUT    /bmcs/{id}/faults           faults on one BMC
//	DELETE /faults                     clear faults everywhere
//	POST   /bmcs/{id}/reboot           take the BMC off the network for a while
//	POST   /bmcs/{id}/drop-sessions    lose its sessions
//	POST   /drop-sessions              lose every BMC's sessions
//
// Faults JSON: {"latency":"200ms","latency_jitter":"50ms","error_rate":0.1,
// "error_status":503,"retry_after":5,"retry_after_date":false,"hang":false,
// "hang_rate":0.05,"session_drop_rate":0.02,"task_exception":true,
// "tree":["dangling-drive","no-serial"]} (tree faults: see TreeFaultNames).
func (f *Fleet) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	writeJSON := func(w http.ResponseWriter, status int, v any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(v)
	}
	fail := func(w http.ResponseWriter, status int, msg string) {
		writeJSON(w, status, map[string]string{"error": msg})
	}
	bmcOf := func(w http.ResponseWriter, r *http.Request) *BMC {
		b := f.BMC(r.PathValue("id"))
		if b == nil {
			fail(w, http.StatusNotFound, "no BMC "+r.PathValue("id"))
		}
		return b
	}
	readFaults := func(w http.ResponseWriter, r *http.Request) (Faults, bool) {
		var faults Faults
		data, err := io.ReadAll(io.LimitReader(r.Body, 1<<16))
		if err == nil {
			err = json.Unmarshal(data, &faults)
		}
		if err != nil {
			fail(w, http.StatusBadRequest, err.Error())
			return faults, false
		}
		return faults, true
	}
	mux.HandleFunc("GET /bmcs", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, f.Manifest())
	})
	mux.HandleFunc("GET /bmcs/{id}", func(w http.ResponseWriter, r *http.Request) {
		if b := bmcOf(w, r); b != nil {
			writeJSON(w, http.StatusOK, b.State())
		}
	})
	mux.HandleFunc("GET /counters", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, f.Counters())
	})
	mux.HandleFunc("PUT /faults", func(w http.ResponseWriter, r *http.Request) {
		if faults, ok := readFaults(w, r); ok {
			f.SetFaults(faults)
			writeJSON(w, http.StatusOK, faults)
		}
	})
	mux.HandleFunc("DELETE /faults", func(w http.ResponseWriter, r *http.Request) {
		f.SetFaults(Faults{})
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("PUT /bmcs/{id}/faults", func(w http.ResponseWriter, r *http.Request) {
		b := bmcOf(w, r)
		if b == nil {
			return
		}
		if faults, ok := readFaults(w, r); ok {
			b.SetFaults(faults)
			writeJSON(w, http.StatusOK, faults)
		}
	})
	mux.HandleFunc("POST /bmcs/{id}/reboot", func(w http.ResponseWriter, r *http.Request) {
		if b := bmcOf(w, r); b != nil {
			b.Reboot()
			w.WriteHeader(http.StatusAccepted)
		}
	})
	mux.HandleFunc("POST /bmcs/{id}/drop-sessions", func(w http.ResponseWriter, r *http.Request) {
		if b := bmcOf(w, r); b != nil {
			b.DropSessions()
			w.WriteHeader(http.StatusNoContent)
		}
	})
	mux.HandleFunc("POST /drop-sessions", func(w http.ResponseWriter, r *http.Request) {
		f.DropSessions()
		w.WriteHeader(http.StatusNoContent)
	})
	return mux
}
