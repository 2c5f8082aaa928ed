package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/labstack/echo/v4"
)

// errorBody is every error the API returns: one human-readable message.
type errorBody struct {
	Error string `json:"error"`
}

func writeError(log *slog.Logger) echo.HTTPErrorHandler {
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
		_ = c.JSON(code, errorBody{Error: msg})
	}
}

func httpError(code int, format string, args ...any) error {
	return echo.NewHTTPError(code, fmt.Sprintf(format, args...))
}
