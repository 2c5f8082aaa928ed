package httpx

import (
	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/auth"
)

// callerKey is where the authenticated caller sits in the echo context.
const callerKey = "metalflow.principal"

// SetCaller records who is calling, once their token has been checked.
func SetCaller(c echo.Context, p auth.Principal) {
	c.Set(callerKey, p)
}

// Caller is who calls a route behind the access guard; the zero Principal
// on an open route.
func Caller(c echo.Context) auth.Principal {
	p, _ := c.Get(callerKey).(auth.Principal)
	return p
}

// Actor names the caller in workflow inputs and the asset history.
func Actor(c echo.Context) string {
	if u := Caller(c).User; u != "" {
		return u
	}
	return "api"
}
