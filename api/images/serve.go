package images

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/image/imageapi"
)

// MountBoot adds the image bytes route to the boot service's group (its
// prefix, /boot): machines installing hold no API token, and the boot
// service is what they reach, on the API or on its own listener.
func (s *Service) MountBoot(boot *echo.Group) {
	route := strings.TrimPrefix(imageapi.BootPathPrefix, "/boot") + ":name"
	boot.GET(route, s.serveImage)
	boot.HEAD(route, s.serveImage)
}

// serveImage streams an image's bytes with Range support: an upload from
// the image directory, a URL image from its origin with the Range passed
// through. Unless the operator opened the route, the caller must hold the
// phone-home token of a pending install attempt that writes this image,
// as a bearer header or ?token=, so the bytes go to installing machines
// only, and only until their install ends.
func (s *Service) serveImage(c echo.Context) error {
	name, err := nameParam(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	if !s.cfg.Open {
		if err := s.authorize(c, name); err != nil {
			return err
		}
	}
	img, err := s.cfg.Grants.GetImage(ctx, name)
	if err != nil {
		return httpx.InventoryError(err)
	}
	extendDeadlines(c)
	h := c.Response().Header()
	// Whatever the image holds, the agent writes bytes: no sniffing, no
	// content coding that would change what the digest covers.
	h.Set(echo.HeaderContentType, echo.MIMEOctetStream)
	if img.Source == imageapi.SourceURL {
		return s.proxy(c, img)
	}
	f, err := os.Open(s.bytesPath(name))
	if err != nil {
		return fmt.Errorf("image %s is in the catalog but its bytes are not readable: %w", name, err)
	}
	defer f.Close()
	// The digest is a strong validator: an agent resuming with If-Range
	// gets the rest of these bytes or, were they others, all of them.
	h.Set("ETag", `"`+img.SHA256+`"`)
	http.ServeContent(c.Response(), c.Request(), "", img.CreatedAt, f)
	return nil
}

// authorize checks the caller's install token against the image. A
// ?token= wins over the header: it was put in the URL for this fetch, where
// a header may be a proxy's or a client's default.
func (s *Service) authorize(c echo.Context, name string) error {
	token := c.QueryParam("token")
	if hdr := c.Request().Header.Get(echo.HeaderAuthorization); token == "" && hdr != "" {
		t, ok := strings.CutPrefix(hdr, "Bearer ")
		if !ok || t == "" {
			return httpx.Errorf(http.StatusUnauthorized, "send the install's token as Authorization: Bearer <token> or ?token=")
		}
		token = t
	}
	if token == "" {
		return httpx.Errorf(http.StatusUnauthorized, "image bytes go to a pending install: send its token as Authorization: Bearer <token> or ?token=")
	}
	grant, err := s.cfg.Grants.BootImageByToken(c.Request().Context(), token)
	if errors.Is(err, inventory.ErrNotFound) {
		return httpx.Errorf(http.StatusForbidden, "install token unknown, already used, or expired")
	}
	if err != nil {
		return err
	}
	if grant.Image != name {
		writes := "names no image"
		if grant.Image != "" {
			writes = "writes image " + grant.Image
		}
		return httpx.Errorf(http.StatusForbidden, "install attempt %d of %s %s, not %s", grant.Attempt, grant.Serial, writes, name)
	}
	return nil
}

// relayedHeaders are what a ranged answer from the origin means to the
// agent; nothing else of the origin's (cookies, caching) is its business.
func relayedHeaders() []string {
	return []string{"Content-Length", "Content-Range", "Accept-Ranges", "ETag", "Last-Modified"}
}

// proxy fetches a URL image from its origin with the caller's Range and
// If-Range, and relays a 200, 206 or 416 as the origin gave it. Any other
// answer, or none, is the origin's fault: 502.
func (s *Service) proxy(c echo.Context, img inventory.Image) error {
	r := c.Request()
	req, err := http.NewRequestWithContext(r.Context(), r.Method, img.URL, nil)
	if err != nil {
		return fmt.Errorf("image %s: origin request: %w", img.Name, err)
	}
	for _, k := range []string{"Range", "If-Range"} {
		if v := r.Header.Get(k); v != "" {
			req.Header.Set(k, v)
		}
	}
	// Go's transport would otherwise ask for gzip and decompress the
	// answer itself, losing the byte offsets a Range names.
	req.Header.Set("Accept-Encoding", "identity")
	res, err := s.cfg.Origin.Do(req)
	if err != nil {
		return httpx.Errorf(http.StatusBadGateway, "image %s: its origin did not answer: %s", img.Name, err)
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK, http.StatusPartialContent, http.StatusRequestedRangeNotSatisfiable:
	default:
		return httpx.Errorf(http.StatusBadGateway, "image %s: its origin answered %s", img.Name, res.Status)
	}
	h := c.Response().Header()
	for _, k := range relayedHeaders() {
		if v := res.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	c.Response().WriteHeader(res.StatusCode)
	if r.Method == http.MethodHead {
		return nil
	}
	if n, err := io.Copy(c.Response(), res.Body); err != nil {
		// Too late for an error answer: the agent sees a short body and
		// resumes with a Range.
		s.cfg.Logger.Warn("relaying an image broke off", "image", img.Name, "bytes", n, "error", err)
	}
	return nil
}
