// Package stepapi is what every metalflow workflow shares with its callers:
// step statuses, the attention a step parks in and the staff decisions that
// answer it, the error types that need a human, and the rules for the names
// operators give things. Standard library only: the API, the workflows and
// the activities all import it.
package stepapi

import "time"

// StateAttention is the state of a workflow that waits for staff.
const StateAttention = "attention"

// Staff decisions and the status query, the same for every workflow that
// parks a step in attention.
const (
	UpdateRetry = "retry"
	UpdateSkip  = "skip"
	UpdateAbort = "abort"
	QueryStatus = "status"
)

// Step statuses.
const (
	StepPending = "pending"
	StepWaiting = "waiting"
	StepRunning = "running"
	StepDone    = "done"
	StepFailed  = "failed"
	StepSkipped = "skipped"
)

// StepStatus is one step of the lifecycle as the status query reports it.
type StepStatus struct {
	Name       string     `json:"name"`
	Status     string     `json:"status"`
	StartedAt  *time.Time `json:"startedAt,omitempty"`
	FinishedAt *time.Time `json:"finishedAt,omitempty"`
	Error      string     `json:"error,omitempty"`
	// Note says why a step was skipped (e.g. no Ironic configured) or
	// what it left behind.
	Note string `json:"note,omitempty"`
}

// Attention says why a lifecycle waits for a human, and what they may do.
type Attention struct {
	Step      string `json:"step"`
	Error     string `json:"error"`
	Skippable bool   `json:"skippable"`
}

// AbortInput stops the lifecycle and undoes its claims.
type AbortInput struct {
	Reason string `json:"reason"`
	By     string `json:"by,omitempty"`
}

// DecisionResult answers retry, skip and abort.
type DecisionResult struct {
	// Serial is what the workflow is about: a server's serial, or a VIP's
	// name (the field is named as the API first answered it).
	Serial string `json:"serial"`
	Action string `json:"action"`
	Step   string `json:"step"`
}
