package batchapi

import (
	"errors"
	"fmt"
	"time"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// Power in-rush: a rack's PDUs and breakers are sized for servers running,
// not for a dozen of them powering on at the same instant. A RackBatch keeps
// the rack's power slots; a lifecycle it started asks for a slot before a
// power-changing step (the BIOS reset, the netboot power cycle) and gives it
// back afterwards. The conversation is three signals, because a workflow
// cannot send another workflow an update:
//
//	child  → batch  power-acquire {serial, workflowId, token}
//	batch  → child  power-granted {token}        (when fewer than K are held)
//	child  → batch  power-release {serial, token}
//
// Names are part of recorded histories: never rename them.
const (
	SignalPowerAcquire = "power-acquire"
	SignalPowerGranted = "power-granted"
	SignalPowerRelease = "power-release"
)

// DefaultPowerConcurrency is how many servers of one rack may change power
// at once when the batch does not say.
const DefaultPowerConcurrency = 4

// PowerSlotRequest is the power-acquire signal.
type PowerSlotRequest struct {
	Serial string `json:"serial"`
	// WorkflowID is where the grant goes.
	WorkflowID string `json:"workflowId"`
	// Token names this one acquisition, so a late grant for an earlier
	// one is not mistaken for the current one, and a repeated request is
	// recognised.
	Token string `json:"token"`
}

// PowerSlotGrant is the power-granted signal.
type PowerSlotGrant struct {
	Token string `json:"token"`
}

// PowerSlotRelease is the power-release signal.
type PowerSlotRelease struct {
	Serial string `json:"serial"`
	Token  string `json:"token"`
}

// PowerSlotsStatus is the keeper's state as the batch's status shows it.
type PowerSlotsStatus struct {
	Limit int `json:"limit"`
	// Holding and Waiting list serials, in the order they asked.
	Holding []string `json:"holding"`
	Waiting []string `json:"waiting"`
	// Granted counts every grant so far; MaxHeld is the most held at once.
	Granted int `json:"granted"`
	MaxHeld int `json:"maxHeld"`
}

// Names of the batch workflow and its poll activity; part of recorded
// histories, never rename them.
const (
	RackBatchName = "RackBatch"
	// SignalServerState is how a batch's lifecycles tell it where they
	// are (ServerStateReport): which wait for a human, which work again.
	SignalServerState = "server-state"
	// ServerStatesName reads the status of lifecycles by serial; batches
	// started before lifecycles reported their state poll it.
	ServerStatesName = "ServerStates"
)

// Batch states.
const (
	BatchRunning  = "running"
	BatchFinished = "finished"
)

// Per-server states the batch adds to the lifecycle's own.
const (
	// BatchServerPending: not started yet, waiting for a concurrency slot.
	BatchServerPending = "pending"
	// BatchServerAlreadyExisting: the serial had a lifecycle before the
	// batch; the batch did not start, and does not retry, it.
	BatchServerAlreadyExisting = "already-existing"
)

// Defaults for a batch that does not say.
const (
	DefaultBatchConcurrency  = 10
	DefaultAttentionGrace    = time.Hour
	DefaultBatchPollInterval = 30 * time.Second
	MaxBatchServers          = 200
	rackBatchIDPrefix        = "rack/"
)

// RackBatchWorkflowID is the batch's workflow ID.
func RackBatchWorkflowID(site, rack, batchID string) string {
	return rackBatchIDPrefix + site + "/" + rack + "/" + batchID
}

// RackBatchInput starts a batch. Credentials travel as references.
type RackBatchInput struct {
	BatchID string            `json:"batchId"`
	Site    string            `json:"site"`
	Rack    string            `json:"rack"`
	Servers []RackBatchServer `json:"servers"`
	// Concurrency caps lifecycles busy at once (default 10).
	Concurrency int `json:"concurrency,omitempty"`
	// PowerConcurrency caps power operations at once in the rack (default 4).
	PowerConcurrency int `json:"powerConcurrency,omitempty"`
	// AttentionGrace is how long a server may wait in attention before the
	// batch reports it and stops waiting for it (default 1 h).
	AttentionGrace time.Duration `json:"attentionGrace,omitempty"`
	// PollInterval is how often the batch reads its servers' states
	// (default 30 s, or a quarter of a shorter grace).
	PollInterval time.Duration `json:"pollInterval,omitempty"`
	// Actor is who posted the batch, for the asset history.
	Actor string `json:"actor,omitempty"`
}

// RackBatchServer is one server of a batch, already racked at Location.
type RackBatchServer struct {
	Serial   string             `json:"serial"`
	BMC      *serverapi.BMCRef  `json:"bmc,omitempty"`
	Profile  string             `json:"profile,omitempty"`
	Location serverapi.Location `json:"location"`
}

// RackBatchStatus answers the batch's status query and is its result.
type RackBatchStatus struct {
	BatchID         string             `json:"batchId"`
	Site            string             `json:"site"`
	Rack            string             `json:"rack"`
	State           string             `json:"state"`
	Total           int                `json:"total"`
	Installed       int                `json:"installed"`
	Failed          int                `json:"failed"`
	Aborted         int                `json:"aborted"`
	AlreadyExisting int                `json:"alreadyExisting"`
	Attention       int                `json:"attention"`
	Running         int                `json:"running"`
	Pending         int                `json:"pending"`
	PerServer       []BatchServerState `json:"perServer"`
	PowerSlots      PowerSlotsStatus   `json:"powerSlots"`
}

// BatchServerState is one server as the batch sees it.
type BatchServerState struct {
	Serial string `json:"serial"`
	State  string `json:"state"`
	Step   string `json:"step,omitempty"`
	Error  string `json:"error,omitempty"`
	// Settled: the batch no longer waits for this server.
	Settled bool `json:"settled"`
}

// ServerStatesInput asks for the status of lifecycles by serial.
type ServerStatesInput struct {
	Serials []string `json:"serials"`
}

// ServerStatesResult answers ServerStates; a serial without a running
// lifecycle, or whose status could not be read, is left out.
type ServerStatesResult struct {
	Servers []ServerStateReport `json:"servers"`
}

// ServerStateReport is the part of a lifecycle's status the batch uses:
// what a lifecycle signals its batch at each change of state or step.
type ServerStateReport struct {
	Serial string `json:"serial"`
	State  string `json:"state"`
	Step   string `json:"step,omitempty"`
	Error  string `json:"error,omitempty"`
}

// ValidateRackBatch says what is wrong with a batch, or nil. The API runs
// the same checks (and the inventory's) before it starts one.
func ValidateRackBatch(in RackBatchInput) error {
	if in.BatchID == "" || !stepapi.IsName(in.BatchID, stepapi.MaxNameLength) {
		return fmt.Errorf("batch id is required (letters, digits, '.', '_', '-'; at most %d)", stepapi.MaxNameLength)
	}
	if len(in.Servers) == 0 {
		return errors.New("a batch needs at least one server")
	}
	if len(in.Servers) > MaxBatchServers {
		return fmt.Errorf("a batch has at most %d servers, got %d", MaxBatchServers, len(in.Servers))
	}
	if in.Concurrency < 0 || in.PowerConcurrency < 0 || in.AttentionGrace < 0 || in.PollInterval < 0 {
		return errors.New("concurrency, powerConcurrency, attentionGrace and pollInterval must not be negative")
	}
	serials := map[string]int{}
	units := map[int]string{}
	for i, s := range in.Servers {
		if err := stepapi.ValidateSerial(s.Serial); err != nil {
			return fmt.Errorf("servers[%d]: %w", i, err)
		}
		if j, dup := serials[s.Serial]; dup {
			return fmt.Errorf("servers[%d]: serial %s is also servers[%d]", i, s.Serial, j)
		}
		serials[s.Serial] = i
		if err := serverapi.ValidateLocation(s.Location); err != nil {
			return fmt.Errorf("servers[%d] (%s): %w", i, s.Serial, err)
		}
		if s.Location.Site != in.Site || s.Location.Rack != in.Rack {
			return fmt.Errorf("servers[%d] (%s): location %s/%s is not the batch's rack %s/%s", i, s.Serial, s.Location.Site, s.Location.Rack, in.Site, in.Rack)
		}
		if other, dup := units[s.Location.Unit]; dup {
			return fmt.Errorf("servers[%d] (%s): unit %d is also given to %s", i, s.Serial, s.Location.Unit, other)
		}
		units[s.Location.Unit] = s.Serial
	}
	return nil
}
