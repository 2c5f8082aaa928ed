package api

import (
	_ "embed"
	"net/http"

	"github.com/labstack/echo/v4"
)

// openAPIDocument is the API contract, written by hand so that it says what
// the API promises rather than whatever the code happens to do; the tests
// hold the two together.
//
//go:embed openapi.json
var openAPIDocument []byte

// openAPI serves the contract so clients and the operator page can read it
// from the running API.
func (s *Server) openAPI(c echo.Context) error {
	return c.Blob(http.StatusOK, echo.MIMEApplicationJSON, openAPIDocument)
}
