package httpx

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/labstack/echo/v4"
)

// IdempotencyKeyHeader lets a client repeat a staff decision it got no
// answer to. Under load Temporal can take longer to accept an update than
// the API waits; the 503 then cannot say whether the decision will still
// take effect, and a plain repeat of a racked or an approve is refused as
// "already done". With the same key the repeat joins the first update and
// answers its outcome.
const IdempotencyKeyHeader = "Idempotency-Key"

// idempotencyKeyContext is where idempotencyKey leaves a checked key.
const idempotencyKeyContext = "idempotency-key"

// maxIdempotencyKey bounds the key, which becomes part of an update ID in
// the workflow's history.
const maxIdempotencyKey = 100

// IdempotencyKey refuses a malformed key before the handler runs, so a bad
// key changes nothing.
func IdempotencyKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		k := c.Request().Header.Get(IdempotencyKeyHeader)
		if k == "" {
			return next(c)
		}
		if err := validateIdempotencyKey(k); err != nil {
			return Errorf(http.StatusBadRequest, "%s", err)
		}
		c.Set(idempotencyKeyContext, k)
		return next(c)
	}
}

// validateIdempotencyKey accepts what a UUID or a client's own request
// name looks like; anything else is more likely a mistake than a key.
func validateIdempotencyKey(k string) error {
	if len(k) > maxIdempotencyKey {
		return fmt.Errorf("%s header is longer than %d characters", IdempotencyKeyHeader, maxIdempotencyKey)
	}
	for _, r := range k {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' || r == ':'
		if !ok {
			return fmt.Errorf("%s header may hold only letters, digits and - _ . : (got %q)", IdempotencyKeyHeader, k)
		}
	}
	return nil
}

// updateID names the update for a request. With a key, the same key, the
// same decision and the same arguments are one update, which Temporal
// runs once and answers again; the same key sent with another body is a
// new request rather than a stale answer. Without one, a random ID: the
// API still needs to know it, to ask again for an update the SDK gave up
// waiting on (see SendUpdate).
func updateID(c echo.Context, update string, arg any) (string, error) {
	k, _ := c.Get(idempotencyKeyContext).(string)
	if k == "" {
		var r [16]byte
		if _, err := rand.Read(r[:]); err != nil {
			return "", fmt.Errorf("update ID: %w", err)
		}
		return fmt.Sprintf("%s/%x", update, r), nil
	}
	b, err := json.Marshal(arg)
	if err != nil {
		return "", fmt.Errorf("encode %s arguments: %w", update, err)
	}
	sum := sha256.Sum256(b)
	return fmt.Sprintf("%s/%s/%x", update, k, sum[:8]), nil
}
