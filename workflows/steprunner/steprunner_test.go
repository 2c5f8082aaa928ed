package steprunner_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/metalflow/metalflow/workflows/steprunner"
)

// fix is what a retry corrects in the test workflow; "back" sends the run
// back to the first step.
type fix struct{ Value string }

// plan says how often each step fails before it works, and whether the
// step "wait" is in the table.
type plan struct {
	Failures map[string]int
	Wait     bool
}

// outcome is the test workflow's status: what the runner marked and what
// its hooks saw.
type outcome struct {
	State     string
	Attention *stepapi.Attention
	Steps     []stepapi.StepStatus
	Started   []string
	Fixes     []string
	Aborted   bool
}

const (
	stateWorking   = "working"
	stateAttention = "attention"
)

// stepsWorkflow runs a small table on the runner: "first", a skippable
// "optional", "noted" (which has nothing to do), optionally "wait" (which
// waits a day), and "last". A step fails with "broken <name>" as often as
// the plan says.
func stepsWorkflow(ctx workflow.Context, p plan) (outcome, error) {
	out := outcome{State: stateWorking}
	attempts := map[string]int{}
	work := func(name string) func(workflow.Context) error {
		return func(workflow.Context) error {
			attempts[name]++
			if attempts[name] <= p.Failures[name] {
				return temporal.NewNonRetryableApplicationError("broken "+name, "Broken", nil)
			}
			return nil
		}
	}
	r := &steprunner.Runner[fix]{
		Subject: "test", SubjectKV: []any{"id", "t1"},
		Record: func(name string) *stepapi.StepStatus {
			for i := range out.Steps {
				if out.Steps[i].Name == name {
					return &out.Steps[i]
				}
			}
			return nil
		},
		Started: func(_ workflow.Context, name string) error {
			out.Started = append(out.Started, name)
			return nil
		},
		Park: func(_ workflow.Context, a stepapi.Attention) error {
			out.State, out.Attention = stateAttention, &a
			return nil
		},
		Resume: func(workflow.Context) error {
			out.State, out.Attention = stateWorking, nil
			return nil
		},
		Retry: func(_ string, f fix) error {
			out.Fixes = append(out.Fixes, f.Value)
			if f.Value == "back" {
				return steprunner.GoBack("first")
			}
			return nil
		},
	}
	table := steprunner.Table{
		{Name: "first", Run: work("first")},
		{Name: "optional", Skippable: true, Run: work("optional")},
		{Name: "noted", Run: func(workflow.Context) error { return steprunner.Skipped("nothing to do here") }},
		{Name: "wait", Run: func(ctx workflow.Context) error { return workflow.Sleep(ctx, 24*time.Hour) }},
		{Name: "last", Run: func(ctx workflow.Context) error {
			if err := work("last")(ctx); err != nil {
				return err
			}
			r.Note("all done")
			return nil
		}},
	}
	if !p.Wait {
		table = table.Without("wait")
	}
	out.Steps = table.Pending()
	if err := workflow.SetQueryHandler(ctx, "status", func() (outcome, error) { return out, nil }); err != nil {
		return out, err
	}
	decide := func(d steprunner.Decision[fix]) (string, error) { return r.Decide(d) }
	for _, u := range []struct {
		name    string
		handler any
	}{
		{"retry", func(_ workflow.Context, f fix) (string, error) {
			return decide(steprunner.Decision[fix]{Action: steprunner.Retry, Retry: f})
		}},
		{"skip", func(_ workflow.Context, by string) (string, error) {
			return decide(steprunner.Decision[fix]{Action: steprunner.Skip, By: by})
		}},
		{"abort", func(workflow.Context) (string, error) {
			return decide(steprunner.Decision[fix]{Action: steprunner.Abort})
		}},
	} {
		if err := workflow.SetUpdateHandler(ctx, u.name, u.handler); err != nil {
			return out, err
		}
	}
	err := r.Run(ctx, table)
	if errors.Is(err, steprunner.ErrAborted) {
		out.Aborted, err = true, nil
	}
	return out, err
}

type runnerTest struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment
	n   int
}

func newRunnerTest(t *testing.T) *runnerTest {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(stepsWorkflow, workflow.RegisterOptions{Name: "steps"})
	return &runnerTest{t: t, env: env}
}

// at sends an update at workflow time d; its answer lands in the result.
func (rt *runnerTest) at(d time.Duration, name string, arg any) *answer {
	a := &answer{}
	rt.n++
	id := fmt.Sprintf("%s-%d", name, rt.n)
	var args []any
	if arg != nil {
		args = append(args, arg)
	}
	rt.env.RegisterDelayedCallback(func() {
		rt.env.UpdateWorkflow(name, id, &testsuite.TestUpdateCallback{
			OnReject:   func(err error) { a.err = err },
			OnAccept:   func() {},
			OnComplete: func(_ any, err error) { a.done, a.err = true, err },
		}, args...)
	}, d)
	return a
}

// statusAt queries the workflow at time d.
func (rt *runnerTest) statusAt(d time.Duration) *outcome {
	var out outcome
	rt.env.RegisterDelayedCallback(func() {
		v, err := rt.env.QueryWorkflow("status")
		require.NoError(rt.t, err)
		require.NoError(rt.t, v.Get(&out))
	}, d)
	return &out
}

func (rt *runnerTest) run(p plan) outcome {
	rt.t.Helper()
	rt.env.ExecuteWorkflow("steps", p)
	require.True(rt.t, rt.env.IsWorkflowCompleted())
	require.NoError(rt.t, rt.env.GetWorkflowError())
	var out outcome
	require.NoError(rt.t, rt.env.GetWorkflowResult(&out))
	return out
}

type answer struct {
	done bool
	err  error
}

func statusOf(t *testing.T, out outcome, name string) stepapi.StepStatus {
	t.Helper()
	for _, s := range out.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %s in %+v", name, out.Steps)
	return stepapi.StepStatus{}
}

func TestRetryRunsTheFailedStepAgainWithTheFix(t *testing.T) {
	rt := newRunnerTest(t)
	parked := rt.statusAt(time.Minute)
	retry := rt.at(2*time.Minute, "retry", fix{Value: "new credential"})
	out := rt.run(plan{Failures: map[string]int{"first": 1}})

	require.Equal(t, stateAttention, parked.State)
	require.Equal(t, &stepapi.Attention{Step: "first", Error: "broken first"}, parked.Attention)
	first := statusOf(t, *parked, "first")
	require.Equal(t, stepapi.StepFailed, first.Status)
	require.Equal(t, "broken first", first.Error, "staff read the error's message, not its wrapping")
	require.NotNil(t, first.FinishedAt)
	require.Equal(t, stepapi.StepPending, statusOf(t, *parked, "optional").Status)

	require.True(t, retry.done)
	require.NoError(t, retry.err)
	require.Equal(t, stateWorking, out.State)
	require.Nil(t, out.Attention)
	require.Equal(t, []string{"new credential"}, out.Fixes)
	require.Equal(t, []string{"first", "first", "optional", "noted", "last"}, out.Started, "the retried step starts again")
	first = statusOf(t, out, "first")
	require.Equal(t, stepapi.StepDone, first.Status)
	require.Empty(t, first.Error, "a retried step that works shows no old error")
	require.Equal(t, stepapi.StepDone, statusOf(t, out, "last").Status)
	require.Equal(t, "all done", statusOf(t, out, "last").Note)
	require.False(t, out.Aborted)
}

func TestStepWithNothingToDoIsSkippedWithItsNote(t *testing.T) {
	out := newRunnerTest(t).run(plan{})
	noted := statusOf(t, out, "noted")
	require.Equal(t, stepapi.StepSkipped, noted.Status)
	require.Equal(t, "nothing to do here", noted.Note)
	require.NotNil(t, noted.FinishedAt)
	require.Nil(t, out.Attention, "nothing to do is no failure")
	for _, name := range []string{"first", "optional", "last"} {
		require.Equal(t, stepapi.StepDone, statusOf(t, out, name).Status, name)
	}
}

func TestSkipGoesOnWithoutASkippableStep(t *testing.T) {
	rt := newRunnerTest(t)
	parked := rt.statusAt(time.Minute)
	skip := rt.at(2*time.Minute, "skip", "ops")
	out := rt.run(plan{Failures: map[string]int{"optional": 5}})

	require.Equal(t, &stepapi.Attention{Step: "optional", Error: "broken optional", Skippable: true}, parked.Attention)
	require.True(t, skip.done)
	require.NoError(t, skip.err)
	optional := statusOf(t, out, "optional")
	require.Equal(t, stepapi.StepSkipped, optional.Status)
	require.Equal(t, "skipped by ops", optional.Note)
	require.Equal(t, []string{"first", "optional", "noted", "last"}, out.Started, "a skipped step is not run again")
	require.Equal(t, stepapi.StepDone, statusOf(t, out, "last").Status)
}

func TestSkipOfAStepThatMustRunIsRefused(t *testing.T) {
	rt := newRunnerTest(t)
	skip := rt.at(time.Minute, "skip", "ops")
	retry := rt.at(2*time.Minute, "retry", fix{})
	out := rt.run(plan{Failures: map[string]int{"first": 1}})

	require.ErrorContains(t, skip.err, "step first cannot be skipped")
	require.NoError(t, retry.err, "the refused skip left the step waiting")
	require.Equal(t, stepapi.StepDone, statusOf(t, out, "first").Status)
}

func TestDecisionWithoutAnAttentionIsRefused(t *testing.T) {
	rt := newRunnerTest(t)
	early := rt.at(time.Minute, "retry", fix{})
	late := rt.at(2*time.Hour, "abort", nil)
	out := rt.run(plan{Wait: true})
	require.ErrorContains(t, early.err, "no step is waiting for a decision")
	require.ErrorContains(t, late.err, "no step is waiting for a decision")
	require.Empty(t, out.Fixes)
	require.False(t, out.Aborted)
}

func TestAbortEndsTheRunWhereItStands(t *testing.T) {
	rt := newRunnerTest(t)
	abort := rt.at(time.Minute, "abort", nil)
	out := rt.run(plan{Failures: map[string]int{"optional": 1}})

	require.True(t, abort.done)
	require.NoError(t, abort.err)
	require.True(t, out.Aborted)
	require.Equal(t, stateWorking, out.State, "the workflow resumed before the abort was acted on")
	require.Equal(t, stepapi.StepFailed, statusOf(t, out, "optional").Status)
	require.Equal(t, stepapi.StepPending, statusOf(t, out, "last").Status, "no step runs after an abort")
	require.Empty(t, out.Fixes)
}

func TestRetryCanSendTheRunBack(t *testing.T) {
	rt := newRunnerTest(t)
	rt.at(time.Minute, "retry", fix{Value: "back"})
	out := rt.run(plan{Failures: map[string]int{"optional": 1}})
	require.Equal(t, []string{"first", "optional", "first", "optional", "noted", "last"}, out.Started)
	require.Equal(t, stepapi.StepDone, statusOf(t, out, "optional").Status)
}

func TestCancellationEndsTheRunAndLeavesTheStepRunning(t *testing.T) {
	rt := newRunnerTest(t)
	rt.env.RegisterDelayedCallback(rt.env.CancelWorkflow, time.Hour)
	rt.env.ExecuteWorkflow("steps", plan{Wait: true})
	require.True(t, rt.env.IsWorkflowCompleted())
	var canceled *temporal.CanceledError
	require.ErrorAs(t, rt.env.GetWorkflowError(), &canceled)
	v, err := rt.env.QueryWorkflow("status")
	require.NoError(t, err)
	var out outcome
	require.NoError(t, v.Get(&out))
	require.Equal(t, stepapi.StepRunning, statusOf(t, out, "wait").Status, "the workflow's compensation says how it ended")
	require.Nil(t, statusOf(t, out, "wait").FinishedAt)
	require.Equal(t, stepapi.StepPending, statusOf(t, out, "last").Status)
}

func TestCancellationWhileParkedEndsTheRun(t *testing.T) {
	rt := newRunnerTest(t)
	parked := rt.statusAt(time.Minute)
	rt.env.RegisterDelayedCallback(rt.env.CancelWorkflow, time.Hour)
	rt.env.ExecuteWorkflow("steps", plan{Failures: map[string]int{"first": 1}})
	require.Equal(t, stateAttention, parked.State)
	var canceled *temporal.CanceledError
	require.ErrorAs(t, rt.env.GetWorkflowError(), &canceled)
}

func TestTableNamesAndWithout(t *testing.T) {
	table := steprunner.Table{{Name: "a"}, {Name: "b", Skippable: true}, {Name: "c"}}
	require.Equal(t, []string{"a", "b", "c"}, table.Names())
	require.Equal(t, []string{"a", "c"}, table.Without("b").Names())
	require.Equal(t, []string{"a", "b", "c"}, table.Names(), "Without leaves the table alone")
	require.Equal(t, []stepapi.StepStatus{{Name: "a", Status: "pending"}, {Name: "c", Status: "pending"}},
		table.Without("b", "x").Pending())
}
