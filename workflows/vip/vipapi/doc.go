// Package vipapi is the contract of load-balanced VIPs and of the LB
// nodes' registry on metalflow's own task queue: workflow and update
// names, inputs and statuses, validation the API and the workflow share,
// and the load-balancing activities' payloads. What runs on each LB node's
// own task queue is lbnode/lbapi's. Standard library only.
package vipapi
