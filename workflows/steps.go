package workflows

import (
	"errors"

	"github.com/metalflow/metalflow/activities"
	"github.com/metalflow/metalflow/workflows/steprunner"
)

// What the lifecycle and the decommission share around the step runner.
// Their StepStatus and Attention have the runner's fields exactly, so the
// conversions below are free; the compiler says when the two drift apart.

// pendingSteps is the status of a run of steps that has not started.
func pendingSteps(t steprunner.Table) []StepStatus {
	steps := make([]StepStatus, 0, len(t))
	for _, s := range t.Pending() {
		steps = append(steps, StepStatus(s))
	}
	return steps
}

// stepRecord is the named step's entry in a status, for the runner to mark.
func stepRecord(steps []StepStatus, name string) *steprunner.StepStatus {
	for i := range steps {
		if steps[i].Name == name {
			return (*steprunner.StepStatus)(&steps[i])
		}
	}
	return nil
}

// decide hands staff's decision to the parked step and answers the update
// with it; subject is the server's serial or the VIP's name.
func decide[R any](r *steprunner.Runner[R], subject string, d steprunner.Decision[R]) (DecisionResult, error) {
	step, err := r.Decide(d)
	if err != nil {
		return DecisionResult{}, err
	}
	return DecisionResult{Serial: subject, Action: string(d.Action), Step: step}, nil
}

// checkRetryBMC refuses a retry whose BMC correction corrects nothing.
func checkRetryBMC(in RetryInput) error {
	if in.BMC != nil && in.BMC.Address == "" && in.BMC.CredentialRef == "" {
		return errors.New("bmc must give an address, a credential, or both")
	}
	return nil
}

// mergeBMC is the BMC after a retry's correction: a field the retry leaves
// empty keeps what was known.
func mergeBMC(known, fix *activities.BMCRef) *activities.BMCRef {
	if fix == nil {
		return known
	}
	bmc := activities.BMCRef{}
	if known != nil {
		bmc = *known
	}
	if fix.Address != "" {
		bmc.Address = fix.Address
	}
	if fix.CredentialRef != "" {
		bmc.CredentialRef = fix.CredentialRef
	}
	return &bmc
}
