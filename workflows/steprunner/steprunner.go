// Package steprunner runs a workflow's steps and, when one fails in a way
// the activities' own retries did not fix, parks the workflow in attention
// until staff retry, skip or abort it. Every workflow that provisions or
// changes machines asks staff the same way, so they all use this one loop.
//
// Like all workflow code it is deterministic: no I/O, no clocks, no
// randomness outside the workflow API.
package steprunner

import (
	"errors"
	"fmt"
	"slices"

	"github.com/metalflow/metalflow/workflows/stepapi"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// Step is one row of a workflow's table.
type Step struct {
	Name string
	// Skippable: staff may go on without the step.
	Skippable bool
	Run       func(workflow.Context) error
}

// Table is a workflow's steps in order: its status lists them, the runner
// runs them.
type Table []Step

// Names lists the steps in order.
func (t Table) Names() []string {
	names := make([]string, 0, len(t))
	for _, s := range t {
		names = append(names, s.Name)
	}
	return names
}

// Without is the table less the named steps, for a run that does not
// have them.
func (t Table) Without(names ...string) Table {
	return slices.DeleteFunc(slices.Clone(t), func(s Step) bool { return slices.Contains(names, s.Name) })
}

// Pending is the status of a run that has not started.
func (t Table) Pending() []stepapi.StepStatus {
	steps := make([]stepapi.StepStatus, 0, len(t))
	for _, s := range t {
		steps = append(steps, stepapi.StepStatus{Name: s.Name, Status: stepapi.StepPending})
	}
	return steps
}

// Action is what staff decided about a step in attention.
type Action string

// Staff's answers to an attention.
const (
	Retry Action = "retry"
	Skip  Action = "skip"
	Abort Action = "abort"
)

// Decision is staff's answer to an attention. R is what a retry may
// correct (a BMC, a profile), struct{} where there is nothing to correct.
type Decision[R any] struct {
	Action Action
	By     string
	Retry  R
}

// sentinel makes the runner's errors constants.
type sentinel string

func (e sentinel) Error() string { return string(e) }

// ErrAborted is what Run returns after staff aborted a step: the workflow
// undoes what it must and ends.
const ErrAborted = sentinel("aborted by staff")

// skipped is a step's "nothing I may do here", with the reason.
type skipped struct{ note string }

func (s *skipped) Error() string { return "skipped: " + s.note }

// Skipped is what a step returns when it found nothing it may do, for a
// reason the status should show (no Ironic configured, not a hypervisor):
// the step is marked skipped with the note, never done.
func Skipped(note string) error { return &skipped{note: note} }

// goBack sends the run back to an earlier step.
type goBack struct{ to string }

func (g *goBack) Error() string { return "back to " + g.to }

// GoBack is what a Retry hook returns when the correction changes what
// an earlier step decided (another hardware profile: inspect again). Run
// goes on from that step; steps already in the wanted shape find nothing
// to do.
func GoBack(to string) error { return &goBack{to: to} }

// Runner runs one workflow's steps. The hooks keep what differs between
// workflows (state names, search attributes, what a retry corrects) in
// the workflow; nil hooks do nothing.
type Runner[R any] struct {
	// Subject and SubjectKV name the workflow in log lines: "server",
	// "serial", "SN-1".
	Subject   string
	SubjectKV []any
	// Record is the named step's entry in the workflow's status; the
	// runner marks it. Nil, or a nil entry, leaves the step unrecorded.
	Record func(name string) *stepapi.StepStatus
	// Started runs each time a step starts, before it runs.
	Started func(ctx workflow.Context, name string) error
	// Park puts the workflow in attention; Resume takes it out once staff
	// decided, before the decision is acted on.
	Park   func(ctx workflow.Context, a stepapi.Attention) error
	Resume func(ctx workflow.Context) error
	// Retry applies a retry's corrections before the step runs again. An
	// error ends the step with it (GoBack included).
	Retry func(step string, r R) error

	// running is the step that runs, for Note.
	running string
	// attention is set while a step waits for staff; decision is their
	// answer until the runner takes it.
	attention *stepapi.Attention
	decision  *Decision[R]
}

// Awaiting says a step waits for staff and nobody has decided yet: the
// only time retry, skip or abort mean anything.
func (r *Runner[R]) Awaiting() bool { return r.attention != nil && r.decision == nil }

// Decided says staff decided and the runner has not acted on it yet.
func (r *Runner[R]) Decided() bool { return r.decision != nil }

// Decide hands staff's answer to the waiting step, and names it. The
// workflow's update validators give the API its refusals; these are the
// runner's guarantee, for two updates that pass their validators in one
// workflow task.
func (r *Runner[R]) Decide(d Decision[R]) (step string, err error) {
	if !r.Awaiting() {
		return "", errors.New("no step is waiting for a decision")
	}
	if d.Action == Skip && !r.attention.Skippable {
		return "", fmt.Errorf("step %s cannot be skipped", r.attention.Step)
	}
	r.decision = &d
	return r.attention.Step, nil
}

// Note records what the running step left behind.
func (r *Runner[R]) Note(note string) {
	if s := r.record(r.running); s != nil {
		s.Note = note
	}
}

// Answer hands staff's decision to the parked step and answers the update
// with it; subject is what the workflow is about (a serial, a VIP's name).
func (r *Runner[R]) Answer(subject string, d Decision[R]) (stepapi.DecisionResult, error) {
	step, err := r.Decide(d)
	if err != nil {
		return stepapi.DecisionResult{}, err
	}
	return stepapi.DecisionResult{Serial: subject, Action: string(d.Action), Step: step}, nil
}

// MarkSkipped marks a step this run will not have at all.
func (r *Runner[R]) MarkSkipped(name, note string) {
	if s := r.record(name); s != nil {
		s.Status, s.Note = stepapi.StepSkipped, note
	}
}

// Run runs the steps in order.
func (r *Runner[R]) Run(ctx workflow.Context, steps Table) error {
	for i := 0; i < len(steps); i++ {
		err := r.RunStep(ctx, steps[i])
		var back *goBack
		if errors.As(err, &back) {
			j := slices.IndexFunc(steps, func(s Step) bool { return s.Name == back.to })
			if j < 0 {
				return fmt.Errorf("step %s: cannot go back to %s, which this run does not have", steps[i].Name, back.to)
			}
			i = j - 1
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// RunStep runs one step until it is done, skipped, or aborted. A failure
// retries cannot fix parks the workflow in attention until staff decide;
// transient failures never get here, Temporal retries them inside the
// activity. Cancellation ends it at once, leaving the step running: the
// workflow's cancellation compensation says how it ended.
func (r *Runner[R]) RunStep(ctx workflow.Context, step Step) error {
	for {
		rec := r.start(ctx, step.Name)
		if r.Started != nil {
			if err := r.Started(ctx, step.Name); err != nil {
				return err
			}
		}
		err := step.Run(ctx)
		var skip *skipped
		switch {
		case err == nil:
			r.finish(ctx, rec, stepapi.StepDone, "")
			return nil
		case errors.As(err, &skip):
			r.finish(ctx, rec, stepapi.StepSkipped, "")
			r.Note(skip.note)
			return nil
		case temporal.IsCanceledError(err):
			return err
		}
		problem := Cause(err)
		r.finish(ctx, rec, stepapi.StepFailed, problem)
		d, err := r.await(ctx, stepapi.Attention{Step: step.Name, Error: problem, Skippable: step.Skippable})
		if err != nil {
			return err
		}
		switch d.Action {
		case Skip:
			if rec != nil {
				by := d.By
				if by == "" {
					by = "staff"
				}
				rec.Status, rec.Note = stepapi.StepSkipped, "skipped by "+by
			}
			return nil
		case Abort:
			return ErrAborted
		}
		if r.Retry != nil {
			if err := r.Retry(step.Name, d.Retry); err != nil {
				return err
			}
		}
	}
}

// await parks the workflow until staff decide, and returns their answer.
func (r *Runner[R]) await(ctx workflow.Context, a stepapi.Attention) (Decision[R], error) {
	if r.Park != nil {
		if err := r.Park(ctx, a); err != nil {
			return Decision[R]{}, err
		}
	}
	r.attention = &a
	workflow.GetLogger(ctx).Warn(r.Subject+" needs attention", append(slices.Clone(r.SubjectKV), "step", a.Step, "error", a.Error)...)
	workflow.GetMetricsHandler(ctx).WithTags(map[string]string{"step": a.Step}).Counter("metalflow_attention_total").Inc(1)
	if err := workflow.Await(ctx, func() bool { return r.decision != nil }); err != nil {
		return Decision[R]{}, err
	}
	d := *r.decision
	r.decision, r.attention = nil, nil
	if r.Resume != nil {
		if err := r.Resume(ctx); err != nil {
			return Decision[R]{}, err
		}
	}
	return d, nil
}

func (r *Runner[R]) record(name string) *stepapi.StepStatus {
	if r.Record == nil {
		return nil
	}
	return r.Record(name)
}

// start marks a step running; a retried step starts again.
func (r *Runner[R]) start(ctx workflow.Context, name string) *stepapi.StepStatus {
	r.running = name
	s := r.record(name)
	if s != nil {
		now := workflow.Now(ctx)
		s.Status, s.StartedAt, s.FinishedAt, s.Error = stepapi.StepRunning, &now, nil, ""
	}
	return s
}

func (r *Runner[R]) finish(ctx workflow.Context, s *stepapi.StepStatus, status, problem string) {
	if s == nil {
		return
	}
	now := workflow.Now(ctx)
	s.Status, s.FinishedAt, s.Error = status, &now, problem
}

// Cause is the message staff should read: an activity's own error, not
// Temporal's wrapping of it.
func Cause(err error) string {
	var appErr *temporal.ApplicationError
	if errors.As(err, &appErr) {
		return appErr.Message()
	}
	return err.Error()
}
