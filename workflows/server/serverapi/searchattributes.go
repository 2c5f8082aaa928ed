package serverapi

// Search attributes the Web UI filters lifecycles by. The names are part of
// the namespace's schema: never rename them.
const (
	SearchAttrServerSerial  = "ServerSerial"
	SearchAttrRack          = "Rack"
	SearchAttrLifecycleStep = "LifecycleStep"
	// SearchAttrLifecycleState lets the API list servers by state without
	// asking each workflow.
	SearchAttrLifecycleState = "LifecycleState"
	// SearchAttrLifecycleStepStartedAt is when LifecycleStep last changed,
	// so the fleet list shows how long each server has been in its step
	// (a stuck server stands out) without querying every workflow.
	SearchAttrLifecycleStepStartedAt = "LifecycleStepStartedAt"
)
