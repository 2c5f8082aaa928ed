package workflows

// Transitional: the names below moved to a contract package; these
// aliases keep importers compiling until each is switched over.

import "github.com/metalflow/metalflow/workflows/rackbatch/batchapi"

const SignalPowerAcquire = batchapi.SignalPowerAcquire
const SignalPowerGranted = batchapi.SignalPowerGranted
const SignalPowerRelease = batchapi.SignalPowerRelease
const DefaultPowerConcurrency = batchapi.DefaultPowerConcurrency

type PowerSlotRequest = batchapi.PowerSlotRequest
type PowerSlotGrant = batchapi.PowerSlotGrant
type PowerSlotRelease = batchapi.PowerSlotRelease
type PowerSlotsStatus = batchapi.PowerSlotsStatus

const RackBatchName = batchapi.RackBatchName
const ServerStatesName = batchapi.ServerStatesName
const BatchRunning = batchapi.BatchRunning
const BatchFinished = batchapi.BatchFinished
const BatchServerPending = batchapi.BatchServerPending
const BatchServerAlreadyExisting = batchapi.BatchServerAlreadyExisting
const DefaultBatchConcurrency = batchapi.DefaultBatchConcurrency
const DefaultAttentionGrace = batchapi.DefaultAttentionGrace
const DefaultBatchPollInterval = batchapi.DefaultBatchPollInterval
const MaxBatchServers = batchapi.MaxBatchServers

var RackBatchWorkflowID = batchapi.RackBatchWorkflowID

type RackBatchInput = batchapi.RackBatchInput
type RackBatchServer = batchapi.RackBatchServer
type RackBatchStatus = batchapi.RackBatchStatus
type BatchServerState = batchapi.BatchServerState
type ServerStatesInput = batchapi.ServerStatesInput
type ServerStatesResult = batchapi.ServerStatesResult
type ServerStateReport = batchapi.ServerStateReport

var ValidateRackBatch = batchapi.ValidateRackBatch
