package httpx

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/labstack/echo/v4"
	"github.com/metalflow/metalflow/workflows/stepapi"
)

// DecodeJSON reads exactly one JSON object into v, refusing unknown fields
// (a typo must not silently drop an operator's intent) and trailing data.
func DecodeJSON(c echo.Context, v any) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	if ct != "" && !strings.HasPrefix(ct, echo.MIMEApplicationJSON) {
		return Errorf(http.StatusUnsupportedMediaType, "content type must be application/json, got %q", ct)
	}
	dec := json.NewDecoder(c.Request().Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return Errorf(http.StatusBadRequest, "invalid JSON body: %s", describeJSONError(err))
	}
	if err := dec.Decode(&struct{}{}); !errors.Is(err, io.EOF) {
		return Errorf(http.StatusBadRequest, "invalid JSON body: unexpected data after the JSON object")
	}
	return nil
}

func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var tooLarge *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		return "body is empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "body ends in the middle of a value"
	case errors.As(err, &syntax):
		return fmt.Sprintf("%s at byte %d", syntax.Error(), syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q must be %s, got %s", typ.Field, typ.Type, typ.Value)
		}
		return fmt.Sprintf("expected a JSON object, got %s", typ.Value)
	case errors.As(err, &tooLarge):
		return "body too large"
	}
	return err.Error()
}

// DecodeOptionalJSON is DecodeJSON for bodies that may be left out.
func DecodeOptionalJSON(c echo.Context, v any) error {
	if c.Request().ContentLength == 0 {
		return nil
	}
	return DecodeJSON(c, v)
}

// ReadNoBody accepts an absent or empty JSON object and nothing else.
func ReadNoBody(c echo.Context) error {
	var req struct{}
	return DecodeOptionalJSON(c, &req)
}

type abortRequest struct {
	Reason string `json:"reason"`
}

// Abort forwards staff's abort of whatever waits in attention (a
// lifecycle, a decommission, a VIP) to its workflow.
func Abort(c echo.Context, tc Workflows, ref WorkflowRef) error {
	abort, err := ReadAbort(c)
	if err != nil {
		return err
	}
	return Update(c, tc, ref, stepapi.UpdateAbort, abort, &stepapi.DecisionResult{})
}

// ReadAbort reads an abort: a reason is required, for the record.
func ReadAbort(c echo.Context) (stepapi.AbortInput, error) {
	var req abortRequest
	if err := DecodeJSON(c, &req); err != nil {
		return stepapi.AbortInput{}, err
	}
	if req.Reason == "" {
		return stepapi.AbortInput{}, Errorf(http.StatusBadRequest, "reason is required: it goes into the record")
	}
	return stepapi.AbortInput{Reason: req.Reason, By: Actor(c)}, nil
}
