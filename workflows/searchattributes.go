package workflows

import (
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
)

// SearchAttributes lists every custom search attribute metalflow's workflows
// upsert; they must be registered on the namespace before a workflow runs.
func SearchAttributes() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		SearchAttrServerSerial:   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttrRack:           enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttrLifecycleStep:  enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		SearchAttrLifecycleState: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
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

func lifecycleStateKey() temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(SearchAttrLifecycleState)
}

// LifecycleStartAttributes are set when a lifecycle starts, so a server is
// findable in the Web UI before its first workflow task runs.
func LifecycleStartAttributes(serial string) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		serverSerialKey().ValueSet(serial),
		lifecycleStepKey().ValueSet(StepRack),
		lifecycleStateKey().ValueSet(StateWaitingRack),
	)
}
