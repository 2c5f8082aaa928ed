package images

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/image/imageapi"
)

// createRequest is an image's description, from a JSON body, multipart
// fields or query parameters alike.
type createRequest struct {
	Name     string `json:"name"`
	URL      string `json:"url,omitempty"`
	SHA256   string `json:"sha256"`
	Format   string `json:"format"`
	OSFamily string `json:"osFamily"`
	Size     int64  `json:"size,omitempty"`
}

// set takes one multipart field or query parameter by its JSON name.
func (r *createRequest) set(field, value string) error {
	switch field {
	case "name":
		r.Name = value
	case "url":
		r.URL = value
	case "sha256":
		r.SHA256 = value
	case "format":
		r.Format = value
	case "osFamily":
		r.OSFamily = value
	case "size":
		n, err := strconv.ParseInt(value, 10, 64)
		if err != nil {
			return httpx.Errorf(http.StatusBadRequest, "size must be a number of bytes, got %q", value)
		}
		r.Size = n
	default:
		// A typo must not silently drop an operator's intent.
		return httpx.Errorf(http.StatusBadRequest, "unknown field %q (name, url, sha256, format, osFamily, size, file)", field)
	}
	return nil
}

// Limits of what an upload may carry besides the image.
const (
	// maxDescriptionBytes bounds a JSON description or one form field.
	maxDescriptionBytes = 64 << 10
	// multipartSlack is what a multipart body may add to the image:
	// boundaries, part headers and the description fields.
	multipartSlack = 1 << 20
	// transferTimeout replaces the API server's read and write timeouts
	// (tens of seconds, sized for JSON) on image transfers, which take
	// minutes; a transfer stalled longer than this is given up.
	transferTimeout = 2 * time.Hour
)

// createImage adds an image. A JSON body describes a URL image; the bytes
// of an upload come as the "file" part of a multipart/form-data body (the
// description in the fields before it) or as an application/octet-stream
// body (the description in query parameters). Either way the upload is
// streamed to disk, hashed as it is written, and kept only if its SHA-256
// is the one given.
func (s *Service) createImage(c echo.Context) error {
	ct := c.Request().Header.Get(echo.HeaderContentType)
	mediaType := ""
	if ct != "" {
		var err error
		if mediaType, _, err = mime.ParseMediaType(ct); err != nil {
			return httpx.Errorf(http.StatusUnsupportedMediaType, "malformed content type %q", ct)
		}
	}
	switch mediaType {
	case "", echo.MIMEApplicationJSON:
		return s.createURLImage(c)
	case echo.MIMEMultipartForm:
		return s.uploadMultipart(c)
	case echo.MIMEOctetStream:
		return s.uploadRaw(c)
	}
	return httpx.Errorf(http.StatusUnsupportedMediaType,
		"content type must be application/json (a URL image), multipart/form-data or application/octet-stream (an upload), got %q", ct)
}

func (s *Service) createURLImage(c echo.Context) error {
	c.Request().Body = http.MaxBytesReader(c.Response(), c.Request().Body, maxDescriptionBytes)
	var req createRequest
	if err := httpx.DecodeJSON(c, &req); err != nil {
		return err
	}
	if req.URL == "" {
		return httpx.Errorf(http.StatusUnprocessableEntity,
			"url is required in a JSON body; to upload the bytes, send them as multipart/form-data or application/octet-stream")
	}
	img, err := s.admit(c, req, imageapi.SourceURL)
	if err != nil {
		return err
	}
	return s.record(c, img, "")
}

// uploadRaw takes the body as the image, described by query parameters.
func (s *Service) uploadRaw(c echo.Context) error {
	var req createRequest
	for field, values := range c.QueryParams() {
		if len(values) != 1 {
			return httpx.Errorf(http.StatusBadRequest, "query parameter %s given %d times", field, len(values))
		}
		if err := req.set(field, values[0]); err != nil {
			return err
		}
	}
	if n := c.Request().ContentLength; n > s.cfg.MaxUploadBytes {
		return s.tooLarge()
	}
	img, err := s.admit(c, req, imageapi.SourceUpload)
	if err != nil {
		return err
	}
	sp, err := s.spool(c, c.Request().Body, img)
	if err != nil {
		return err
	}
	return s.record(c, sp.img, sp.path)
}

// uploadMultipart reads the description fields, then streams the file
// part, which must come last: everything the API could refuse is refused
// before gigabytes are read.
func (s *Service) uploadMultipart(c echo.Context) error {
	r := c.Request()
	if r.ContentLength > s.cfg.MaxUploadBytes+multipartSlack {
		return s.tooLarge()
	}
	r.Body = http.MaxBytesReader(c.Response(), r.Body, s.cfg.MaxUploadBytes+multipartSlack)
	mr, err := r.MultipartReader()
	if err != nil {
		return httpx.Errorf(http.StatusBadRequest, "malformed multipart body: %s", err)
	}
	var req createRequest
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return httpx.Errorf(http.StatusBadRequest, "malformed multipart body: %s", err)
		}
		if part.FormName() == "file" {
			if req.Name == "" {
				return httpx.Errorf(http.StatusBadRequest, "the fields (name, sha256, format, osFamily) must come before the file part")
			}
			return s.uploadPart(c, mr, part, req)
		}
		b, err := io.ReadAll(io.LimitReader(part, maxDescriptionBytes+1))
		if err != nil {
			return httpx.Errorf(http.StatusBadRequest, "malformed multipart body: %s", err)
		}
		if len(b) > maxDescriptionBytes {
			return httpx.Errorf(http.StatusBadRequest, "field %q is longer than %d bytes", part.FormName(), maxDescriptionBytes)
		}
		if err := req.set(part.FormName(), string(b)); err != nil {
			return err
		}
	}
	// No file: a form may describe a URL image too.
	if req.URL == "" {
		return httpx.Errorf(http.StatusUnprocessableEntity, "the form has no file part and no url: upload the bytes as the \"file\" part, after the other fields")
	}
	img, err := s.admit(c, req, imageapi.SourceURL)
	if err != nil {
		return err
	}
	return s.record(c, img, "")
}

// uploadPart streams the file part and checks that nothing follows it.
func (s *Service) uploadPart(c echo.Context, mr *multipart.Reader, part *multipart.Part, req createRequest) error {
	img, err := s.admit(c, req, imageapi.SourceUpload)
	if err != nil {
		return err
	}
	sp, err := s.spool(c, part, img)
	if err != nil {
		return err
	}
	if _, err := mr.NextPart(); !errors.Is(err, io.EOF) {
		s.discard(sp.path)
		return httpx.Errorf(http.StatusBadRequest, "the file part must be the form's last; nothing was kept")
	}
	return s.record(c, sp.img, sp.path)
}

// admit checks a description before any byte of an upload is read:
// malformed name 400, fields that cannot be right 422, a name taken 409.
func (s *Service) admit(c echo.Context, req createRequest, source string) (inventory.Image, error) {
	if err := imageapi.ValidateName(req.Name); err != nil {
		return inventory.Image{}, httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	img := imageapi.Image{Name: req.Name, Source: source, URL: req.URL, SHA256: req.SHA256, Format: req.Format, OSFamily: req.OSFamily, Size: req.Size}
	if err := imageapi.Validate(img); err != nil {
		return inventory.Image{}, httpx.Errorf(http.StatusUnprocessableEntity, "%s", err)
	}
	if source == imageapi.SourceUpload && s.cfg.Dir == "" {
		return inventory.Image{}, httpx.Errorf(http.StatusUnprocessableEntity, "this API keeps no uploaded images (no image directory configured): give a url")
	}
	_, err := s.cfg.Catalog.GetImage(c.Request().Context(), req.Name)
	if err == nil {
		return inventory.Image{}, httpx.Errorf(http.StatusConflict, "image %s exists: an image's bytes never change under its name; delete it first", req.Name)
	}
	if !errors.Is(err, inventory.ErrNotFound) {
		return inventory.Image{}, err
	}
	return inventory.Image{
		Name: img.Name, Source: img.Source, URL: img.URL, SHA256: img.SHA256, Format: img.Format,
		OSFamily: img.OSFamily, Size: img.Size, CreatedBy: httpx.Actor(c),
	}, nil
}

// spooled is an upload on disk under a temporary name, checked.
type spooled struct {
	path string
	img  inventory.Image
}

// spool writes src to a temporary file in the image directory, hashing it
// as it goes, and keeps it only if its digest (and size, when given) is
// the description's.
func (s *Service) spool(c echo.Context, src io.Reader, img inventory.Image) (spooled, error) {
	extendDeadlines(c)
	if err := os.MkdirAll(s.cfg.Dir, 0o750); err != nil {
		return spooled{}, fmt.Errorf("image directory: %w", err)
	}
	// A dot name: image names cannot start with one, so a temporary file
	// never shadows an image.
	f, err := os.CreateTemp(s.cfg.Dir, ".upload-*")
	if err != nil {
		return spooled{}, fmt.Errorf("image directory: %w", err)
	}
	path := f.Name()
	h := sha256.New()
	in := &readErrors{r: io.LimitReader(src, s.cfg.MaxUploadBytes+1)}
	n, err := io.Copy(io.MultiWriter(f, h), in)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		s.discard(path)
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return spooled{}, s.tooLarge()
		case in.err != nil:
			return spooled{}, httpx.Errorf(http.StatusBadRequest, "reading the upload failed after %d bytes: %s; nothing was kept", n, in.err)
		}
		return spooled{}, fmt.Errorf("writing image %s: %w", img.Name, err)
	}
	if n > s.cfg.MaxUploadBytes {
		s.discard(path)
		return spooled{}, s.tooLarge()
	}
	if sum := hex.EncodeToString(h.Sum(nil)); sum != img.SHA256 {
		s.discard(path)
		return spooled{}, httpx.Errorf(http.StatusUnprocessableEntity, "sha256 mismatch: the uploaded %d bytes hash to %s, not %s; nothing was kept", n, sum, img.SHA256)
	}
	if img.Size != 0 && img.Size != n {
		s.discard(path)
		return spooled{}, httpx.Errorf(http.StatusUnprocessableEntity, "size mismatch: %d bytes uploaded, %d declared; nothing was kept", n, img.Size)
	}
	img.Size = n
	return spooled{path: path, img: img}, nil
}

// readErrors remembers a failure to read the upload, to tell a client
// that went away (400) from a disk that failed (500).
type readErrors struct {
	r   io.Reader
	err error
}

func (r *readErrors) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		r.err = err
	}
	return n, err
}

// record enters the image into the catalog and, for an upload, moves its
// bytes under the image's name. The catalog entry comes first: should two
// uploads of one name race, the loser's bytes must not replace the
// winner's.
func (s *Service) record(c echo.Context, img inventory.Image, spooledPath string) error {
	ctx := c.Request().Context()
	stored, err := s.cfg.Catalog.CreateImage(ctx, img)
	if err != nil {
		s.discard(spooledPath)
		return httpx.InventoryError(err)
	}
	if spooledPath != "" {
		if err := os.Rename(spooledPath, s.bytesPath(img.Name)); err != nil {
			s.discard(spooledPath)
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if derr := s.cfg.Catalog.DeleteImage(dctx, img.Name); derr != nil {
				s.cfg.Logger.Error("an image without bytes stays in the catalog", "image", img.Name, "error", derr)
			}
			return fmt.Errorf("storing image %s: %w", img.Name, err)
		}
	}
	c.Response().Header().Set(echo.HeaderLocation, catalogPath+"/"+url.PathEscape(img.Name))
	return c.JSON(http.StatusCreated, imageDetail{
		Image: contract(stored), Profiles: append([]string{}, s.cfg.Profiles.NamingImage(img.Name)...), BootPath: imageapi.BootPath(img.Name),
	})
}

func (s *Service) tooLarge() error {
	return httpx.Errorf(http.StatusRequestEntityTooLarge, "the upload is larger than this API's limit of %d bytes; nothing was kept", s.cfg.MaxUploadBytes)
}

// bytesPath is where an uploaded image's bytes live; the name's rules keep
// it inside the directory.
func (s *Service) bytesPath(name string) string {
	return filepath.Join(s.cfg.Dir, name)
}

// discard removes a spooled upload that is not kept.
func (s *Service) discard(path string) {
	if path == "" {
		return
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.cfg.Logger.Warn("removing a refused upload failed", "path", path, "error", err)
	}
}

// removeBytes removes a deleted image's bytes.
func (s *Service) removeBytes(name string) {
	if err := os.Remove(s.bytesPath(name)); err != nil && !errors.Is(err, os.ErrNotExist) {
		s.cfg.Logger.Warn("removing a deleted image's bytes failed", "image", name, "error", err)
	}
}

// extendDeadlines lifts the API server's request timeouts for one image
// transfer. A writer that cannot (a test recorder) has none to lift.
func extendDeadlines(c echo.Context) {
	rc := http.NewResponseController(c.Response())
	deadline := time.Now().Add(transferTimeout)
	_ = rc.SetReadDeadline(deadline)
	_ = rc.SetWriteDeadline(deadline)
}
