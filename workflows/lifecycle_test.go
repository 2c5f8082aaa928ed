package workflows

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
	"github.com/metalflow/metalflow/workflows/stepapi"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/converter"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
)

// fakeProvisioning stands in for the activities: it records every call and
// answers with programmed errors, so each branch of the step machine can be
// driven without hardware. (The real activities are tested against the BMC
// simulator and the real Temporal server in other packages.)
type fakeProvisioning struct {
	mu       sync.Mutex
	calls    []string
	errs     map[string][]error
	inspect  serverapi.InspectServerResult
	inputs   map[string][]any
	attempts []int
	// ironic and nova say what the stand-in worker has configured; without
	// them the cloud steps answer skipped, as the real activities do.
	ironic, nova bool
	// bios and raid are what ConfigureBIOS / ConfigureRAID report read back.
	bios *serverapi.BIOSReport
	raid *serverapi.RAIDReport
}

func newFake() *fakeProvisioning {
	return &fakeProvisioning{
		errs:   map[string][]error{},
		inputs: map[string][]any{},
		inspect: serverapi.InspectServerResult{
			Vendor: "Dell Inc.", Model: "PowerEdge R650", MACs: []string{"02:00:00:00:00:01"}, Profile: "default", Role: "compute",
			InstallTimeout: 30 * time.Minute, InstallAttempts: 3,
		},
	}
}

// failNext makes the next calls of an activity fail with errs, in order.
func (f *fakeProvisioning) failNext(name string, errs ...error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errs[name] = append(f.errs[name], errs...)
}

func (f *fakeProvisioning) record(name string, in any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, name)
	f.inputs[name] = append(f.inputs[name], in)
	if q := f.errs[name]; len(q) > 0 {
		f.errs[name] = q[1:]
		return q[0]
	}
	return nil
}

func (f *fakeProvisioning) count(name string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.calls {
		if c == name {
			n++
		}
	}
	return n
}

func (f *fakeProvisioning) register(env *testsuite.TestWorkflowEnvironment) {
	reg := func(name string, fn any) { env.RegisterActivityWithOptions(fn, activity.RegisterOptions{Name: name}) }
	reg(serverapi.RackServerName, func(_ context.Context, in serverapi.RackServerInput) error {
		return f.record(serverapi.RackServerName, in)
	})
	reg(serverapi.RegisterAssetName, func(_ context.Context, in serverapi.RegisterAssetInput) error {
		return f.record(serverapi.RegisterAssetName, in)
	})
	reg(serverapi.InspectServerName, func(_ context.Context, in serverapi.InspectServerInput) (serverapi.InspectServerResult, error) {
		return f.inspect, f.record(serverapi.InspectServerName, in)
	})
	reg(serverapi.RegisterMonitoringName, func(_ context.Context, in serverapi.RegisterMonitoringInput) error {
		return f.record(serverapi.RegisterMonitoringName, in)
	})
	reg(serverapi.ConfigureBIOSName, func(_ context.Context, in serverapi.ConfigureBIOSInput) (serverapi.ConfigureBIOSResult, error) {
		err := f.record(serverapi.ConfigureBIOSName, in)
		f.mu.Lock()
		defer f.mu.Unlock()
		return serverapi.ConfigureBIOSResult{Report: f.bios}, err
	})
	reg(serverapi.ConfigureRAIDName, func(_ context.Context, in serverapi.ConfigureRAIDInput) (serverapi.ConfigureRAIDResult, error) {
		err := f.record(serverapi.ConfigureRAIDName, in)
		f.mu.Lock()
		defer f.mu.Unlock()
		return serverapi.ConfigureRAIDResult{Report: f.raid}, err
	})
	reg(serverapi.StartInstallName, func(_ context.Context, in serverapi.StartInstallInput) error {
		f.mu.Lock()
		f.attempts = append(f.attempts, in.Attempt)
		f.mu.Unlock()
		return f.record(serverapi.StartInstallName, in)
	})
	reg(serverapi.FinishInstallName, func(_ context.Context, in serverapi.FinishInstallInput) error {
		return f.record(serverapi.FinishInstallName, in)
	})
	reg(serverapi.AbortServerName, func(_ context.Context, in serverapi.AbortServerInput) error {
		return f.record(serverapi.AbortServerName, in)
	})
	reg(serverapi.CancelServerName, func(_ context.Context, in serverapi.CancelServerInput) error {
		return f.record(serverapi.CancelServerName, in)
	})
	reg(serverapi.JoinLoadBalancerName, func(_ context.Context, in serverapi.LoadBalancerMembershipInput) error {
		return f.record(serverapi.JoinLoadBalancerName, in)
	})
	reg(serverapi.RegisterCloudName, func(_ context.Context, in serverapi.RegisterCloudInput) (serverapi.CloudStepResult, error) {
		if err := f.record(serverapi.RegisterCloudName, in); err != nil || !f.ironic {
			return serverapi.CloudStepResult{Skipped: !f.ironic, Note: serverapi.NoteNoIronic}, err
		}
		return serverapi.CloudStepResult{NodeUUID: "node-" + in.Serial, ProvisionState: "available", PowerState: "power off"}, nil
	})
	reg(serverapi.JoinAggregateName, func(_ context.Context, in serverapi.JoinAggregateInput) (serverapi.CloudStepResult, error) {
		if err := f.record(serverapi.JoinAggregateName, in); err != nil || !f.nova {
			return serverapi.CloudStepResult{Skipped: !f.nova, Note: serverapi.NoteNoNova}, err
		}
		return serverapi.CloudStepResult{Note: "host " + in.Host + " in aggregate " + in.Site + "-" + in.Rack}, nil
	})
	reg(serverapi.AssignTenantName, func(_ context.Context, in serverapi.AssignTenantInput) (serverapi.CloudStepResult, error) {
		if err := f.record(serverapi.AssignTenantName, in); err != nil || !f.ironic {
			return serverapi.CloudStepResult{Skipped: !f.ironic, Note: serverapi.NoteNoIronic}, err
		}
		if in.Tenant == "" {
			return serverapi.CloudStepResult{Skipped: true, Note: serverapi.NoteNoTenant}, nil
		}
		return serverapi.CloudStepResult{NodeUUID: "node-" + in.Serial, ProvisionState: "available", PowerState: "power off"}, nil
	})
}

type lifecycleTest struct {
	t    *testing.T
	env  *testsuite.TestWorkflowEnvironment
	fake *fakeProvisioning
	// answerInstalls makes the installer of each attempt in it phone home
	// five minutes after the attempt starts, as a real one would.
	answerInstalls map[int]bool
	updates        int
}

func newLifecycleTest(t *testing.T) *lifecycleTest {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.RegisterWorkflowWithOptions(ServerLifecycle, workflowOptions(ServerLifecycleName))
	f := newFake()
	f.register(env)
	lt := &lifecycleTest{t: t, env: env, fake: f, answerInstalls: map[int]bool{1: true}}
	env.SetOnActivityCompletedListener(func(info *activity.Info, result converter.EncodedValue, err error) {
		if info.ActivityType.Name != serverapi.StartInstallName || err != nil {
			return
		}
		f.mu.Lock()
		attempt := f.attempts[len(f.attempts)-1]
		f.mu.Unlock()
		if lt.answerInstalls[attempt] {
			env.RegisterDelayedCallback(func() { lt.phoneHome(attempt) }, 5*time.Minute)
		}
	})
	return lt
}

// at runs fn at workflow time d.
func (lt *lifecycleTest) at(d time.Duration, fn func()) { lt.env.RegisterDelayedCallback(fn, d) }

func (lt *lifecycleTest) update(name string, arg any) *updateOutcome {
	o := &updateOutcome{}
	lt.updates++
	// Update IDs deduplicate: each call needs its own.
	lt.env.UpdateWorkflow(name, fmt.Sprintf("%s-%d", name, lt.updates), o.callbacks(), arg)
	return o
}

func (lt *lifecycleTest) status() ServerStatus {
	lt.t.Helper()
	v, err := lt.env.QueryWorkflow(QueryStatus)
	require.NoError(lt.t, err)
	var st ServerStatus
	require.NoError(lt.t, v.Get(&st))
	return st
}

func (lt *lifecycleTest) phoneHome(attempt int) {
	lt.env.SignalWorkflow(SignalPhoneHome, PhoneHome{Attempt: attempt, Hostname: "host"})
}

func (lt *lifecycleTest) result() ServerStatus {
	lt.t.Helper()
	require.True(lt.t, lt.env.IsWorkflowCompleted())
	require.NoError(lt.t, lt.env.GetWorkflowError())
	var st ServerStatus
	require.NoError(lt.t, lt.env.GetWorkflowResult(&st))
	return st
}

type updateOutcome struct {
	rejected error
	err      error
	value    any
	done     bool
}

func (o *updateOutcome) callbacks() *testsuite.TestUpdateCallback {
	return &testsuite.TestUpdateCallback{
		OnReject:   func(err error) { o.rejected = err; o.done = true },
		OnAccept:   func() {},
		OnComplete: func(v interface{}, err error) { o.done, o.err, o.value = true, err, v },
	}
}

// refused is the update's refusal, from the validator or the handler.
func (o *updateOutcome) refused() error {
	if o.rejected != nil {
		return o.rejected
	}
	return o.err
}

var dock = Location{Site: "dc1", Room: "A", Rack: "R07", Unit: 12, Face: FaceFront}

func input(serial string) ServerLifecycleInput {
	return ServerLifecycleInput{Serial: serial, BMC: &serverapi.BMCRef{Address: "https://127.0.0.1:9443", CredentialRef: "cred-1"}}
}

func appErr(msg, typ string) error { return temporal.NewNonRetryableApplicationError(msg, typ, nil) }

func TestLifecycleFromDockToInstalled(t *testing.T) {
	lt := newLifecycleTest(t)
	var before ServerStatus
	var bad, good *updateOutcome
	lt.at(time.Hour, func() {
		before = lt.status()
		bad = lt.update(UpdateRacked, RackedInput{Location: Location{Site: "dc1", Rack: "R07", Unit: 0, Face: "side"}})
	})
	lt.at(2*time.Hour, func() { good = lt.update(UpdateRacked, RackedInput{Location: dock, By: "tech-7"}) })
	var installing ServerStatus
	lt.at(2*time.Hour+time.Minute, func() { installing = lt.status() })
	lt.env.ExecuteWorkflow(ServerLifecycleName, input("SN-0001"))
	final := lt.result()

	require.Equal(t, StateWaitingRack, before.State)
	require.Equal(t, StepWaiting, before.Steps[0].Status)
	require.Error(t, bad.rejected)
	require.Contains(t, bad.rejected.Error(), "unit must be 1 or more")
	require.NoError(t, good.refused())

	require.Equal(t, StepInstallOS, installing.Step)
	require.Equal(t, 1, installing.InstallAttempt)
	require.Equal(t, StateInstalled, final.State, "no Ironic configured: installed, not ready")
	require.Equal(t, &dock, final.Location)
	for _, s := range hardwareSteps(final) {
		require.Equal(t, StepDone, s.Status, s.Name)
		require.NotNil(t, s.FinishedAt, s.Name)
	}
	require.Equal(t, &Hardware{Vendor: "Dell Inc.", Model: "PowerEdge R650", Profile: "default", Role: "compute", MACs: []string{"02:00:00:00:00:01"}}, final.Hardware)
	require.Equal(t, []string{
		serverapi.RackServerName, serverapi.RegisterAssetName, serverapi.InspectServerName, serverapi.RegisterMonitoringName,
		serverapi.ConfigureBIOSName, serverapi.ConfigureRAIDName, serverapi.StartInstallName, serverapi.FinishInstallName,
		serverapi.RegisterCloudName,
	}, lt.fake.calls)
	rack := lt.fake.inputs[serverapi.RackServerName][0].(serverapi.RackServerInput)
	require.Equal(t, "tech-7", rack.Actor)
	// The BMC travels by reference: only the credential's name is in history.
	insp := lt.fake.inputs[serverapi.InspectServerName][0].(serverapi.InspectServerInput)
	require.Equal(t, "cred-1", insp.BMC.CredentialRef)
	mon := lt.fake.inputs[serverapi.RegisterMonitoringName][0].(serverapi.RegisterMonitoringInput)
	require.Equal(t, serverapi.RegisterMonitoringInput{Serial: "SN-0001", BMCAddress: "https://127.0.0.1:9443", Site: "dc1", Rack: "R07", Role: "compute"}, mon)
	inst := lt.fake.inputs[serverapi.StartInstallName][0].(serverapi.StartInstallInput)
	require.Equal(t, []string{"02:00:00:00:00:01"}, inst.MACs)
	require.Equal(t, 35*time.Minute, inst.TTL)
}

func TestLifecycleOccupiedUnitRefusesUpdateAndKeepsWaiting(t *testing.T) {
	lt := newLifecycleTest(t)
	taken := Location{Site: "dc1", Rack: "R01", Unit: 5, Face: FaceFront}
	free := Location{Site: "dc1", Rack: "R01", Unit: 6, Face: FaceFront}
	lt.fake.failNext(serverapi.RackServerName, appErr("rack unit occupied: unit 5 of rack dc1/R01 holds server SN-9", stepapi.ErrTypeUnitOccupied))
	var first, second *updateOutcome
	var between ServerStatus
	lt.at(time.Minute, func() { first = lt.update(UpdateRacked, RackedInput{Location: taken}) })
	lt.at(2*time.Minute, func() {
		between = lt.status()
		second = lt.update(UpdateRacked, RackedInput{Location: free})
	})
	lt.env.ExecuteWorkflow(ServerLifecycleName, input("SN-4"))
	final := lt.result()

	require.NoError(t, first.rejected, "the validator cannot know the unit is taken")
	var ae *temporal.ApplicationError
	require.True(t, errors.As(first.err, &ae), "got %v", first.err)
	require.Equal(t, stepapi.ErrTypeUnitOccupied, ae.Type())
	require.Contains(t, ae.Message(), "holds server SN-9")
	require.Equal(t, StateWaitingRack, between.State, "a refused update changes nothing")
	require.Nil(t, between.Location)
	require.NoError(t, second.refused())
	require.Equal(t, &free, final.Location)
}

func TestLifecycleRefusesSecondRacked(t *testing.T) {
	first := Location{Site: "dc1", Rack: "R01", Unit: 3, Face: FaceFront}
	l := newLifecycle(ServerLifecycleInput{Serial: "SN-3", Location: &first})
	err := l.validateRacked(RackedInput{Location: Location{Site: "dc1", Rack: "R02", Unit: 4, Face: FaceFront}})
	require.ErrorContains(t, err, "already racked at dc1/R01 U3")
}

func TestLifecycleRemindsDailyWhileUnracked(t *testing.T) {
	lt := newLifecycleTest(t)
	var at50h ServerStatus
	lt.at(50*time.Hour, func() {
		at50h = lt.status()
		lt.update(UpdateRacked, RackedInput{Location: dock})
	})
	lt.env.ExecuteWorkflow(ServerLifecycleName, input("SN-5"))
	lt.result()
	require.Equal(t, 2, at50h.RackReminders, "one nudge per day waited")
	require.Equal(t, StepWaiting, at50h.Steps[0].Status)
}

func TestLifecycleRegisteredIntoTakenUnitFails(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.failNext(serverapi.RackServerName, appErr("occupied", stepapi.ErrTypeUnitOccupied))
	in := input("SN-6")
	in.Location = &dock
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	require.ErrorContains(t, lt.env.GetWorkflowError(), "occupied")
}

func TestLifecycleWrongCredentialParksThenRetryWithNewOne(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.failNext(serverapi.InspectServerName, appErr("BMC refused the credential: 401", stepapi.ErrTypeBMCAuth))
	in := input("SN-7")
	in.Location = &dock
	var parked ServerStatus
	var skip, retry *updateOutcome
	lt.at(time.Minute, func() {
		parked = lt.status()
		skip = lt.update(UpdateSkip, SkipInput{})
	})
	lt.at(2*time.Minute, func() {
		retry = lt.update(UpdateRetry, RetryInput{BMC: &serverapi.BMCRef{CredentialRef: "cred-2"}, By: "ops"})
	})
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	final := lt.result()

	require.Equal(t, StateAttention, parked.State)
	require.Equal(t, &Attention{Step: StepInspect, Error: "BMC refused the credential: 401", Skippable: false}, parked.Attention)
	require.Equal(t, StepFailed, parked.Steps[2].Status)
	require.ErrorContains(t, skip.refused(), "cannot be skipped")
	require.NoError(t, retry.refused())
	require.Equal(t, StateInstalled, final.State)
	require.Nil(t, final.Attention)
	calls := lt.fake.inputs[serverapi.InspectServerName]
	require.Len(t, calls, 2)
	second := calls[1].(serverapi.InspectServerInput)
	require.Equal(t, serverapi.BMCRef{Address: "https://127.0.0.1:9443", CredentialRef: "cred-2"}, second.BMC, "the corrected credential is used, the address kept")
	// Later steps use the corrected credential too.
	bios := lt.fake.inputs[serverapi.ConfigureBIOSName][0].(serverapi.ConfigureBIOSInput)
	require.Equal(t, "cred-2", bios.BMC.CredentialRef)
	require.Equal(t, 1, bios.Generation)
}

func TestLifecycleInventoryMismatchRetryWithAnotherProfile(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.failNext(serverapi.InspectServerName, appErr(`hardware does not meet profile "big": 2 drives, profile needs 8`, stepapi.ErrTypeInventoryMismatch))
	in := input("SN-8")
	in.Location = &dock
	in.Profile = "big"
	lt.at(time.Minute, func() { lt.update(UpdateRetry, RetryInput{Profile: "small"}) })
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	require.Equal(t, StateInstalled, lt.result().State)
	calls := lt.fake.inputs[serverapi.InspectServerName]
	require.Equal(t, "big", calls[0].(serverapi.InspectServerInput).Profile)
	require.Equal(t, "small", calls[1].(serverapi.InspectServerInput).Profile)
}

func TestLifecycleSkipsASkippableStep(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.failNext(serverapi.ConfigureBIOSName, appErr("BMC does not support this: no Bios", stepapi.ErrTypeBMCUnsupported))
	in := input("SN-9")
	in.Location = &dock
	var parked ServerStatus
	lt.at(time.Minute, func() {
		parked = lt.status()
		lt.update(UpdateSkip, SkipInput{By: "ops"})
	})
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	final := lt.result()
	require.True(t, parked.Attention.Skippable)
	require.Equal(t, StepConfigureBIOS, parked.Attention.Step)
	require.Equal(t, StepSkipped, final.Steps[4].Status)
	require.Equal(t, StepDone, final.Steps[5].Status)
	require.Equal(t, 1, lt.fake.count(serverapi.ConfigureBIOSName))
}

// The status keeps the last read-back of BIOS and RAID: from the failure
// staff are asked about (its error details), then from the retry that
// worked. The current step's start moves with each step and retry.
func TestLifecycleKeepsTheBMCReports(t *testing.T) {
	lt := newLifecycleTest(t)
	notApplied := &serverapi.BIOSReport{Attributes: []serverapi.BIOSAttributeReport{{Name: "SRIOV", Desired: "Enabled", Actual: "Disabled"}}}
	lt.fake.failNext(serverapi.ConfigureBIOSName, temporal.NewApplicationErrorWithOptions("BIOS settings still not applied after the reset: SRIOV",
		stepapi.ErrTypeBIOSNotApplied, temporal.ApplicationErrorOptions{NonRetryable: true, Details: []any{*notApplied}}))
	applied := &serverapi.BIOSReport{Attributes: []serverapi.BIOSAttributeReport{{Name: "SRIOV", Desired: "Enabled", Actual: "Enabled", Match: true}}}
	lt.fake.raid = &serverapi.RAIDReport{Controller: "RAID.1", Volumes: []serverapi.RAIDVolumeReport{
		{Status: serverapi.RAIDMatch, Desired: &serverapi.RAIDVolume{Name: "metalflow-root", RAIDLevel: "RAID1"}, Actual: &serverapi.RAIDVolume{ID: "v1", RAIDLevel: "RAID1", SizeBytes: 1}},
	}}
	in := input("SN-10")
	in.Location = &dock
	var parked, retried ServerStatus
	lt.at(time.Hour, func() {
		parked = lt.status()
		lt.fake.mu.Lock()
		lt.fake.bios = applied
		lt.fake.mu.Unlock()
		lt.update(UpdateRetry, RetryInput{By: "tech"})
	})
	lt.at(time.Hour+time.Second, func() { retried = lt.status() })
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	final := lt.result()

	require.Equal(t, StateAttention, parked.State)
	require.Equal(t, notApplied, parked.BIOS, "the failure's report")
	require.Nil(t, parked.RAID, "ConfigureRAID has not run")
	require.NotNil(t, parked.StepStartedAt)
	require.Equal(t, *parked.Steps[4].StartedAt, *parked.StepStartedAt, "in ConfigureBIOS since it started")
	require.NotNil(t, retried.StepStartedAt)
	require.True(t, retried.StepStartedAt.After(*parked.StepStartedAt), "a retry starts the step again")
	require.Equal(t, applied, final.BIOS)
	require.Equal(t, lt.fake.raid, final.RAID)
	require.Equal(t, StateInstalled, final.State)
}

func TestLifecycleInstallTimeoutsThenAttentionThenRetry(t *testing.T) {
	lt := newLifecycleTest(t)
	in := input("SN-10")
	in.Location = &dock
	lt.answerInstalls = map[int]bool{4: true}
	var parked ServerStatus
	// Three attempts of 30 minutes pass without a call back.
	lt.at(95*time.Minute, func() {
		parked = lt.status()
		lt.phoneHome(3) // too late: the attempt is over
		lt.update(UpdateRetry, RetryInput{})
	})
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, StateAttention, parked.State)
	require.Equal(t, StepInstallOS, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, "did not phone home in 3 attempt(s)")
	require.Equal(t, []int{1, 2, 3, 4}, lt.fake.attempts, "each attempt gets a new boot config and token")
	require.Equal(t, StateInstalled, final.State)
	require.Equal(t, 4, final.InstallAttempt)
	require.Equal(t, 1, lt.fake.count(serverapi.FinishInstallName))
}

func TestLifecycleIgnoresPhoneHomeOfAnotherAttempt(t *testing.T) {
	lt := newLifecycleTest(t)
	in := input("SN-11")
	in.Location = &dock
	lt.answerInstalls = map[int]bool{2: true}
	lt.at(5*time.Minute, func() { lt.phoneHome(7) })
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, 2, final.InstallAttempt, "attempt 1 timed out despite the stray call back")
}

func TestLifecycleAbortInAttentionCompensates(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.failNext(serverapi.ConfigureRAIDName, appErr("RAID1 needs 2 free drives, controller has 1", stepapi.ErrTypeRAIDImpossible))
	in := input("SN-12")
	in.Location = &dock
	var noReason *updateOutcome
	lt.at(time.Minute, func() { noReason = lt.update(UpdateAbort, AbortInput{}) })
	lt.at(2*time.Minute, func() { lt.update(UpdateAbort, AbortInput{Reason: "wrong chassis delivered", By: "ops"}) })
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	final := lt.result()
	require.ErrorContains(t, noReason.refused(), "needs a reason")
	require.Equal(t, StateAborted, final.State)
	require.Equal(t, 1, lt.fake.count(serverapi.AbortServerName))
	ab := lt.fake.inputs[serverapi.AbortServerName][0].(serverapi.AbortServerInput)
	require.Equal(t, serverapi.AbortServerInput{Serial: "SN-12", Reason: "wrong chassis delivered", Actor: "ops"}, ab)
	require.Zero(t, lt.fake.count(serverapi.StartInstallName))
}

func TestLifecycleAbortWhileWaitingForRack(t *testing.T) {
	lt := newLifecycleTest(t)
	var retry *updateOutcome
	lt.at(time.Minute, func() { retry = lt.update(UpdateRetry, RetryInput{}) })
	lt.at(2*time.Minute, func() { lt.update(UpdateAbort, AbortInput{Reason: "order cancelled"}) })
	lt.env.ExecuteWorkflow(ServerLifecycleName, input("SN-13"))
	final := lt.result()
	require.ErrorContains(t, retry.refused(), "not waiting for attention")
	require.Equal(t, StateAborted, final.State)
	require.Equal(t, []string{serverapi.AbortServerName}, lt.fake.calls)
}

func TestLifecycleWithoutBMCAsksForOne(t *testing.T) {
	lt := newLifecycleTest(t)
	in := ServerLifecycleInput{Serial: "SN-14", Location: &dock}
	var parked ServerStatus
	lt.at(time.Minute, func() {
		parked = lt.status()
		lt.update(UpdateRetry, RetryInput{BMC: &serverapi.BMCRef{Address: "https://10.0.0.5", CredentialRef: "cred-9"}})
	})
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	require.Equal(t, StateInstalled, lt.result().State)
	require.Equal(t, StepInspect, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, "no BMC address and credential")
}

func TestLifecycleRefusesInvalidSerial(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.env.ExecuteWorkflow(ServerLifecycleName, ServerLifecycleInput{Serial: "has space"})
	var ae *temporal.ApplicationError
	require.True(t, errors.As(lt.env.GetWorkflowError(), &ae))
	require.True(t, ae.NonRetryable())
	require.Equal(t, "InvalidInput", ae.Type())
}

func TestLifecycleRetryWithAnotherProfileStartsAgainFromInspection(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.failNext(serverapi.ConfigureRAIDName, appErr("RAID5 needs 3 free drives, controller has 2", stepapi.ErrTypeRAIDImpossible))
	in := input("SN-15")
	in.Location = &dock
	in.Profile = "raid5"
	lt.at(time.Minute, func() { lt.update(UpdateRetry, RetryInput{Profile: "default"}) })
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, StateInstalled, final.State)
	require.Equal(t, []string{
		serverapi.RackServerName, serverapi.RegisterAssetName, serverapi.InspectServerName, serverapi.RegisterMonitoringName,
		serverapi.ConfigureBIOSName, serverapi.ConfigureRAIDName,
		serverapi.InspectServerName, serverapi.RegisterMonitoringName, serverapi.ConfigureBIOSName, serverapi.ConfigureRAIDName,
		serverapi.StartInstallName, serverapi.FinishInstallName, serverapi.RegisterCloudName,
	}, lt.fake.calls)
	require.Equal(t, "default", lt.fake.inputs[serverapi.InspectServerName][1].(serverapi.InspectServerInput).Profile)
	for _, s := range hardwareSteps(final) {
		require.Equal(t, StepDone, s.Status, s.Name)
	}
}

// hardwareSteps are the steps up to and including InstallOS: everything
// but the cloud steps.
func hardwareSteps(st ServerStatus) []StepStatus {
	for i, s := range st.Steps {
		if s.Name == StepInstallOS {
			return st.Steps[:i+1]
		}
	}
	return st.Steps
}

func stepNamed(t *testing.T, st ServerStatus, name string) StepStatus {
	t.Helper()
	for _, s := range st.Steps {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no step %s in %+v", name, st.Steps)
	return StepStatus{}
}

// Without an Ironic the worker's RegisterCloud answers skipped: every cloud
// step says so in the status, none is faked as done, and the server ends
// installed rather than ready.
func TestLifecycleCloudStepsSkippedByConfig(t *testing.T) {
	lt := newLifecycleTest(t)
	in := input("SN-20")
	in.Location = &dock
	in.Tenant = "proj-a"
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, StateInstalled, final.State)
	for _, name := range []string{StepRegisterCloud, StepJoinAggregate, StepAssignTenant} {
		s := stepNamed(t, final, name)
		require.Equal(t, StepSkipped, s.Status, name)
		require.NotNil(t, s.FinishedAt, name)
	}
	require.Equal(t, serverapi.NoteNoIronic, stepNamed(t, final, StepRegisterCloud).Note)
	require.Contains(t, stepNamed(t, final, StepAssignTenant).Note, "no Ironic node")
	require.Nil(t, final.Cloud)
	require.Equal(t, "proj-a", final.Tenant)
	require.Equal(t, 1, lt.fake.count(serverapi.RegisterCloudName))
	require.Zero(t, lt.fake.count(serverapi.JoinAggregateName))
	require.Zero(t, lt.fake.count(serverapi.AssignTenantName))
}

// With Ironic: the node is registered from what inspection found, the
// tenant assigned, and the server is ready. A compute server does not join
// a Nova aggregate.
func TestLifecycleReadyWithIronic(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.ironic = true
	lt.fake.inspect.CPUs, lt.fake.inspect.MemoryMiB, lt.fake.inspect.LocalGB = 32, 262144, 960
	lt.fake.inspect.CPUArch, lt.fake.inspect.ResourceClass = "x86_64", "baremetal.gp"
	in := input("SN-21")
	in.Location = &dock
	in.Tenant = "proj-a"
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	final := lt.result()

	require.Equal(t, StateReady, final.State)
	for _, s := range final.Steps {
		switch s.Name {
		case StepJoinAggregate, StepJoinLoadBalancer: // checked below; no pools here
		default:
			require.Equal(t, StepDone, s.Status, s.Name)
		}
	}
	require.Equal(t, StepSkipped, stepNamed(t, final, StepJoinLoadBalancer).Status)
	agg := stepNamed(t, final, StepJoinAggregate)
	require.Equal(t, StepSkipped, agg.Status)
	require.Contains(t, agg.Note, "only hypervisors")
	require.Equal(t, StepDone, stepNamed(t, final, StepAssignTenant).Status)
	require.Equal(t, &CloudNode{NodeUUID: "node-SN-21", ProvisionState: "available", PowerState: "power off"}, final.Cloud)

	reg := lt.fake.inputs[serverapi.RegisterCloudName][0].(serverapi.RegisterCloudInput)
	require.Equal(t, serverapi.RegisterCloudInput{
		Serial: "SN-21", BMC: serverapi.BMCRef{Address: "https://127.0.0.1:9443", CredentialRef: "cred-1"},
		CPUs: 32, MemoryMiB: 262144, LocalGB: 960, CPUArch: "x86_64", ResourceClass: "baremetal.gp",
		MACs: []string{"02:00:00:00:00:01"}, Site: "dc1", Room: "A", Rack: "R07", Actor: "lifecycle",
	}, reg, "the credential travels by reference; the failure domain is the rack")
	ten := lt.fake.inputs[serverapi.AssignTenantName][0].(serverapi.AssignTenantInput)
	require.Equal(t, "proj-a", ten.Tenant)
	require.Zero(t, lt.fake.count(serverapi.JoinAggregateName))
}

// A hypervisor joins its rack's aggregate under the name its installer
// reported; without Nova configured the worker says the step is skipped.
func TestLifecycleHypervisorJoinsAggregate(t *testing.T) {
	for _, nova := range []bool{true, false} {
		t.Run(fmt.Sprintf("nova=%v", nova), func(t *testing.T) {
			lt := newLifecycleTest(t)
			lt.fake.ironic, lt.fake.nova = true, nova
			lt.fake.inspect.Role = "hypervisor"
			in := input("SN-22")
			in.Location = &dock
			lt.env.ExecuteWorkflow(ServerLifecycleName, in)
			final := lt.result()
			require.Equal(t, StateReady, final.State, "no tenant: ready in the shared pool")
			join := lt.fake.inputs[serverapi.JoinAggregateName][0].(serverapi.JoinAggregateInput)
			require.Equal(t, serverapi.JoinAggregateInput{Serial: "SN-22", Host: "host", Site: "dc1", Room: "A", Rack: "R07", Actor: "lifecycle"}, join)
			agg := stepNamed(t, final, StepJoinAggregate)
			if nova {
				require.Equal(t, StepDone, agg.Status)
				require.Equal(t, "host host in aggregate dc1-R07", agg.Note)
			} else {
				require.Equal(t, StepSkipped, agg.Status)
				require.Equal(t, serverapi.NoteNoNova, agg.Note)
			}
			ten := stepNamed(t, final, StepAssignTenant)
			require.Equal(t, StepSkipped, ten.Status)
			require.Equal(t, serverapi.NoteNoTenant, ten.Note)
		})
	}
}

// Ironic's verdict on a failed manage parks the server with last_error; a
// retry after the BMC is fixed registers it and the server is ready.
func TestLifecycleIronicFailureParksThenRetryMakesReady(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.ironic = true
	lastError := "manage SN-23: node ended in \"enroll\" instead of \"manageable\": last_error: Redfish connection failed for node"
	lt.fake.failNext(serverapi.RegisterCloudName, appErr(lastError, stepapi.ErrTypeCloudFailed))
	in := input("SN-23")
	in.Location = &dock
	in.Tenant = "proj-b"
	var parked ServerStatus
	var retry *updateOutcome
	lt.at(time.Hour, func() {
		parked = lt.status()
		retry = lt.update(UpdateRetry, RetryInput{By: "ops"})
	})
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	final := lt.result()

	require.Equal(t, StateAttention, parked.State)
	require.Equal(t, &Attention{Step: StepRegisterCloud, Error: lastError, Skippable: true}, parked.Attention)
	require.Equal(t, StepFailed, stepNamed(t, parked, StepRegisterCloud).Status)
	require.Equal(t, StepPending, stepNamed(t, parked, StepAssignTenant).Status)
	require.NoError(t, retry.refused())
	require.Equal(t, StateReady, final.State)
	require.Equal(t, StepDone, stepNamed(t, final, StepRegisterCloud).Status)
	require.Equal(t, 2, lt.fake.count(serverapi.RegisterCloudName))
	require.Equal(t, 1, lt.fake.count(serverapi.AssignTenantName))
	require.Equal(t, 1, lt.fake.count(serverapi.FinishInstallName), "the retry does not reinstall")
}

// Ironic down: Temporal retries the activity with backoff; the server never
// reaches attention and ends ready once Ironic answers.
func TestLifecycleTransientIronicErrorsAreRetried(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.ironic = true
	down := temporal.NewApplicationError("get SN-24: dial tcp 127.0.0.1:6385: connect: connection refused", stepapi.ErrTypeCloudTransient)
	lt.fake.failNext(serverapi.RegisterCloudName, down, down, down)
	in := input("SN-24")
	in.Location = &dock
	in.Tenant = "proj-c"
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, StateReady, final.State)
	require.Equal(t, 4, lt.fake.count(serverapi.RegisterCloudName))
	require.Nil(t, final.Attention)
}

// Staff may skip a cloud registration that cannot work (e.g. the cloud is
// not ready for this rack): the server stays installed, the later cloud
// steps say why they did nothing.
func TestLifecycleSkippedRegistrationEndsInstalled(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.ironic = true
	lt.fake.failNext(serverapi.RegisterCloudName, appErr("enroll SN-25: add port 02:00:00:00:00:01: MAC already on another node", stepapi.ErrTypeCloudRejected))
	in := input("SN-25")
	in.Location = &dock
	// The install's installer phones home after five minutes.
	lt.at(time.Hour, func() { lt.update(UpdateSkip, SkipInput{By: "ops"}) })
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, StateInstalled, final.State)
	reg := stepNamed(t, final, StepRegisterCloud)
	require.Equal(t, StepSkipped, reg.Status)
	require.Equal(t, "skipped by ops", reg.Note)
	require.Equal(t, noteRegistrationSkipped, stepNamed(t, final, StepAssignTenant).Note)
	require.Zero(t, lt.fake.count(serverapi.AssignTenantName))
}

func TestLifecycleRefusesInvalidTenant(t *testing.T) {
	lt := newLifecycleTest(t)
	in := input("SN-26")
	in.Tenant = "proj a"
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	var ae *temporal.ApplicationError
	require.True(t, errors.As(lt.env.GetWorkflowError(), &ae))
	require.Equal(t, "InvalidInput", ae.Type())
}

// Ironic down for longer than the cloud activities' hour of retries: the
// server parks in attention with the last failure, and a retry once Ironic
// is back makes it ready.
func TestLifecycleIronicDownAnHourParksThenRetry(t *testing.T) {
	lt := newLifecycleTest(t)
	lt.fake.ironic = true
	down := temporal.NewApplicationError("get SN-27: dial tcp 127.0.0.1:6385: connect: connection refused", stepapi.ErrTypeCloudTransient)
	for range 200 {
		lt.fake.failNext(serverapi.RegisterCloudName, down)
	}
	in := input("SN-27")
	in.Location = &dock
	in.Tenant = "proj-d"
	var parked ServerStatus
	lt.at(3*time.Hour, func() {
		parked = lt.status()
		lt.fake.mu.Lock()
		lt.fake.errs[serverapi.RegisterCloudName] = nil // Ironic is back
		lt.fake.mu.Unlock()
		lt.update(UpdateRetry, RetryInput{})
	})
	lt.env.ExecuteWorkflow(ServerLifecycleName, in)
	final := lt.result()
	require.Equal(t, StateAttention, parked.State)
	require.Equal(t, StepRegisterCloud, parked.Attention.Step)
	require.Contains(t, parked.Attention.Error, "connection refused", "the last failure, not only the timeout")
	require.Greater(t, lt.fake.count(serverapi.RegisterCloudName), 10, "retried with backoff before asking a human")
	require.Equal(t, StateReady, final.State)
}
