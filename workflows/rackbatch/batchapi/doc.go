// Package batchapi is the contract of a rack batch: a rack's worth of
// servers provisioned at once, with a cap on how many change power at a
// time. It names the batch workflow, its input and status, the power-slot
// signals between a batch and its lifecycles, and the state reports the
// lifecycles send it. Standard library only.
package batchapi
