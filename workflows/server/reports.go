package server

import (
	"errors"

	"go.temporal.io/sdk/temporal"

	"github.com/metalflow/metalflow/workflows/server/serverapi"
)

// BIOSReportOf takes the report out of a failed ConfigureBIOS, if any.
func BIOSReportOf(err error) *serverapi.BIOSReport {
	var r serverapi.BIOSReport
	if reportOf(err, &r) {
		return &r
	}
	return nil
}

// RAIDReportOf takes the report out of a failed ConfigureRAID, if any.
func RAIDReportOf(err error) *serverapi.RAIDReport {
	var r serverapi.RAIDReport
	if reportOf(err, &r) {
		return &r
	}
	return nil
}

func reportOf(err error, into any) bool {
	var appErr *temporal.ApplicationError
	if !errors.As(err, &appErr) || !appErr.HasDetails() {
		return false
	}
	return appErr.Details(into) == nil
}
