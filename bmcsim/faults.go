package bmcsim

import (
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"time"
)

// SetFaults replaces the BMC's faults; they take effect on the next request.
func (b *BMC) SetFaults(f Faults) {
	b.mu.Lock()
	defer b.mu.Unlock()
	f.Tree = slices.Clone(f.Tree) // the caller's slice stays the caller's
	b.faults = f
}

// Faults returns the faults in force.
func (b *BMC) Faults() Faults {
	b.mu.Lock()
	defer b.mu.Unlock()
	f := b.faults
	f.Tree = slices.Clone(f.Tree)
	return f
}

// DropSessions loses every session, so clients holding a token get 401.
func (b *BMC) DropSessions() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dropSessions()
	b.logEvent("Warning", "All sessions were lost")
}

// Reboot takes the BMC off the network for RebootDuration (scaled), as a
// firmware restart does: connections are cut, the port refuses, sessions
// are gone afterwards. The host keeps its power state.
func (b *BMC) Reboot() {
	b.netMu.Lock()
	if b.closed || b.rebooting {
		b.netMu.Unlock()
		return
	}
	b.rebooting = true
	srv := b.server
	b.wg.Add(1)
	b.netMu.Unlock()
	_ = srv.Close()

	b.mu.Lock()
	b.dropSessions()
	b.counters.BMCReboots++
	b.logEvent("Warning", "The BMC is restarting")
	down := b.cfg.scaled(b.cfg.RebootDuration)
	b.mu.Unlock()

	go func() {
		defer b.wg.Done()
		t := time.NewTimer(down)
		defer t.Stop()
		select {
		case <-t.C:
		case <-b.closing:
			return
		}
		for attempt := 0; ; attempt++ {
			b.netMu.Lock()
			if b.closed {
				b.netMu.Unlock()
				return
			}
			ln, err := net.Listen("tcp", b.address)
			if err == nil {
				b.serve(ln)
				b.rebooting = false
				b.netMu.Unlock()
				b.mu.Lock()
				b.logEvent("OK", "The BMC is back online")
				b.mu.Unlock()
				return
			}
			b.netMu.Unlock()
			select {
			case <-b.closing:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
}

// Rebooting tells whether the BMC is off the network.
func (b *BMC) Rebooting() bool {
	b.netMu.Lock()
	defer b.netMu.Unlock()
	return b.rebooting
}

// faultsJSON is the admin endpoint's spelling: durations as "250ms".
type faultsJSON struct {
	Latency         string   `json:"latency,omitempty"`
	LatencyJitter   string   `json:"latency_jitter,omitempty"`
	ErrorRate       float64  `json:"error_rate,omitempty"`
	ErrorStatus     int      `json:"error_status,omitempty"`
	RetryAfter      int      `json:"retry_after,omitempty"`
	RetryAfterDate  bool     `json:"retry_after_date,omitempty"`
	Hang            bool     `json:"hang,omitempty"`
	HangRate        float64  `json:"hang_rate,omitempty"`
	SessionDropRate float64  `json:"session_drop_rate,omitempty"`
	TaskException   bool     `json:"task_exception,omitempty"`
	Tree            []string `json:"tree,omitempty"`
}

// MarshalJSON writes durations the way operators type them.
func (f Faults) MarshalJSON() ([]byte, error) {
	j := faultsJSON{ErrorRate: f.ErrorRate, ErrorStatus: f.ErrorStatus, RetryAfter: f.RetryAfter,
		RetryAfterDate: f.RetryAfterDate, Hang: f.Hang, HangRate: f.HangRate,
		SessionDropRate: f.SessionDropRate, TaskException: f.TaskException, Tree: f.Tree}
	if f.Latency > 0 {
		j.Latency = f.Latency.String()
	}
	if f.LatencyJitter > 0 {
		j.LatencyJitter = f.LatencyJitter.String()
	}
	return json.Marshal(j)
}

// UnmarshalJSON reads durations as "250ms" and validates the rest.
func (f *Faults) UnmarshalJSON(data []byte) error {
	var j faultsJSON
	if err := json.Unmarshal(data, &j); err != nil {
		return err
	}
	out := Faults{ErrorRate: j.ErrorRate, ErrorStatus: j.ErrorStatus, RetryAfter: j.RetryAfter,
		RetryAfterDate: j.RetryAfterDate, Hang: j.Hang, HangRate: j.HangRate,
		SessionDropRate: j.SessionDropRate, TaskException: j.TaskException, Tree: j.Tree}
	var err error
	if j.Latency != "" {
		if out.Latency, err = time.ParseDuration(j.Latency); err != nil {
			return fmt.Errorf("latency: %w", err)
		}
	}
	if j.LatencyJitter != "" {
		if out.LatencyJitter, err = time.ParseDuration(j.LatencyJitter); err != nil {
			return fmt.Errorf("latency_jitter: %w", err)
		}
	}
	if err := out.validate(); err != nil {
		return err
	}
	*f = out
	return nil
}

func (f Faults) validate() error {
	for _, r := range []struct {
		name string
		rate float64
	}{{"error_rate", f.ErrorRate}, {"hang_rate", f.HangRate}, {"session_drop_rate", f.SessionDropRate}} {
		if !(r.rate >= 0 && r.rate <= 1) {
			return fmt.Errorf("%s %v is not between 0 and 1", r.name, r.rate)
		}
	}
	if f.ErrorStatus != 0 && f.ErrorStatus != 500 && f.ErrorStatus != 503 && f.ErrorStatus != 429 {
		return fmt.Errorf("error_status %d: want 500, 503 or 429", f.ErrorStatus)
	}
	if f.RetryAfter < 0 {
		return fmt.Errorf("retry_after must not be negative")
	}
	if f.Latency < 0 || f.LatencyJitter < 0 {
		return fmt.Errorf("latency must not be negative")
	}
	return validateTreeFaults(f.Tree)
}
