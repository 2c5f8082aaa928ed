package agent

import (
	"errors"
	"fmt"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

// failure is an error the lifecycle can act on: its class says whether a
// retry may help or a person must look.
type failure struct {
	class agentapi.FailureClass
	err   error
}

func (f *failure) Error() string { return f.err.Error() }
func (f *failure) Unwrap() error { return f.err }

// fail classifies an error; the message is the reason the operator reads.
func fail(class agentapi.FailureClass, format string, args ...any) error {
	return &failure{class: class, err: fmt.Errorf(format, args...)}
}

// classOf is the class of the outermost classified error in err's chain;
// unclassified errors are internal.
func classOf(err error) agentapi.FailureClass {
	var f *failure
	if errors.As(err, &f) {
		return f.class
	}
	return agentapi.ClassInternal
}
