// Package images is the OS image catalog: operators add images (a URL
// metalflow proxies, or bytes uploaded into its data directory) and remove
// them, everyone with a token lists them, and installing machines fetch an
// image's bytes from the boot service with HTTP Range support, bound to
// their pending install.
package images

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/metalflow/metalflow/api/access"
	"github.com/metalflow/metalflow/api/internal/httpx"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/workflows/image/imageapi"
)

// Catalog is what the API routes keep in the inventory.
type Catalog interface {
	CreateImage(ctx context.Context, img inventory.Image) (inventory.Image, error)
	GetImage(ctx context.Context, name string) (inventory.Image, error)
	ListImages(ctx context.Context) ([]inventory.Image, error)
	DeleteImage(ctx context.Context, name string) error
}

// Grants is what the boot route asks the inventory: the image, and which
// image a pending install's token may fetch.
type Grants interface {
	GetImage(ctx context.Context, name string) (inventory.Image, error)
	BootImageByToken(ctx context.Context, token string) (inventory.BootImage, error)
}

// Profiles says which hardware profiles name an image as their default.
type Profiles interface {
	NamingImage(image string) []string
}

// DefaultMaxUploadBytes bounds an upload when the operator sets no limit:
// large enough for a full distribution disk image, small enough that one
// mistaken upload cannot fill a typical data volume.
const DefaultMaxUploadBytes = 32 << 30

// Config wires the image routes.
type Config struct {
	// Dir keeps uploaded images' bytes, one file per image; "" refuses
	// uploads (URL images still work).
	Dir string
	// MaxUploadBytes bounds one upload; 0 is DefaultMaxUploadBytes.
	MaxUploadBytes int64
	// Open serves image bytes to anyone who reaches the boot service,
	// without a pending install's token: for sites whose provisioning
	// network is trusted and whose installers cannot carry the token.
	Open bool

	Catalog  Catalog
	Grants   Grants
	Profiles Profiles
	// Origin fetches URL images from their origin; nil is a client with no
	// overall timeout (images are large) that waits at most a minute for
	// an origin's answer to start.
	Origin *http.Client
	Logger *slog.Logger
}

// Service serves the catalog and the image bytes.
type Service struct {
	cfg Config
}

// New builds the image service.
func New(cfg Config) *Service {
	if cfg.MaxUploadBytes <= 0 {
		cfg.MaxUploadBytes = DefaultMaxUploadBytes
	}
	if cfg.Origin == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = time.Minute
		cfg.Origin = &http.Client{Transport: t}
	}
	return &Service{cfg: cfg}
}

// catalogPath is the collection's route; uploads arrive there.
const catalogPath = "/api/v1/images"

// Register mounts the catalog's routes on the API: operators add and
// remove, viewers read.
func (s *Service) Register(v1 *echo.Group, guard *access.Guard) {
	viewer, operator := guard.Allow(auth.Viewer), guard.Allow(auth.Operator)
	v1.POST("/images", s.createImage, operator)
	v1.GET("/images", s.listImages, viewer)
	v1.GET("/images/:name", s.getImage, viewer)
	v1.DELETE("/images/:name", s.deleteImage, operator)
}

// BoundsOwnBody says whether a request is an upload, which the API's 1 MB
// body limit must let through: the upload route enforces MaxUploadBytes
// itself, as it streams.
func BoundsOwnBody(c echo.Context) bool {
	return c.Request().Method == http.MethodPost && c.Path() == catalogPath
}

// imageList is GET /api/v1/images.
type imageList struct {
	Images []imageapi.Image `json:"images"`
}

// imageDetail is one image with what refers to it.
type imageDetail struct {
	imageapi.Image
	// Profiles name the image as their default; it cannot be deleted
	// while any does.
	Profiles []string `json:"profiles"`
	// BootPath is where installing machines fetch the bytes, under the
	// boot service's public URL.
	BootPath string `json:"bootPath"`
}

func contract(img inventory.Image) imageapi.Image {
	return imageapi.Image{
		Name: img.Name, Source: img.Source, URL: img.URL, SHA256: img.SHA256, Format: img.Format,
		OSFamily: img.OSFamily, Size: img.Size, CreatedAt: img.CreatedAt, CreatedBy: img.CreatedBy,
	}
}

func nameParam(c echo.Context) (string, error) {
	name, err := url.PathUnescape(c.Param("name"))
	if err != nil {
		return "", httpx.Errorf(http.StatusBadRequest, "invalid image name in path")
	}
	if err := imageapi.ValidateName(name); err != nil {
		return "", httpx.Errorf(http.StatusBadRequest, "%s", err)
	}
	return name, nil
}

func (s *Service) listImages(c echo.Context) error {
	imgs, err := s.cfg.Catalog.ListImages(c.Request().Context())
	if err != nil {
		return err
	}
	out := imageList{Images: make([]imageapi.Image, 0, len(imgs))}
	for _, img := range imgs {
		out.Images = append(out.Images, contract(img))
	}
	return c.JSON(http.StatusOK, out)
}

func (s *Service) getImage(c echo.Context) error {
	name, err := nameParam(c)
	if err != nil {
		return err
	}
	img, err := s.cfg.Catalog.GetImage(c.Request().Context(), name)
	if err != nil {
		return httpx.InventoryError(err)
	}
	return c.JSON(http.StatusOK, imageDetail{
		Image: contract(img), Profiles: append([]string{}, s.cfg.Profiles.NamingImage(name)...), BootPath: imageapi.BootPath(name),
	})
}

// deleteImage removes an image nothing needs any more: a profile naming it
// or a pending install writing it keeps it (409), and nothing changes.
func (s *Service) deleteImage(c echo.Context) error {
	name, err := nameParam(c)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	img, err := s.cfg.Catalog.GetImage(ctx, name)
	if err != nil {
		return httpx.InventoryError(err)
	}
	if ps := s.cfg.Profiles.NamingImage(name); len(ps) > 0 {
		return httpx.Errorf(http.StatusConflict, "image %s is the default image of profile %s: change the profile first", name, strings.Join(ps, ", "))
	}
	if err := s.cfg.Catalog.DeleteImage(ctx, name); err != nil {
		if errors.Is(err, inventory.ErrInUse) {
			return httpx.Errorf(http.StatusConflict, "%s", err)
		}
		return httpx.InventoryError(err)
	}
	if img.Source == imageapi.SourceUpload {
		s.removeBytes(name)
	}
	return c.NoContent(http.StatusNoContent)
}
