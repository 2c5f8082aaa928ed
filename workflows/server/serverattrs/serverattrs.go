// Package serverattrs holds the search attributes a server's lifecycle and
// its decommission carry, by which the API lists the fleet and the Web UI
// filters it. The API sets them when it starts either workflow and the
// workflow upserts them as it goes, so both import this (and not each
// other).
package serverattrs

import (
	"time"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

// Schema lists every custom search attribute metalflow's workflows
// upsert; they must be registered on the namespace before a workflow runs.
func Schema() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		serverapi.SearchAttrServerSerial:   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		serverapi.SearchAttrRack:           enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		serverapi.SearchAttrLifecycleStep:  enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		serverapi.SearchAttrLifecycleState: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		// Datetime: a Keyword would sort and filter as text.
		serverapi.SearchAttrLifecycleStepStartedAt: enumspb.INDEXED_VALUE_TYPE_DATETIME,
	}
}

// ServerSerial is the serial a lifecycle is for.
func ServerSerial() temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(serverapi.SearchAttrServerSerial)
}

// Rack is where the server was racked.
func Rack() temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(serverapi.SearchAttrRack)
}

// LifecycleStep is the step the lifecycle is in, or its final state.
func LifecycleStep() temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(serverapi.SearchAttrLifecycleStep)
}

// LifecycleStepStartedAt is when LifecycleStep last changed.
func LifecycleStepStartedAt() temporal.SearchAttributeKeyTime {
	return temporal.NewSearchAttributeKeyTime(serverapi.SearchAttrLifecycleStepStartedAt)
}

// LifecycleState is the server's state.
func LifecycleState() temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(serverapi.SearchAttrLifecycleState)
}

// AtStart are set when a lifecycle starts, so a server is
// findable in the Web UI before its first workflow task runs. now is when
// the caller starts it: the Rack step begins then.
func AtStart(serial string, now time.Time) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		ServerSerial().ValueSet(serial),
		LifecycleStep().ValueSet(serverapi.StepRack),
		LifecycleStepStartedAt().ValueSet(now),
		LifecycleState().ValueSet(serverapi.StateWaitingRack),
	)
}

// DecommissionAtStart are set when a server's decommission starts. From
// then on the decommission holds the server's state (serverapi.ServerState)
// under the lifecycle's attribute names: a lifecycle that has ended cannot
// change its own, and the fleet list finds the decommission by them before
// its first workflow task runs.
func DecommissionAtStart(serial string, loc *serverapi.Location) temporal.SearchAttributes {
	set := []temporal.SearchAttributeUpdate{
		ServerSerial().ValueSet(serial),
		LifecycleState().ValueSet(serverapi.StateDecommissioning),
	}
	if loc != nil {
		set = append(set, Rack().ValueSet(loc.Rack))
	}
	return temporal.NewSearchAttributes(set...)
}
