package workflows

// NormalizeVIPInput fills in the defaults a request may leave out, as the
// workflow does: the API validates exactly what the workflow will run.
func NormalizeVIPInput(in VIPRolloutInput) VIPRolloutInput { return normalizeVIPInput(in) }
