package workflows

import (
	"errors"
	"fmt"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/activities"
)

// rackReminderInterval is how long a registered server may wait for a
// technician before the lifecycle nags (log line + metric), and again after.
const rackReminderInterval = 24 * time.Hour

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
	// racking is set while a racked update claims its rack units, so a
	// second update cannot claim others at the same time.
	racking bool
	// rackedBy is who reported the server racked, for the asset history.
	rackedBy string
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
	return workflow.SetUpdateHandlerWithOptions(ctx, UpdateRacked, l.handleRacked,
		workflow.UpdateHandlerOptions{Validator: l.validateRacked},
	)
}

// validateRacked runs before the update enters history: a rejected update
// leaves no trace and changes nothing. It checks what the workflow knows;
// whether the units are free is decided by the CMDB in handleRacked.
func (l *lifecycle) validateRacked(in RackedInput) error {
	if l.racked != nil {
		return fmt.Errorf("server %s is already racked at %s/%s U%d", l.status.Serial, l.racked.Site, l.racked.Rack, l.racked.Unit)
	}
	if l.racking {
		return fmt.Errorf("server %s is being racked by another request", l.status.Serial)
	}
	return ValidateLocation(in.Location)
}

// handleRacked claims the rack units in the CMDB. The claim is atomic there,
// so two servers reported into one unit cannot both win.
func (l *lifecycle) handleRacked(ctx workflow.Context, in RackedInput) (RackedResult, error) {
	// Two updates delivered in one workflow task both pass the validator
	// before either handler runs; the handler decides.
	if err := l.validateRacked(in); err != nil {
		return RackedResult{}, err
	}
	l.racking = true
	defer func() { l.racking = false }()
	loc := in.Location
	err := workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, rackActivityOptions()), activities.RackServerName,
		activities.RackServerInput{
			Serial: l.status.Serial, Site: loc.Site, Room: loc.Room, Rack: loc.Rack, Unit: loc.Unit, Face: loc.Face,
			HeightU: 1, Actor: actorOr(in.By, "technician"),
		}).Get(ctx, nil)
	if err != nil {
		return RackedResult{}, refusal(err)
	}
	l.racked = &loc
	l.rackedBy = in.By
	return RackedResult{Serial: l.status.Serial, Location: loc}, nil
}

// rackActivityOptions: the claim is one short database transaction. A few
// quick attempts cover a database blip; beyond that the technician hears
// back and can try again, rather than the API call hanging.
func rackActivityOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:    500 * time.Millisecond,
			BackoffCoefficient: 2,
			MaximumInterval:    5 * time.Second,
			MaximumAttempts:    4,
		},
	}
}

// refusal unwraps an activity's verdict so the update's caller sees the
// CMDB's message and type, not Temporal's wrapping.
func refusal(err error) error {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return temporal.NewNonRetryableApplicationError(appErr.Message(), appErr.Type(), nil)
	}
	return temporal.NewNonRetryableApplicationError("could not record the location: "+err.Error(), "RackFailed", nil)
}

func actorOr(actor, fallback string) string {
	if actor == "" {
		return fallback
	}
	return actor
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
		for {
			ok, err := workflow.AwaitWithTimeout(ctx, rackReminderInterval, func() bool { return l.racked != nil })
			if err != nil {
				return err
			}
			if ok {
				break
			}
			l.remindRack(ctx)
		}
	} else if err := l.claimInputLocation(ctx); err != nil {
		return err
	}
	l.status.Location = l.racked
	if err := workflow.UpsertTypedSearchAttributes(ctx, rackKey().ValueSet(l.racked.Rack)); err != nil {
		return err
	}
	l.finishStep(ctx, step, nil)
	return nil
}

// claimInputLocation records a server registered already racked. The API
// checked the location; if the units were taken since, the lifecycle fails
// rather than put two servers in one unit.
func (l *lifecycle) claimInputLocation(ctx workflow.Context) error {
	loc := *l.racked
	return workflow.ExecuteActivity(workflow.WithActivityOptions(ctx, rackActivityOptions()), activities.RackServerName,
		activities.RackServerInput{
			Serial: l.status.Serial, Site: loc.Site, Room: loc.Room, Rack: loc.Rack, Unit: loc.Unit, Face: loc.Face,
			HeightU: 1, Actor: "registration",
		}).Get(ctx, nil)
}

// remindRack is the nudge for a server nobody has racked in a day.
func (l *lifecycle) remindRack(ctx workflow.Context) {
	l.status.RackReminders++
	workflow.GetLogger(ctx).Warn("server still waiting to be racked",
		"serial", l.status.Serial, "reminders", l.status.RackReminders)
	workflow.GetMetricsHandler(ctx).Counter("metalflow_rack_reminders_total").Inc(1)
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
