package workflows

// Transitional: the names below moved to a contract package; these
// aliases keep importers compiling until each is switched over.

import "github.com/metalflow/metalflow/workflows/stepapi"

const UpdateRetry = stepapi.UpdateRetry
const UpdateSkip = stepapi.UpdateSkip
const UpdateAbort = stepapi.UpdateAbort
const QueryStatus = stepapi.QueryStatus
const StepPending = stepapi.StepPending
const StepWaiting = stepapi.StepWaiting
const StepRunning = stepapi.StepRunning
const StepDone = stepapi.StepDone
const StepFailed = stepapi.StepFailed
const StepSkipped = stepapi.StepSkipped

type StepStatus = stepapi.StepStatus
type Attention = stepapi.Attention
type AbortInput = stepapi.AbortInput
