package server

import (
	"time"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/temporal"
)

// SearchAttributes lists every custom search attribute metalflow's workflows
// upsert; they must be registered on the namespace before a workflow runs.
func SearchAttributes() map[string]enumspb.IndexedValueType {
	return map[string]enumspb.IndexedValueType{
		serverapi.SearchAttrServerSerial:   enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		serverapi.SearchAttrRack:           enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		serverapi.SearchAttrLifecycleStep:  enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		serverapi.SearchAttrLifecycleState: enumspb.INDEXED_VALUE_TYPE_KEYWORD,
		// Datetime: a Keyword would sort and filter as text.
		serverapi.SearchAttrLifecycleStepStartedAt: enumspb.INDEXED_VALUE_TYPE_DATETIME,
	}
}

func serverSerialKey() temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(serverapi.SearchAttrServerSerial)
}

func rackKey() temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(serverapi.SearchAttrRack)
}

func lifecycleStepKey() temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(serverapi.SearchAttrLifecycleStep)
}

func lifecycleStepStartedAtKey() temporal.SearchAttributeKeyTime {
	return temporal.NewSearchAttributeKeyTime(serverapi.SearchAttrLifecycleStepStartedAt)
}

func lifecycleStateKey() temporal.SearchAttributeKeyKeyword {
	return temporal.NewSearchAttributeKeyKeyword(serverapi.SearchAttrLifecycleState)
}

// LifecycleStartAttributes are set when a lifecycle starts, so a server is
// findable in the Web UI before its first workflow task runs. now is when
// the caller starts it: the Rack step begins then.
func LifecycleStartAttributes(serial string, now time.Time) temporal.SearchAttributes {
	return temporal.NewSearchAttributes(
		serverSerialKey().ValueSet(serial),
		lifecycleStepKey().ValueSet(serverapi.StepRack),
		lifecycleStepStartedAtKey().ValueSet(now),
		lifecycleStateKey().ValueSet(serverapi.StateWaitingRack),
	)
}
