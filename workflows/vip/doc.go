// Package vip holds the VIPRollout workflow, one per load-balanced VIP
// (placement, canary rollout to every LB node, approval of public VIPs,
// backend changes and health, retirement), and LBNodeRegistry, one per LB
// node, which records its heartbeats and tells VIPs when it comes up. Its
// contract is vipapi; the nodes' own is lbnode/lbapi.
package vip
