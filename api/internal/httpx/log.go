package httpx

import (
	"log/slog"
	"time"

	"github.com/labstack/echo/v4"
)

// RequestLog logs every request, at error level when the API failed it.
func RequestLog(log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			if err != nil {
				c.Error(err)
			}
			status := c.Response().Status
			level := slog.LevelInfo
			if status >= 500 {
				level = slog.LevelError
			}
			log.Log(c.Request().Context(), level, "http request",
				"method", c.Request().Method,
				"path", c.Request().URL.Path,
				"route", c.Path(),
				"status", status,
				"duration_ms", float64(time.Since(start).Microseconds())/1000,
				"remote", c.RealIP(),
			)
			return nil
		}
	}
}
