package activities

// Transitional: the names below moved to a contract package; these
// aliases keep importers compiling until each is switched over.

import "github.com/metalflow/metalflow/workflows/vip/vipapi"

const RecordLBNodeName = vipapi.RecordLBNodeName
const ListLBClustersName = vipapi.ListLBClustersName
const AllocateVIPAddressName = vipapi.AllocateVIPAddressName
const RecordVIPName = vipapi.RecordVIPName
const ReleaseVIPName = vipapi.ReleaseVIPName
const ResolveServersName = vipapi.ResolveServersName
const ListPlacedVIPsName = vipapi.ListPlacedVIPsName
const LBHeartbeatInterval = vipapi.LBHeartbeatInterval
const LBNodeRefreshInterval = vipapi.LBNodeRefreshInterval

type Pools = vipapi.Pools
type RecordLBNodeInput = vipapi.RecordLBNodeInput
type ListLBClustersInput = vipapi.ListLBClustersInput
type LBNodeState = vipapi.LBNodeState
type LBCluster = vipapi.LBCluster
type ListLBClustersResult = vipapi.ListLBClustersResult
type AllocateVIPAddressInput = vipapi.AllocateVIPAddressInput
type AllocateVIPAddressResult = vipapi.AllocateVIPAddressResult
type VIPPlacement = vipapi.VIPPlacement
type RecordVIPInput = vipapi.RecordVIPInput
type ListPlacedVIPsInput = vipapi.ListPlacedVIPsInput
type ListPlacedVIPsResult = vipapi.ListPlacedVIPsResult
type ReleaseVIPInput = vipapi.ReleaseVIPInput
type ResolveServersInput = vipapi.ResolveServersInput
type ResolvedServer = vipapi.ResolvedServer
type ResolveServersResult = vipapi.ResolveServersResult
