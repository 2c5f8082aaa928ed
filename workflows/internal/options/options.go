// Package options says how metalflow's workflows call each kind of activity:
// timeouts and retries chosen for what sits behind it (a database, a BMC, the
// cloud, a VIP's rollout), the same for every domain that calls it.
package options

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/metalflow/metalflow/workflows/stepapi"
)

// Rack: the claim is one short database transaction. A few
// quick attempts cover a database blip; beyond that the technician hears
// back and can try again, rather than the API call hanging.
func Rack() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 15 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        500 * time.Millisecond,
			BackoffCoefficient:     2,
			MaximumInterval:        5 * time.Second,
			MaximumAttempts:        4,
			NonRetryableErrorTypes: stepapi.NonRetryableErrorTypes(),
		},
	}
}

// Inventory: CMDB writes are short and idempotent; a
// database outage is waited out with backoff, however long it lasts,
// because nothing a human does makes a database come back faster.
func Inventory() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			NonRetryableErrorTypes: stepapi.NonRetryableErrorTypes(),
		},
	}
}

// BMC: BMCs are slow, flaky and reboot under us. Transient
// failures (5xx, timeouts, dropped sessions) are retried with backoff for
// up to two hours; a BMC gone that long is a problem for a human, and the
// step parks in attention with the last error. Wrong credentials, missing
// features and inventory mismatches are never retried.
func BMC(startToClose time.Duration) workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout:    startToClose,
		ScheduleToCloseTimeout: 2 * time.Hour,
		// BMC activities heartbeat every 5 s while they talk to the BMC: a
		// worker that dies mid-step is noticed in 20 s.
		HeartbeatTimeout: 20 * time.Second,
		// A cancelled workflow waits until the activity has really
		// stopped talking to the BMC: whatever runs next (a decommission's
		// wipe) must not overlap a BIOS job still being written.
		WaitForCancellation: true,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        2 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			NonRetryableErrorTypes: stepapi.NonRetryableErrorTypes(),
		},
	}
}

// Cloud: the cloud steps wait on Ironic's own transitions
// (manage makes the conductor reach the BMC through sushy, with its own
// connection retries), so one attempt may take minutes; the activity
// heartbeats while it waits, so a dead worker is noticed in 20 s. Ironic or
// Nova down, answering 5xx or holding the node's lock is retried with
// backoff for an hour, long enough for a control-plane restart or upgrade;
// after that, or at once for refusals and failed transitions (with
// Ironic's last_error), the server parks in attention for a human.
func Cloud() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout:    10 * time.Minute,
		ScheduleToCloseTimeout: time.Hour,
		HeartbeatTimeout:       20 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        2 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			NonRetryableErrorTypes: stepapi.NonRetryableErrorTypes(),
		},
	}
}

// LoadBalancer: joining or leaving a VIP waits for the VIP's
// own rollout to every node (canary first), which takes seconds to
// minutes; a VIP busy with another change refuses and is asked again with
// backoff. After half an hour the step parks in attention.
func LoadBalancer() workflow.ActivityOptions {
	return workflow.ActivityOptions{
		StartToCloseTimeout:    10 * time.Minute,
		ScheduleToCloseTimeout: 30 * time.Minute,
		HeartbeatTimeout:       30 * time.Second,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval:        2 * time.Second,
			BackoffCoefficient:     2,
			MaximumInterval:        time.Minute,
			NonRetryableErrorTypes: stepapi.NonRetryableErrorTypes(),
		},
	}
}
