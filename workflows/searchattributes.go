package workflows

import (
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

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

// SearchAttributes lists every custom search attribute metalflow's workflows
// upsert; they must be registered on the namespace before a workflow runs.
func SearchAttributes() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		SearchAttrServerSerial:   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttrRack:           enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttrLifecycleStep:  enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttrLifecycleState: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		// Datetime: a Keyword would sort and filter as text.
		SearchAttrLifecycleStepStartedAt: enumspb.INDEXED_VALUE_TYPE_DATETIME,
	}
}

func serverSerialKey() temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(SearchAttrServerSerial)
}

func rackKey() temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(SearchAttrRack)
}

func lifecycleStepKey() temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(SearchAttrLifecycleStep)
}

func lifecycleStepStartedAtKey() temporal.SearchAttributeKeyTime {
	return temporal.NewSearchAttributeKeyTime(SearchAttrLifecycleStepStartedAt)
}

func lifecycleStateKey() temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(SearchAttrLifecycleState)
}

// LifecycleStartAttributes are set when a lifecycle starts, so a server is
// findable in the Web UI before its first workflow task runs. now is when
// the caller starts it: the Rack step begins then.
func LifecycleStartAttributes(serial string, now time.Time) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		serverSerialKey().ValueSet(serial),
		lifecycleStepKey().ValueSet(StepRack),
		lifecycleStepStartedAtKey().ValueSet(now),
		lifecycleStateKey().ValueSet(StateWaitingRack),
	)
}
