package workflows

import (
	"github.com/metalflow/metalflow/workflows/rackbatch"
	"github.com/metalflow/metalflow/workflows/server"
	"github.com/metalflow/metalflow/workflows/server/serverattrs"
	"github.com/metalflow/metalflow/workflows/vip"
)

// Transitional: the workflows moved into their domain packages; these
// aliases keep importers compiling until each is switched over.

var SearchAttributes = serverattrs.Schema
var LifecycleStartAttributes = serverattrs.AtStart
var Steps = server.Steps
var DecommissionSteps = server.DecommissionSteps
var ServerLifecycle = server.ServerLifecycle
var Decommission = server.Decommission
var RackBatch = rackbatch.RackBatch
var VIPRollout = vip.VIPRollout
var LBNodeRegistry = vip.LBNodeRegistry
