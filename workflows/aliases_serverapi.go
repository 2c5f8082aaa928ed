package workflows

// Transitional: the names below moved to a contract package; these
// aliases keep importers compiling until each is switched over.

import (
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

var States = serverapi.States

const TaskQueue = serverapi.TaskQueue
const ServerLifecycleName = serverapi.ServerLifecycleName
const UpdateRacked = serverapi.UpdateRacked
const SignalPhoneHome = serverapi.SignalPhoneHome
const StateWaitingRack = serverapi.StateWaitingRack
const StateProvisioning = serverapi.StateProvisioning
const StateAttention = serverapi.StateAttention
const StateInstalled = serverapi.StateInstalled
const StateReady = serverapi.StateReady
const StateAborted = serverapi.StateAborted
const StateFailed = serverapi.StateFailed
const StateCancelled = serverapi.StateCancelled
const StepRack = serverapi.StepRack
const StepRegisterAsset = serverapi.StepRegisterAsset
const StepInspect = serverapi.StepInspect
const StepRegisterMonitoring = serverapi.StepRegisterMonitoring
const StepConfigureBIOS = serverapi.StepConfigureBIOS
const StepConfigureRAID = serverapi.StepConfigureRAID
const StepInstallOS = serverapi.StepInstallOS
const StepRegisterCloud = serverapi.StepRegisterCloud
const StepJoinAggregate = serverapi.StepJoinAggregate
const StepAssignTenant = serverapi.StepAssignTenant
const StepJoinLoadBalancer = serverapi.StepJoinLoadBalancer

type ServerLifecycleInput = serverapi.ServerLifecycleInput
type Location = serverapi.Location
type RackedInput = serverapi.RackedInput
type RackedResult = serverapi.RackedResult
type ServerStatus = serverapi.ServerStatus
type CloudNode = serverapi.CloudNode
type Hardware = serverapi.Hardware
type RetryInput = serverapi.RetryInput
type SkipInput = serverapi.SkipInput
type DecisionResult = stepapi.DecisionResult
type PhoneHome = serverapi.PhoneHome

const DecommissionName = serverapi.DecommissionName
const UpdateUnracked = serverapi.UpdateUnracked
const QueryMachine = serverapi.QueryMachine
const StateDecommissioning = serverapi.StateDecommissioning
const StateWaitingUnrack = serverapi.StateWaitingUnrack
const StateDecommissioned = serverapi.StateDecommissioned
const StepCancelProvisioning = serverapi.StepCancelProvisioning
const StepLeaveLoadBalancer = serverapi.StepLeaveLoadBalancer
const StepLeaveAggregate = serverapi.StepLeaveAggregate
const StepDeleteCloudNode = serverapi.StepDeleteCloudNode
const StepSecureWipe = serverapi.StepSecureWipe
const StepResetBIOS = serverapi.StepResetBIOS
const StepPowerOff = serverapi.StepPowerOff
const StepRetireAsset = serverapi.StepRetireAsset
const StepUnrack = serverapi.StepUnrack

var DecommissionWorkflowID = serverapi.DecommissionWorkflowID

type MachineFacts = serverapi.MachineFacts
type DecommissionInput = serverapi.DecommissionInput

const AwaitLifecycleEndName = serverapi.AwaitLifecycleEndName

type AwaitLifecycleEndInput = serverapi.AwaitLifecycleEndInput
type LifecycleEnd = serverapi.LifecycleEnd

var LifecycleEndOf = serverapi.LifecycleEndOf

type UnrackedInput = serverapi.UnrackedInput
type UnrackedResult = serverapi.UnrackedResult
type DecommissionStatus = serverapi.DecommissionStatus

const MaxSerialLength = stepapi.MaxSerialLength
const FaceFront = serverapi.FaceFront
const FaceRear = serverapi.FaceRear

var ValidateSerial = stepapi.ValidateSerial
var LifecycleWorkflowID = serverapi.LifecycleWorkflowID
var ValidateLocation = serverapi.ValidateLocation
var ValidateTenant = serverapi.ValidateTenant
var ValidatePools = serverapi.ValidatePools

const SearchAttrServerSerial = serverapi.SearchAttrServerSerial
const SearchAttrRack = serverapi.SearchAttrRack
const SearchAttrLifecycleStep = serverapi.SearchAttrLifecycleStep
const SearchAttrLifecycleState = serverapi.SearchAttrLifecycleState
const SearchAttrLifecycleStepStartedAt = serverapi.SearchAttrLifecycleStepStartedAt
