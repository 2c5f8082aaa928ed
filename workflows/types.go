// Package workflows holds metalflow's Temporal workflows. Everything here is
// deterministic: no I/O, no clocks, no randomness outside the workflow API.
// I/O lives in package activities.
package workflows

import "time"

// TaskQueue is where the lifecycle workflows and their activities run.
const TaskQueue = "metalflow-lifecycle"

// Names that clients use to reach a running lifecycle. They are part of the
// API contract and of recorded histories: never rename them.
const (
	ServerLifecycleName = "ServerLifecycle"
	UpdateRacked        = "racked"
	SignalPhoneHome     = "phone-home"
	QueryStatus         = "status"
)

// Server states as the API and the operator UI show them.
const (
	StateWaitingRack = "waiting-rack"
	// StateRacked is where the lifecycle ends until the provisioning steps
	// (asset, inspection, BIOS, RAID, install) are chained after Rack.
	StateRacked = "racked"
)

// Step statuses.
const (
	StepPending = "pending"
	StepWaiting = "waiting"
	StepRunning = "running"
	StepDone    = "done"
	StepFailed  = "failed"
)

// Step names, in the operator's words.
const (
	StepRack = "Rack"
)

// ServerLifecycleInput starts the lifecycle of one server.
type ServerLifecycleInput struct {
	Serial string `json:"serial"`
	// Location is set when the server is registered already racked; the
	// lifecycle then does not wait for the technician.
	Location *Location `json:"location,omitempty"`
}

// Location is where a technician put the server.
type Location struct {
	Site string `json:"site"`
	Room string `json:"room,omitempty"`
	Rack string `json:"rack"`
	Unit int    `json:"unit"`
	Face string `json:"face"`
}

// RackedInput is the racked update: the location, and who reports it.
type RackedInput struct {
	Location
	By string `json:"by,omitempty"`
}

// RackedResult answers the racked update.
type RackedResult struct {
	Serial   string   `json:"serial"`
	Location Location `json:"location"`
}

// ServerStatus answers the status query.
type ServerStatus struct {
	Serial string `json:"serial"`
	// RunID lets the API link the exact run in the Temporal Web UI.
	RunID     string       `json:"runId"`
	State     string       `json:"state"`
	Step      string       `json:"step"`
	Steps     []StepStatus `json:"steps"`
	Location  *Location    `json:"location,omitempty"`
	Attention *Attention   `json:"attention,omitempty"`
	// RackReminders counts the daily nudges sent while nobody racked it.
	RackReminders int `json:"rackReminders,omitempty"`
}

// StepStatus is one step of the lifecycle as the status query reports it.
type StepStatus struct {
	Name       string     `json:"name"`
	Status     string     `json:"status"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	Error      string     `json:"error,omitempty"`
}

// Attention says why a lifecycle waits for a human.
type Attention struct {
	Step  string `json:"step"`
	Error string `json:"error"`
}

// PhoneHome is the installer's call back, forwarded by the boot service.
type PhoneHome struct {
	Attempt    int    `json:"attempt"`
	Hostname   string `json:"hostname,omitempty"`
	InstanceID string `json:"instanceId,omitempty"`
}
