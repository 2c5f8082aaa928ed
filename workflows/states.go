package workflows

// States lists every state a server can be in, as the API filters by it.
// Ready and decommissioned belong to the cloud and decommission steps.
func States() []string {
	return []string{StateWaitingRack, StateProvisioning, StateAttention, StateInstalled, StateReady, StateFailed, StateAborted, StateCancelled, "decommissioned"}
}
