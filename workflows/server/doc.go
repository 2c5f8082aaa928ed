// Package server holds the workflows of one server: ServerLifecycle, from
// the loading dock to ready (rack, asset, inspection, monitoring, BIOS,
// RAID, OS install, cloud, tenant, load balancer), and Decommission, the
// way back out. Each is a thin registered entry over an unexported state
// machine whose step table is run by steprunner; the contract callers use
// is serverapi.
package server
