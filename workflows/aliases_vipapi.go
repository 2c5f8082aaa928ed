package workflows

// Transitional: the names below moved to a contract package; these
// aliases keep importers compiling until each is switched over.

import "github.com/metalflow/metalflow/workflows/vip/vipapi"

type LBNodeRegistryInput = vipapi.LBNodeRegistryInput
type LBNodeRegistryState = vipapi.LBNodeRegistryState

const VIPRolloutName = vipapi.VIPRolloutName
const UpdateApprove = vipapi.UpdateApprove
const UpdateReject = vipapi.UpdateReject
const UpdateBackends = vipapi.UpdateBackends
const UpdateRetire = vipapi.UpdateRetire
const VIPStatePlacing = vipapi.VIPStatePlacing
const VIPStateRollingOut = vipapi.VIPStateRollingOut
const VIPStateAwaitingApproval = vipapi.VIPStateAwaitingApproval
const VIPStatePublishing = vipapi.VIPStatePublishing
const VIPStateActive = vipapi.VIPStateActive
const VIPStateUpdating = vipapi.VIPStateUpdating
const VIPStateAttention = vipapi.VIPStateAttention
const VIPStateRetiring = vipapi.VIPStateRetiring
const VIPStateRetired = vipapi.VIPStateRetired
const VIPStateRejected = vipapi.VIPStateRejected
const VIPStateAborted = vipapi.VIPStateAborted
const NodePending = vipapi.NodePending
const NodeProgrammed = vipapi.NodeProgrammed
const NodeAnnounced = vipapi.NodeAnnounced
const NodeFailed = vipapi.NodeFailed
const NodeForgotten = vipapi.NodeForgotten
const NodeUnreachable = vipapi.NodeUnreachable
const NodeRolledBack = vipapi.NodeRolledBack
const NodeRemoved = vipapi.NodeRemoved
const BackendUp = vipapi.BackendUp
const BackendDown = vipapi.BackendDown
const RoleApprover = vipapi.RoleApprover
const RoleAdmin = vipapi.RoleAdmin
const VIPStepAllocateAddress = vipapi.VIPStepAllocateAddress
const VIPStepPlace = vipapi.VIPStepPlace
const VIPStepRollOut = vipapi.VIPStepRollOut
const VIPStepPublish = vipapi.VIPStepPublish
const VIPStepBackends = vipapi.VIPStepBackends
const VIPStepBackendHealth = vipapi.VIPStepBackendHealth
const VIPStepRetire = vipapi.VIPStepRetire

var VIPSteps = vipapi.VIPSteps

const SignalNodeUp = vipapi.SignalNodeUp

type NodeUp = vipapi.NodeUp

const VIPStepJoinNodes = vipapi.VIPStepJoinNodes
const UpdateReport = vipapi.UpdateReport

type VIPReport = vipapi.VIPReport
type NodeTraffic = vipapi.NodeTraffic
type VIPRolloutInput = vipapi.VIPRolloutInput
type ApproveInput = vipapi.ApproveInput
type RejectInput = vipapi.RejectInput
type BackendsInput = vipapi.BackendsInput
type RetireInput = vipapi.RetireInput
type VIPStatus = vipapi.VIPStatus
type ClusterPlacement = vipapi.ClusterPlacement
type NodePlacement = vipapi.NodePlacement
type BackendStatus = vipapi.BackendStatus
type VIPState = vipapi.VIPState
type VIPBackend = vipapi.VIPBackend
type VIPNode = vipapi.VIPNode

const DefaultVIPClusters = vipapi.DefaultVIPClusters
const DefaultBackendWeight = vipapi.DefaultBackendWeight

var ValidateVIPName = vipapi.ValidateVIPName
var NormalizeVIPInput = vipapi.NormalizeVIPInput
var NormalizeBackends = vipapi.NormalizeBackends
var ValidateVIPInput = vipapi.ValidateVIPInput
var ValidateBackendsChange = vipapi.ValidateBackendsChange
