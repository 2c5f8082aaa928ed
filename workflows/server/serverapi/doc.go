// Package serverapi is the contract of a server's workflows: the lifecycle
// that takes it from the loading dock to ready, and the decommission that
// takes it out. It names the workflows, their updates, signals and
// queries, their inputs and statuses, and the server activities with their
// payloads, error notes and reports. Standard library only: the API, the
// workflows and the activities all import it, and none of them imports
// another's implementation.
//
// Names and JSON fields here are in recorded histories and in running
// workflows: never rename them; add fields, or version the change.
package serverapi
