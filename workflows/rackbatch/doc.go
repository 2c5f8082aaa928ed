// Package rackbatch holds the RackBatch workflow, which provisions a rack's
// worth of servers as child lifecycles, and the rack's power slots: the
// keeper the batch runs and the client side its lifecycles take a slot
// with. Its contract is batchapi.
package rackbatch
