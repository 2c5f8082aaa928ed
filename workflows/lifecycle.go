package workflows

import (
	"fmt"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// ServerLifecycle takes one server from the loading dock onwards. It is the
// thin, registered entry point; the step machine lives in lifecycle.
func ServerLifecycle(ctx workflow.Context, in ServerLifecycleInput) (ServerStatus, error) {
	if err := ValidateSerial(in.Serial); err != nil {
		return ServerStatus{}, temporal.NewNonRetryableApplicationError(err.Error(), "InvalidInput", nil)
	}
	l := newLifecycle(in)
	l.status.RunID = workflow.GetInfo(ctx).WorkflowExecution.RunID
	if err := l.registerHandlers(ctx); err != nil {
		return l.status, err
	}
	return l.run(ctx)
}

// lifecycle is the state of one server's workflow; the status query reads it.
type lifecycle struct {
	status ServerStatus
	// racked is filled by the racked update (or the input) and wakes run.
	racked *Location
}

func newLifecycle(in ServerLifecycleInput) *lifecycle {
	return &lifecycle{
		status: ServerStatus{
			Serial: in.Serial,
			State:  StateWaitingRack,
			Step:   StepRack,
			Steps:  []StepStatus{{Name: StepRack, Status: StepPending}},
		},
		racked: in.Location,
	}
}

func (l *lifecycle) registerHandlers(ctx workflow.Context) error {
	if err := workflow.SetQueryHandler(ctx, QueryStatus, func() (ServerStatus, error) {
		return l.status, nil
	}); err != nil {
		return fmt.Errorf("register %s query: %w", QueryStatus, err)
	}
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateRacked,
		func(ctx workflow.Context, loc Location) (RackedResult, error) {
			// Two updates delivered in one workflow task both pass the
			// validator before either handler runs; the handler decides.
			if err := l.validateRacked(loc); err != nil {
				return RackedResult{}, err
			}
			l.racked = &loc
			return RackedResult{Serial: l.status.Serial, Location: loc}, nil
		},
		workflow.UpdateHandlerOptions{Validator: l.validateRacked},
	)
}

// validateRacked runs before the update enters history: a rejected update
// leaves no trace and changes nothing.
func (l *lifecycle) validateRacked(loc Location) error {
	if l.racked != nil {
		return fmt.Errorf("server %s is already racked at %s/%s U%d", l.status.Serial, l.racked.Site, l.racked.Rack, l.racked.Unit)
	}
	return ValidateLocation(loc)
}

func (l *lifecycle) run(ctx workflow.Context) (ServerStatus, error) {
	if err := l.rack(ctx); err != nil {
		return l.status, err
	}
	l.status.State = StateRacked
	l.status.Step = ""
	// With no step running, LifecycleStep holds the state the run ended in,
	// so the Web UI can still filter on it.
	if err := workflow.UpsertTypedSearchAttributes(ctx, lifecycleStepKey().ValueSet(StateRacked)); err != nil {
		return l.status, err
	}
	// Let an in-flight racked update deliver its answer before the run ends.
	if err := workflow.Await(ctx, func() bool { return workflow.AllHandlersFinished(ctx) }); err != nil {
		return l.status, err
	}
	return l.status, nil
}

func (l *lifecycle) rack(ctx workflow.Context) error {
	step := l.startStep(ctx, StepRack)
	if l.racked == nil {
		step.Status = StepWaiting
		if err := workflow.Await(ctx, func() bool { return l.racked != nil }); err != nil {
			return err
		}
	}
	l.status.Location = l.racked
	if err := workflow.UpsertTypedSearchAttributes(ctx, rackKey().ValueSet(l.racked.Rack)); err != nil {
		return err
	}
	l.finishStep(ctx, step, nil)
	return nil
}

func (l *lifecycle) startStep(ctx workflow.Context, name string) *StepStatus {
	now := workflow.Now(ctx)
	for i := range l.status.Steps {
		s := &l.status.Steps[i]
		if s.Name == name {
			s.Status = StepRunning
			s.StartedAt = &now
			s.FinishedAt = nil
			s.Error = ""
			l.status.Step = name
			return s
		}
	}
	l.status.Steps = append(l.status.Steps, StepStatus{Name: name, Status: StepRunning, StartedAt: &now})
	l.status.Step = name
	return &l.status.Steps[len(l.status.Steps)-1]
}

func (l *lifecycle) finishStep(ctx workflow.Context, s *StepStatus, err error) {
	now := workflow.Now(ctx)
	s.FinishedAt = &now
	if err != nil {
		s.Status = StepFailed
		s.Error = err.Error()
		return
	}
	s.Status = StepDone
}
