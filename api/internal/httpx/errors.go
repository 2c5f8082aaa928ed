// Package httpx is what every part of the API shares: how errors are
// written, how bodies are read, who the caller is, and how a request
// reaches a workflow. Domains import it instead of copying it, so a status
// code or message means the same on every route.
package httpx

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"
	"go.temporal.io/api/serviceerror"

	"github.com/metalflow/metalflow/inventory"
)

// ErrorBody is every error the API returns: one human-readable message.
type ErrorBody struct {
	Error string `json:"error"`
}

// ErrorHandler writes every error as an ErrorBody, logging those that are
// the API's fault.
func ErrorHandler(log *slog.Logger) echo.HTTPErrorHandler {
	return func(err error, c echo.Context) {
		if c.Response().Committed {
			return
		}
		code := http.StatusInternalServerError
		msg := "internal error"
		var he *echo.HTTPError
		if errors.As(err, &he) {
			code = he.Code
			switch m := he.Message.(type) {
			case string:
				msg = m
			case error:
				msg = m.Error()
			default:
				msg = http.StatusText(code)
			}
		}
		if code >= 500 {
			log.Error("request failed", "path", c.Request().URL.Path, "error", err)
		}
		if c.Request().Method == http.MethodHead {
			_ = c.NoContent(code)
			return
		}
		_ = c.JSON(code, ErrorBody{Error: msg})
	}
}

// Errorf is an error answered with code and the formatted message.
func Errorf(code int, format string, args ...any) error {
	return echo.NewHTTPError(code, fmt.Sprintf(format, args...))
}

// TemporalError reports Temporal being unreachable or overloaded as 503, so
// clients retry instead of giving up.
func TemporalError(err error) error {
	var unavailable *serviceerror.Unavailable
	var exhausted *serviceerror.ResourceExhausted
	var deadline *serviceerror.DeadlineExceeded
	if errors.As(err, &unavailable) || errors.As(err, &exhausted) || errors.As(err, &deadline) ||
		errors.Is(err, context.DeadlineExceeded) {
		return &echo.HTTPError{Code: http.StatusServiceUnavailable, Message: "temporal unavailable: " + err.Error(), Internal: err}
	}
	return &echo.HTTPError{Code: http.StatusInternalServerError, Message: "temporal call failed: " + err.Error(), Internal: err}
}

// InventoryError maps the CMDB's refusals to statuses: input it cannot
// take is 422, a taken place 409, a missing record 404.
func InventoryError(err error) error {
	switch {
	case errors.Is(err, inventory.ErrInvalid):
		return Errorf(http.StatusUnprocessableEntity, "%s", err)
	case errors.Is(err, inventory.ErrOccupied), errors.Is(err, inventory.ErrExists):
		return Errorf(http.StatusConflict, "%s", err)
	case errors.Is(err, inventory.ErrNotFound):
		return Errorf(http.StatusNotFound, "%s", err)
	}
	return err
}
