package server

import (
	"errors"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// What the lifecycle and the decommission share around the step runner.

// stepRecord is the named step's entry in a status, for the runner to mark.
func stepRecord(steps []stepapi.StepStatus, name string) *stepapi.StepStatus {
	for i := range steps {
		if steps[i].Name == name {
			return &steps[i]
		}
	}
	return nil
}

// checkRetryBMC refuses a retry whose BMC correction corrects nothing.
func checkRetryBMC(in serverapi.RetryInput) error {
	if in.BMC != nil && in.BMC.Address == "" && in.BMC.CredentialRef == "" {
		return errors.New("bmc must give an address, a credential, or both")
	}
	return nil
}

// mergeBMC is the BMC after a retry's correction: a field the retry leaves
// empty keeps what was known.
func mergeBMC(known, fix *serverapi.BMCRef) *serverapi.BMCRef {
	if fix == nil {
		return known
	}
	bmc := serverapi.BMCRef{}
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
