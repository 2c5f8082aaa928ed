package activities

// Transitional: the names below moved to a contract package; these
// aliases keep importers compiling until each is switched over.

import "github.com/metalflow/metalflow/workflows/server/serverapi"

const HiddenValue = serverapi.HiddenValue

type BIOSReport = serverapi.BIOSReport
type BIOSAttributeReport = serverapi.BIOSAttributeReport

const RAIDMatch = serverapi.RAIDMatch
const RAIDMissing = serverapi.RAIDMissing
const RAIDUnexpected = serverapi.RAIDUnexpected

type RAIDReport = serverapi.RAIDReport
type RAIDVolumeReport = serverapi.RAIDVolumeReport
type RAIDVolume = serverapi.RAIDVolume
type RegisterAssetInput = serverapi.RegisterAssetInput
type SetAssetStateInput = serverapi.SetAssetStateInput
type RegisterMonitoringInput = serverapi.RegisterMonitoringInput
type CancelServerInput = serverapi.CancelServerInput
type AbortServerInput = serverapi.AbortServerInput
type ConfigureBIOSInput = serverapi.ConfigureBIOSInput
type ConfigureBIOSResult = serverapi.ConfigureBIOSResult

const NoteNoIronic = serverapi.NoteNoIronic
const NoteNoNova = serverapi.NoteNoNova
const NoteNoTenant = serverapi.NoteNoTenant

type CloudStepResult = serverapi.CloudStepResult
type RegisterCloudInput = serverapi.RegisterCloudInput
type JoinAggregateInput = serverapi.JoinAggregateInput
type AssignTenantInput = serverapi.AssignTenantInput

const LeaveAggregateName = serverapi.LeaveAggregateName
const DeleteCloudNodeName = serverapi.DeleteCloudNodeName
const WipeServerName = serverapi.WipeServerName
const ResetBIOSDefaultsName = serverapi.ResetBIOSDefaultsName
const PowerOffServerName = serverapi.PowerOffServerName
const RetireAssetName = serverapi.RetireAssetName

type DecommissionStepInput = serverapi.DecommissionStepInput
type DecommissionStepResult = serverapi.DecommissionStepResult
type InspectServerInput = serverapi.InspectServerInput
type InspectServerResult = serverapi.InspectServerResult
type StartInstallInput = serverapi.StartInstallInput
type FinishInstallInput = serverapi.FinishInstallInput
type RackServerInput = serverapi.RackServerInput
type ReleaseRackUnitInput = serverapi.ReleaseRackUnitInput

const JoinLoadBalancerName = serverapi.JoinLoadBalancerName
const LeaveLoadBalancerName = serverapi.LeaveLoadBalancerName

type LoadBalancerMembershipInput = serverapi.LoadBalancerMembershipInput
type BMCRef = serverapi.BMCRef
type ConfigureRAIDInput = serverapi.ConfigureRAIDInput
type ConfigureRAIDResult = serverapi.ConfigureRAIDResult

const RackServerName = serverapi.RackServerName
const ReleaseRackUnitName = serverapi.ReleaseRackUnitName
const RegisterAssetName = serverapi.RegisterAssetName
const SetAssetStateName = serverapi.SetAssetStateName
const InspectServerName = serverapi.InspectServerName
const RegisterMonitoringName = serverapi.RegisterMonitoringName
const ConfigureBIOSName = serverapi.ConfigureBIOSName
const ConfigureRAIDName = serverapi.ConfigureRAIDName
const StartInstallName = serverapi.StartInstallName
const FinishInstallName = serverapi.FinishInstallName
const AbortServerName = serverapi.AbortServerName
const CancelServerName = serverapi.CancelServerName
const RegisterCloudName = serverapi.RegisterCloudName
const JoinAggregateName = serverapi.JoinAggregateName
const AssignTenantName = serverapi.AssignTenantName
