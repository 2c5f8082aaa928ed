// Package wftest holds what the workflow domains' tests share.
package wftest

import "go.temporal.io/sdk/testsuite"

// UpdateOutcome is what became of an update sent in a test environment.
type UpdateOutcome struct {
	Rejected error
	Err      error
	Value    any
	Done     bool
}

// Callbacks records the update's outcome into o.
func (o *UpdateOutcome) Callbacks() *testsuite.TestUpdateCallback {
	return &testsuite.TestUpdateCallback{
		OnReject:   func(err error) { o.Rejected = err; o.Done = true },
		OnAccept:   func() {},
		OnComplete: func(v interface{}, err error) { o.Done, o.Err, o.Value = true, err, v },
	}
}

// Refused is the update's refusal, from the validator or the handler.
func (o *UpdateOutcome) Refused() error {
	if o.Rejected != nil {
		return o.Rejected
	}
	return o.Err
}
