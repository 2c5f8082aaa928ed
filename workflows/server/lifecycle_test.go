package server

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/internal/wftest"
	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/workflow"
)

type lifecycleTest struct {
	t    *testing.T
	env  *testsuite.TestWorkflowEnvironment
	fake *wftest.Activities
	// answerInstalls makes the installer of each attempt in it phone home
	// five minutes after the attempt starts, as a real one would.
	answerInstalls map[int]bool
	updates        int
}

func newLifecycleTest(t *testing.T) *lifecycleTest {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(ServerLifecycle, workflow.RegisterOptions{Name: serverapi.ServerLifecycleName})
	f := wftest.NewActivities()
	f.Register(env)
	lt := &lifecycleTest{t: t, env: env, fake: f, answerInstalls: map[int]bool{1: true}}
	env.SetOnActivityCompletedListener(func(info *activity.Info, result converter.EncodedValue, err error) {
		if info.ActivityType.Name != serverapi.StartInstallName || err != nil {
			return
		}
		f.Mu.Lock()
		attempt := f.Attempts[len(f.Attempts)-1]
		f.Mu.Unlock()
		if lt.answerInstalls[attempt] {
			env.RegisterDelayedCallback(func() { lt.phoneHome(attempt) }, 5*time.Minute)
		}
	})
	return lt
}

// at runs fn at workflow time d.
func (lt *lifecycleTest) at(d time.Duration, fn func()) { lt.env.RegisterDelayedCallback(fn, d) }

func (lt *lifecycleTest) update(name string, arg any) *wftest.UpdateOutcome {
	o := &wftest.UpdateOutcome{}
	lt.updates++
	// Update IDs deduplicate: each call needs its own.
	lt.env.UpdateWorkflow(name, fmt.Sprintf("%s-%d", name, lt.updates), o.Callbacks(), arg)
	return o
}

func (lt *lifecycleTest) status() serverapi.ServerStatus {
	lt.t.Helper()
	v, err := lt.env.QueryWorkflow(stepapi.QueryStatus)
	require.NoError(lt.t, err)
	var st serverapi.ServerStatus
	require.NoError(lt.t, v.Get(&st))
	return st
}

func (lt *lifecycleTest) phoneHome(attempt int) {
	lt.env.SignalWorkflow(serverapi.SignalPhoneHome, serverapi.PhoneHome{Attempt: attempt, Hostname: "host"})
}

func (lt *lifecycleTest) result() serverapi.ServerStatus {
	lt.t.Helper()
	require.True(lt.t, lt.env.IsWorkflowCompleted())
	require.NoError(lt.t, lt.env.GetWorkflowError())
	var st serverapi.ServerStatus
	require.NoError(lt.t, lt.env.GetWorkflowResult(&st))
	return st
}

var dock = serverapi.Location{Site: "dc1", Room: "A", Rack: "R07", Unit: 12, Face: serverapi.FaceFront}

func input(serial string) serverapi.ServerLifecycleInput {
	return serverapi.ServerLifecycleInput{Serial: serial, BMC: &serverapi.BMCRef{Address: "https://127.0.0.1:9443", CredentialRef: "cred-1"}}
}

func TestLifecycleFromDockToInstalled(t *testing.T) {
	lt := newLifecycleTest(t)
	var before serverapi.ServerStatus
	var bad, good *wftest.UpdateOutcome
	lt.at(time.Hour, func() {
		before = lt.status()
		bad = lt.update(serverapi.UpdateRacked, serverapi.RackedInput{Location: serverapi.Location{Site: "dc1", Rack: "R07", Unit: 0, Face: "side"}})
	})
	lt.at(2*time.Hour, func() { good = lt.update(serverapi.UpdateRacked, serverapi.RackedInput{Location: dock, By: "tech-7"}) })
	var installing serverapi.ServerStatus
	lt.at(2*time.Hour+time.Minute, func() { installing = lt.status() })
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, input("SN-0001"))
	final := lt.result()

	require.Equal(t, serverapi.StateWaitingRack, before.State)
	require.Equal(t, stepapi.StepWaiting, before.Steps[0].Status)
	require.Error(t, bad.Rejected)
	require.Contains(t, bad.Rejected.Error(), "unit must be 1 or more")
	require.NoError(t, good.Refused())

	require.Equal(t, serverapi.StepInstallOS, installing.Step)
	require.Equal(t, 1, installing.InstallAttempt)
	require.Equal(t, serverapi.StateInstalled, final.State, "no Ironic configured: installed, not ready")
	require.Equal(t, &dock, final.Location)
	for _, s := range hardwareSteps(final) {
		require.Equal(t, stepapi.StepDone, s.Status, s.Name)
		require.NotNil(t, s.FinishedAt, s.Name)
	}
	require.Equal(t, &serverapi.Hardware{Vendor: "Dell Inc.", Model: "PowerEdge R650", Profile: "default", Role: "compute", MACs: []string{"02:00:00:00:00:01"}}, final.Hardware)
	require.Equal(t, []string{
		serverapi.RackServerName, serverapi.RegisterAssetName, serverapi.InspectServerName, serverapi.RegisterMonitoringName,
		serverapi.ConfigureBIOSName, serverapi.ConfigureRAIDName, serverapi.StartInstallName, serverapi.FinishInstallName,
		serverapi.RegisterCloudName,
	}, lt.fake.Calls)
	rack := lt.fake.Inputs[serverapi.RackServerName][0].(serverapi.RackServerInput)
	require.Equal(t, "tech-7", rack.Actor)
	// The BMC travels by reference: only the credential's name is in history.
	insp := lt.fake.Inputs[serverapi.InspectServerName][0].(serverapi.InspectServerInput)
	require.Equal(t, "cred-1", insp.BMC.CredentialRef)
	mon := lt.fake.Inputs[serverapi.RegisterMonitoringName][0].(serverapi.RegisterMonitoringInput)
	require.Equal(t, serverapi.RegisterMonitoringInput{Serial: "SN-0001", BMCAddress: "https://127.0.0.1:9443", Site: "dc1", Rack: "R07", Role: "compute"}, mon)
	inst := lt.fake.Inputs[serverapi.StartInstallName][0].(serverapi.StartInstallInput)
	require.Equal(t, []string{"02:00:00:00:00:01"}, inst.MACs)
	require.Equal(t, 35*time.Minute, inst.TTL)
}

func TestLifecycleOccupiedUnitRefusesUpdateAndKeepsWaiting(t *testing.T) {
	lt := newLifecycleTest(t)
	taken := serverapi.Location{Site: "dc1", Rack: "R01", Unit: 5, Face: serverapi.FaceFront}
	free := serverapi.Location{Site: "dc1", Rack: "R01", Unit: 6, Face: serverapi.FaceFront}
	lt.fake.FailNext(serverapi.RackServerName, wftest.NonRetryable("rack unit occupied: unit 5 of rack dc1/R01 holds server SN-9", stepapi.ErrTypeUnitOccupied))
	var first, second *wftest.UpdateOutcome
	var between serverapi.ServerStatus
	lt.at(time.Minute, func() { first = lt.update(serverapi.UpdateRacked, serverapi.RackedInput{Location: taken}) })
	lt.at(2*time.Minute, func() {
		between = lt.status()
		second = lt.update(serverapi.UpdateRacked, serverapi.RackedInput{Location: free})
	})
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, input("SN-4"))
	final := lt.result()

	require.NoError(t, first.Rejected, "the validator cannot know the unit is taken")
	var ae *temporal.ApplicationError
	require.True(t, errors.As(first.Err, &ae), "got %v", first.Err)
	require.Equal(t, stepapi.ErrTypeUnitOccupied, ae.Type())
	require.Contains(t, ae.Message(), "holds server SN-9")
	require.Equal(t, serverapi.StateWaitingRack, between.State, "a refused update changes nothing")
	require.Nil(t, between.Location)
	require.NoError(t, second.Refused())
	require.Equal(t, &free, final.Location)
}

func TestLifecycleRefusesSecondRacked(t *testing.T) {
	first := serverapi.Location{Site: "dc1", Rack: "R01", Unit: 3, Face: serverapi.FaceFront}
	l := newLifecycle(serverapi.ServerLifecycleInput{Serial: "SN-3", Location: &first})
	err := l.validateRacked(serverapi.RackedInput{Location: serverapi.Location{Site: "dc1", Rack: "R02", Unit: 4, Face: serverapi.FaceFront}})
	require.ErrorContains(t, err, "already racked at dc1/R01 U3")
}

func TestLifecycleRemindsDailyWhileUnracked(t *testing.T) {
	lt := newLifecycleTest(t)
	var at50h serverapi.ServerStatus
	lt.at(50*time.Hour, func() {
		at50h = lt.status()
		lt.update(serverapi.UpdateRacked, serverapi.RackedInput{Location: dock})
	})
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, input("SN-5"))
	lt.result()
	require.Equal(t, 2, at50h.RackReminders, "one nudge per day waited")
	require.Equal(t, stepapi.StepWaiting, at50h.Steps[0].Status)
}

// A location given at registration that the CMDB refuses by the time the
// lifecycle claims it (the units taken since, or a worker on another
// inventory that has no such site) waits for staff: a retry claims again.
func TestLifecycleRegisteredIntoRefusedUnitWaitsInAttention(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.FailNext(serverapi.RackServerName, wftest.NonRetryable(`inventory: invalid: unknown site "dc1"`, stepapi.ErrTypeInvalidPlacement))
	in := input("SN-6")
	in.Location = &dock
	var parked serverapi.ServerStatus
	var skip, retry *wftest.UpdateOutcome
	lt.at(time.Minute, func() {
		parked = lt.status()
		skip = lt.update(stepapi.UpdateSkip, serverapi.SkipInput{})
	})
	lt.at(2*time.Minute, func() { retry = lt.update(stepapi.UpdateRetry, serverapi.RetryInput{By: "ops"}) })
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()

	require.Equal(t, serverapi.StateAttention, parked.State)
	require.Equal(t, &stepapi.Attention{Step: serverapi.StepRack, Error: `inventory: invalid: unknown site "dc1"`}, parked.Attention)
	require.Equal(t, stepapi.StepFailed, parked.Steps[0].Status)
	require.ErrorContains(t, skip.Refused(), "cannot be skipped")
	require.NoError(t, retry.Refused())
	require.Equal(t, serverapi.StateInstalled, final.State)
	require.Equal(t, &dock, final.Location)
	require.Equal(t, stepapi.StepDone, final.Steps[0].Status)
	require.Len(t, lt.fake.Inputs[serverapi.RackServerName], 2, "the refused claim, then the retried one")
}

func TestLifecycleRegisteredIntoTakenUnitCanBeAborted(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.FailNext(serverapi.RackServerName, wftest.NonRetryable("occupied", stepapi.ErrTypeUnitOccupied))
	in := input("SN-6")
	in.Location = &dock
	var abort *wftest.UpdateOutcome
	lt.at(time.Minute, func() { abort = lt.update(stepapi.UpdateAbort, stepapi.AbortInput{Reason: "wrong rack", By: "ops"}) })
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.NoError(t, abort.Refused())
	require.Equal(t, serverapi.StateAborted, final.State)
	require.Len(t, lt.fake.Inputs[serverapi.RackServerName], 1)
	require.Empty(t, lt.fake.Inputs[serverapi.RegisterAssetName])
}

func TestLifecycleWrongCredentialParksThenRetryWithNewOne(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.FailNext(serverapi.InspectServerName, wftest.NonRetryable("BMC refused the credential: 401", stepapi.ErrTypeBMCAuth))
	in := input("SN-7")
	in.Location = &dock
	var parked serverapi.ServerStatus
	var skip, retry *wftest.UpdateOutcome
	lt.at(time.Minute, func() {
		parked = lt.status()
		skip = lt.update(stepapi.UpdateSkip, serverapi.SkipInput{})
	})
	lt.at(2*time.Minute, func() {
		retry = lt.update(stepapi.UpdateRetry, serverapi.RetryInput{BMC: &serverapi.BMCRef{CredentialRef: "cred-2"}, By: "ops"})
	})
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()

	require.Equal(t, serverapi.StateAttention, parked.State)
	require.Equal(t, &stepapi.Attention{Step: serverapi.StepInspect, Error: "BMC refused the credential: 401", Skippable: false}, parked.Attention)
	require.Equal(t, stepapi.StepFailed, parked.Steps[2].Status)
	require.ErrorContains(t, skip.Refused(), "cannot be skipped")
	require.NoError(t, retry.Refused())
	require.Equal(t, serverapi.StateInstalled, final.State)
	require.Nil(t, final.Attention)
	calls := lt.fake.Inputs[serverapi.InspectServerName]
	require.Len(t, calls, 2)
	second := calls[1].(serverapi.InspectServerInput)
	require.Equal(t, serverapi.BMCRef{Address: "https://127.0.0.1:9443", CredentialRef: "cred-2"}, second.BMC, "the corrected credential is used, the address kept")
	// Later steps use the corrected credential too.
	bios := lt.fake.Inputs[serverapi.ConfigureBIOSName][0].(serverapi.ConfigureBIOSInput)
	require.Equal(t, "cred-2", bios.BMC.CredentialRef)
	require.Equal(t, 1, bios.Generation)
}

func TestLifecycleInventoryMismatchRetryWithAnotherProfile(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.FailNext(serverapi.InspectServerName, wftest.NonRetryable(`hardware does not meet profile "big": 2 drives, profile needs 8`, stepapi.ErrTypeInventoryMismatch))
	in := input("SN-8")
	in.Location = &dock
	in.Profile = "big"
	lt.at(time.Minute, func() { lt.update(stepapi.UpdateRetry, serverapi.RetryInput{Profile: "small"}) })
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	require.Equal(t, serverapi.StateInstalled, lt.result().State)
	calls := lt.fake.Inputs[serverapi.InspectServerName]
	require.Equal(t, "big", calls[0].(serverapi.InspectServerInput).Profile)
	require.Equal(t, "small", calls[1].(serverapi.InspectServerInput).Profile)
}

func TestLifecycleSkipsASkippableStep(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.FailNext(serverapi.ConfigureBIOSName, wftest.NonRetryable("BMC does not support this: no Bios", stepapi.ErrTypeBMCUnsupported))
	in := input("SN-9")
	in.Location = &dock
	var parked serverapi.ServerStatus
	lt.at(time.Minute, func() {
		parked = lt.status()
		lt.update(stepapi.UpdateSkip, serverapi.SkipInput{By: "ops"})
	})
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.True(t, parked.Attention.Skippable)
	require.Equal(t, serverapi.StepConfigureBIOS, parked.Attention.Step)
	require.Equal(t, stepapi.StepSkipped, final.Steps[4].Status)
	require.Equal(t, stepapi.StepDone, final.Steps[5].Status)
	require.Equal(t, 1, lt.fake.Count(serverapi.ConfigureBIOSName))
}

// The status keeps the last read-back of BIOS and RAID: from the failure
// staff are asked about (its error details), then from the retry that
// worked. The current step's start moves with each step and retry.
func TestLifecycleKeepsTheBMCReports(t *testing.T) {
	lt := newLifecycleTest(t)
	notApplied := &serverapi.BIOSReport{Attributes: []serverapi.BIOSAttributeReport{{Name: "SRIOV", Desired: "Enabled", Actual: "Disabled"}}}
	lt.fake.FailNext(serverapi.ConfigureBIOSName, temporal.NewApplicationErrorWithOptions("BIOS settings still not applied after the reset: SRIOV",
		stepapi.ErrTypeBIOSNotApplied, temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{*notApplied}}))
	applied := &serverapi.BIOSReport{Attributes: []serverapi.BIOSAttributeReport{{Name: "SRIOV", Desired: "Enabled", Actual: "Enabled", Match: true}}}
	lt.fake.RAID = &serverapi.RAIDReport{Controller: "RAID.1", Volumes: []serverapi.RAIDVolumeReport{
		{Status: serverapi.RAIDMatch, Desired: &serverapi.RAIDVolume{Name: "metalflow-root", RAIDLevel: "RAID1"}, Actual: &serverapi.RAIDVolume{ID: "v1", RAIDLevel: "RAID1", SizeBytes: 1}},
	}}
	in := input("SN-10")
	in.Location = &dock
	var parked, retried serverapi.ServerStatus
	lt.at(time.Hour, func() {
		parked = lt.status()
		lt.fake.Mu.Lock()
		lt.fake.BIOS = applied
		lt.fake.Mu.Unlock()
		lt.update(stepapi.UpdateRetry, serverapi.RetryInput{By: "tech"})
	})
	lt.at(time.Hour+time.Second, func() { retried = lt.status() })
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()

	require.Equal(t, serverapi.StateAttention, parked.State)
	require.Equal(t, notApplied, parked.BIOS, "the failure's report")
	require.Nil(t, parked.RAID, "ConfigureRAID has not run")
	require.NotNil(t, parked.StepStartedAt)
	require.Equal(t, *parked.Steps[4].StartedAt, *parked.StepStartedAt, "in ConfigureBIOS since it started")
	require.NotNil(t, retried.StepStartedAt)
	require.True(t, retried.StepStartedAt.After(*parked.StepStartedAt), "a retry starts the step again")
	require.Equal(t, applied, final.BIOS)
	require.Equal(t, lt.fake.RAID, final.RAID)
	require.Equal(t, serverapi.StateInstalled, final.State)
}

func TestLifecycleInstallTimeoutsThenAttentionThenRetry(t *testing.T) {
	lt := newLifecycleTest(t)
	in := input("SN-10")
	in.Location = &dock
	lt.answerInstalls = map[int]bool{4: true}
	var parked serverapi.ServerStatus
	// Three attempts of 30 minutes pass without a call back.
	lt.at(95*time.Minute, func() {
		parked = lt.status()
		lt.phoneHome(3) // too late: the attempt is over
		lt.update(stepapi.UpdateRetry, serverapi.RetryInput{})
	})
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, serverapi.StateAttention, parked.State)
	require.Equal(t, serverapi.StepInstallOS, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, "did not phone home in 3 attempt(s)")
	require.Equal(t, []int{1, 2, 3, 4}, lt.fake.Attempts, "each attempt gets a new boot config and token")
	require.Equal(t, serverapi.StateInstalled, final.State)
	require.Equal(t, 4, final.InstallAttempt)
	require.Equal(t, 1, lt.fake.Count(serverapi.FinishInstallName))
}

func TestLifecycleIgnoresPhoneHomeOfAnotherAttempt(t *testing.T) {
	lt := newLifecycleTest(t)
	in := input("SN-11")
	in.Location = &dock
	lt.answerInstalls = map[int]bool{2: true}
	lt.at(5*time.Minute, func() { lt.phoneHome(7) })
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, 2, final.InstallAttempt, "attempt 1 timed out despite the stray call back")
}

func TestLifecycleAbortInAttentionCompensates(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.FailNext(serverapi.ConfigureRAIDName, wftest.NonRetryable("RAID1 needs 2 free drives, controller has 1", stepapi.ErrTypeRAIDImpossible))
	in := input("SN-12")
	in.Location = &dock
	var noReason *wftest.UpdateOutcome
	lt.at(time.Minute, func() { noReason = lt.update(stepapi.UpdateAbort, stepapi.AbortInput{}) })
	lt.at(2*time.Minute, func() {
		lt.update(stepapi.UpdateAbort, stepapi.AbortInput{Reason: "wrong chassis delivered", By: "ops"})
	})
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.ErrorContains(t, noReason.Refused(), "needs a reason")
	require.Equal(t, serverapi.StateAborted, final.State)
	require.Equal(t, 1, lt.fake.Count(serverapi.AbortServerName))
	ab := lt.fake.Inputs[serverapi.AbortServerName][0].(serverapi.AbortServerInput)
	require.Equal(t, serverapi.AbortServerInput{Serial: "SN-12", Reason: "wrong chassis delivered", Actor: "ops"}, ab)
	require.Zero(t, lt.fake.Count(serverapi.StartInstallName))
}

func TestLifecycleAbortWhileWaitingForRack(t *testing.T) {
	lt := newLifecycleTest(t)
	var retry *wftest.UpdateOutcome
	lt.at(time.Minute, func() { retry = lt.update(stepapi.UpdateRetry, serverapi.RetryInput{}) })
	lt.at(2*time.Minute, func() { lt.update(stepapi.UpdateAbort, stepapi.AbortInput{Reason: "order cancelled"}) })
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, input("SN-13"))
	final := lt.result()
	require.ErrorContains(t, retry.Refused(), "not waiting for attention")
	require.Equal(t, serverapi.StateAborted, final.State)
	require.Equal(t, []string{serverapi.AbortServerName}, lt.fake.Calls)
}

func TestLifecycleWithoutBMCAsksForOne(t *testing.T) {
	lt := newLifecycleTest(t)
	in := serverapi.ServerLifecycleInput{Serial: "SN-14", Location: &dock}
	var parked serverapi.ServerStatus
	lt.at(time.Minute, func() {
		parked = lt.status()
		lt.update(stepapi.UpdateRetry, serverapi.RetryInput{BMC: &serverapi.BMCRef{Address: "https://10.0.0.5", CredentialRef: "cred-9"}})
	})
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	require.Equal(t, serverapi.StateInstalled, lt.result().State)
	require.Equal(t, serverapi.StepInspect, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, "no BMC address and credential")
}

func TestLifecycleRefusesInvalidSerial(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, serverapi.ServerLifecycleInput{Serial: "has space"})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(lt.env.GetWorkflowError(), &ae))
	require.True(t, ae.NonRetryable())
	require.Equal(t, "InvalidInput", ae.Type())
}

func TestLifecycleRetryWithAnotherProfileStartsAgainFromInspection(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.FailNext(serverapi.ConfigureRAIDName, wftest.NonRetryable("RAID5 needs 3 free drives, controller has 2", stepapi.ErrTypeRAIDImpossible))
	in := input("SN-15")
	in.Location = &dock
	in.Profile = "raid5"
	lt.at(time.Minute, func() { lt.update(stepapi.UpdateRetry, serverapi.RetryInput{Profile: "default"}) })
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, serverapi.StateInstalled, final.State)
	require.Equal(t, []string{
		serverapi.RackServerName, serverapi.RegisterAssetName, serverapi.InspectServerName, serverapi.RegisterMonitoringName,
		serverapi.ConfigureBIOSName, serverapi.ConfigureRAIDName,
		serverapi.InspectServerName, serverapi.RegisterMonitoringName, serverapi.ConfigureBIOSName, serverapi.ConfigureRAIDName,
		serverapi.StartInstallName, serverapi.FinishInstallName, serverapi.RegisterCloudName,
	}, lt.fake.Calls)
	require.Equal(t, "default", lt.fake.Inputs[serverapi.InspectServerName][1].(serverapi.InspectServerInput).Profile)
	for _, s := range hardwareSteps(final) {
		require.Equal(t, stepapi.StepDone, s.Status, s.Name)
	}
}

// hardwareSteps are the steps up to and including InstallOS: everything
// but the cloud steps.
func hardwareSteps(st serverapi.ServerStatus) []stepapi.StepStatus {
	for i, s := range st.Steps {
		if s.Name == serverapi.StepInstallOS {
			return st.Steps[:i+1]
		}
	}
	return st.Steps
}

func stepNamed(t *testing.T, st serverapi.ServerStatus, name string) stepapi.StepStatus {
	t.Helper()
	for _, s := range st.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %s in %+v", name, st.Steps)
	return stepapi.StepStatus{}
}

// Without an Ironic the worker's RegisterCloud answers skipped: every cloud
// step says so in the status, none is faked as done, and the server ends
// installed rather than ready.
func TestLifecycleCloudStepsSkippedByConfig(t *testing.T) {
	lt := newLifecycleTest(t)
	in := input("SN-20")
	in.Location = &dock
	in.Tenant = "proj-a"
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, serverapi.StateInstalled, final.State)
	for _, name := range []string{serverapi.StepRegisterCloud, serverapi.StepJoinAggregate, serverapi.StepAssignTenant} {
		s := stepNamed(t, final, name)
		require.Equal(t, stepapi.StepSkipped, s.Status, name)
		require.NotNil(t, s.FinishedAt, name)
	}
	require.Equal(t, serverapi.NoteNoIronic, stepNamed(t, final, serverapi.StepRegisterCloud).Note)
	require.Contains(t, stepNamed(t, final, serverapi.StepAssignTenant).Note, "no Ironic node")
	require.Nil(t, final.Cloud)
	require.Equal(t, "proj-a", final.Tenant)
	require.Equal(t, 1, lt.fake.Count(serverapi.RegisterCloudName))
	require.Zero(t, lt.fake.Count(serverapi.JoinAggregateName))
	require.Zero(t, lt.fake.Count(serverapi.AssignTenantName))
}

// With Ironic: the node is registered from what inspection found, the
// tenant assigned, and the server is ready. A compute server does not join
// a Nova aggregate.
func TestLifecycleReadyWithIronic(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.Ironic = true
	lt.fake.Inspect.CPUs, lt.fake.Inspect.MemoryMiB, lt.fake.Inspect.LocalGB = 32, 262144, 960
	lt.fake.Inspect.CPUArch, lt.fake.Inspect.ResourceClass = "x86_64", "baremetal.gp"
	in := input("SN-21")
	in.Location = &dock
	in.Tenant = "proj-a"
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()

	require.Equal(t, serverapi.StateReady, final.State)
	for _, s := range final.Steps {
		switch s.Name {
		case serverapi.StepJoinAggregate, serverapi.StepJoinLoadBalancer: // checked below; no pools here
		default:
			require.Equal(t, stepapi.StepDone, s.Status, s.Name)
		}
	}
	require.Equal(t, stepapi.StepSkipped, stepNamed(t, final, serverapi.StepJoinLoadBalancer).Status)
	agg := stepNamed(t, final, serverapi.StepJoinAggregate)
	require.Equal(t, stepapi.StepSkipped, agg.Status)
	require.Contains(t, agg.Note, "only hypervisors")
	require.Equal(t, stepapi.StepDone, stepNamed(t, final, serverapi.StepAssignTenant).Status)
	require.Equal(t, &serverapi.CloudNode{NodeUUID: "node-SN-21", ProvisionState: "available", PowerState: "power off"}, final.Cloud)

	reg := lt.fake.Inputs[serverapi.RegisterCloudName][0].(serverapi.RegisterCloudInput)
	require.Equal(t, serverapi.RegisterCloudInput{
		Serial: "SN-21", BMC: serverapi.BMCRef{Address: "https://127.0.0.1:9443", CredentialRef: "cred-1"},
		CPUs: 32, MemoryMiB: 262144, LocalGB: 960, CPUArch: "x86_64", ResourceClass: "baremetal.gp",
		MACs: []string{"02:00:00:00:00:01"}, Site: "dc1", Room: "A", Rack: "R07", Actor: "lifecycle",
	}, reg, "the credential travels by reference; the failure domain is the rack")
	ten := lt.fake.Inputs[serverapi.AssignTenantName][0].(serverapi.AssignTenantInput)
	require.Equal(t, "proj-a", ten.Tenant)
	require.Zero(t, lt.fake.Count(serverapi.JoinAggregateName))
}

// A hypervisor joins its rack's aggregate under the name its installer
// reported; without Nova configured the worker says the step is skipped.
func TestLifecycleHypervisorJoinsAggregate(t *testing.T) {
	for _, nova := range []bool{true, false} {
		t.Run(fmt.Sprintf("nova=%v", nova), func(t *testing.T) {
			lt := newLifecycleTest(t)
			lt.fake.Ironic, lt.fake.Nova = true, nova
			lt.fake.Inspect.Role = "hypervisor"
			in := input("SN-22")
			in.Location = &dock
			lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
			final := lt.result()
			require.Equal(t, serverapi.StateReady, final.State, "no tenant: ready in the shared pool")
			join := lt.fake.Inputs[serverapi.JoinAggregateName][0].(serverapi.JoinAggregateInput)
			require.Equal(t, serverapi.JoinAggregateInput{Serial: "SN-22", Host: "host", Site: "dc1", Room: "A", Rack: "R07", Actor: "lifecycle"}, join)
			agg := stepNamed(t, final, serverapi.StepJoinAggregate)
			if nova {
				require.Equal(t, stepapi.StepDone, agg.Status)
				require.Equal(t, "host host in aggregate dc1-R07", agg.Note)
			} else {
				require.Equal(t, stepapi.StepSkipped, agg.Status)
				require.Equal(t, serverapi.NoteNoNova, agg.Note)
			}
			ten := stepNamed(t, final, serverapi.StepAssignTenant)
			require.Equal(t, stepapi.StepSkipped, ten.Status)
			require.Equal(t, serverapi.NoteNoTenant, ten.Note)
		})
	}
}

// Ironic's verdict on a failed manage parks the server with last_error; a
// retry after the BMC is fixed registers it and the server is ready.
func TestLifecycleIronicFailureParksThenRetryMakesReady(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.Ironic = true
	lastError := "manage SN-23: node ended in \"enroll\" instead of \"manageable\": last_error: Redfish connection failed for node"
	lt.fake.FailNext(serverapi.RegisterCloudName, wftest.NonRetryable(lastError, stepapi.ErrTypeCloudFailed))
	in := input("SN-23")
	in.Location = &dock
	in.Tenant = "proj-b"
	var parked serverapi.ServerStatus
	var retry *wftest.UpdateOutcome
	lt.at(time.Hour, func() {
		parked = lt.status()
		retry = lt.update(stepapi.UpdateRetry, serverapi.RetryInput{By: "ops"})
	})
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()

	require.Equal(t, serverapi.StateAttention, parked.State)
	require.Equal(t, &stepapi.Attention{Step: serverapi.StepRegisterCloud, Error: lastError, Skippable: true}, parked.Attention)
	require.Equal(t, stepapi.StepFailed, stepNamed(t, parked, serverapi.StepRegisterCloud).Status)
	require.Equal(t, stepapi.StepPending, stepNamed(t, parked, serverapi.StepAssignTenant).Status)
	require.NoError(t, retry.Refused())
	require.Equal(t, serverapi.StateReady, final.State)
	require.Equal(t, stepapi.StepDone, stepNamed(t, final, serverapi.StepRegisterCloud).Status)
	require.Equal(t, 2, lt.fake.Count(serverapi.RegisterCloudName))
	require.Equal(t, 1, lt.fake.Count(serverapi.AssignTenantName))
	require.Equal(t, 1, lt.fake.Count(serverapi.FinishInstallName), "the retry does not reinstall")
}

// Ironic down: Temporal retries the activity with backoff; the server never
// reaches attention and ends ready once Ironic answers.
func TestLifecycleTransientIronicErrorsAreRetried(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.Ironic = true
	down := temporal.NewApplicationError("get SN-24: dial tcp 127.0.0.1:6385: connect: connection refused", stepapi.ErrTypeCloudTransient)
	lt.fake.FailNext(serverapi.RegisterCloudName, down, down, down)
	in := input("SN-24")
	in.Location = &dock
	in.Tenant = "proj-c"
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, serverapi.StateReady, final.State)
	require.Equal(t, 4, lt.fake.Count(serverapi.RegisterCloudName))
	require.Nil(t, final.Attention)
}

// Staff may skip a cloud registration that cannot work (e.g. the cloud is
// not ready for this rack): the server stays installed, the later cloud
// steps say why they did nothing.
func TestLifecycleSkippedRegistrationEndsInstalled(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.Ironic = true
	lt.fake.FailNext(serverapi.RegisterCloudName, wftest.NonRetryable("enroll SN-25: add port 02:00:00:00:00:01: MAC already on another node", stepapi.ErrTypeCloudRejected))
	in := input("SN-25")
	in.Location = &dock
	// The install's installer phones home after five minutes.
	lt.at(time.Hour, func() { lt.update(stepapi.UpdateSkip, serverapi.SkipInput{By: "ops"}) })
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, serverapi.StateInstalled, final.State)
	reg := stepNamed(t, final, serverapi.StepRegisterCloud)
	require.Equal(t, stepapi.StepSkipped, reg.Status)
	require.Equal(t, "skipped by ops", reg.Note)
	require.Equal(t, noteRegistrationSkipped, stepNamed(t, final, serverapi.StepAssignTenant).Note)
	require.Zero(t, lt.fake.Count(serverapi.AssignTenantName))
}

func TestLifecycleRefusesInvalidTenant(t *testing.T) {
	lt := newLifecycleTest(t)
	in := input("SN-26")
	in.Tenant = "proj a"
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(lt.env.GetWorkflowError(), &ae))
	require.Equal(t, "InvalidInput", ae.Type())
}

// Ironic down for longer than the cloud activities' hour of retries: the
// server parks in attention with the last failure, and a retry once Ironic
// is back makes it ready.
func TestLifecycleIronicDownAnHourParksThenRetry(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.Ironic = true
	down := temporal.NewApplicationError("get SN-27: dial tcp 127.0.0.1:6385: connect: connection refused", stepapi.ErrTypeCloudTransient)
	for range 200 {
		lt.fake.FailNext(serverapi.RegisterCloudName, down)
	}
	in := input("SN-27")
	in.Location = &dock
	in.Tenant = "proj-d"
	var parked serverapi.ServerStatus
	lt.at(3*time.Hour, func() {
		parked = lt.status()
		lt.fake.Mu.Lock()
		lt.fake.Errs[serverapi.RegisterCloudName] = nil // Ironic is back
		lt.fake.Mu.Unlock()
		lt.update(stepapi.UpdateRetry, serverapi.RetryInput{})
	})
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, serverapi.StateAttention, parked.State)
	require.Equal(t, serverapi.StepRegisterCloud, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, "connection refused", "the last failure, not only the timeout")
	require.Greater(t, lt.fake.Count(serverapi.RegisterCloudName), 10, "retried with backoff before asking a human")
	require.Equal(t, serverapi.StateReady, final.State)
}

// What the BMC would not give, none of it needed by the profile, shows on
// the server's status with the hardware inspection found.
func TestLifecycleShowsTheInventoryWarnings(t *testing.T) {
	lt := newLifecycleTest(t)
	warn := []serverapi.InventoryWarning{{Path: "/redfish/v1/Systems/1/Storage/1/Drives/3", Error: "answered 404"}}
	lt.fake.Inspect.Warnings = warn
	in := input("SN-W")
	in.Location = &dock
	lt.env.ExecuteWorkflow(serverapi.ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, serverapi.StateInstalled, final.State)
	require.Equal(t, warn, final.Hardware.Warnings)
}
