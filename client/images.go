package client

import (
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"

	"github.com/metalflow/metalflow/workflows/image/imageapi"
)

// Image is one catalog entry, as the contract has it.
type Image = imageapi.Image

// ImageDetail is an image with the profiles naming it as their default and
// the path machines fetch it from.
type ImageDetail struct {
	Image
	Profiles []string `json:"profiles"`
	BootPath string   `json:"bootPath"`
}

// ImageList is the catalog.
type ImageList struct {
	Images []Image `json:"images"`
}

// NewImage describes an image to add: with URL set, one metalflow proxies;
// without, the bytes given to UploadImage.
type NewImage struct {
	Name     string `json:"name"`
	URL      string `json:"url,omitempty"`
	SHA256   string `json:"sha256"`
	Format   string `json:"format"`
	OSFamily string `json:"osFamily"`
	Size     int64  `json:"size,omitempty"`
}

// Images is the catalog.
func (c *Client) Images(ctx context.Context) (Answer[ImageList], error) {
	return get[ImageList](ctx, c, http.MethodGet, v1+"/images", nil, nil)
}

// Image is one image.
func (c *Client) Image(ctx context.Context, name string) (Answer[ImageDetail], error) {
	return get[ImageDetail](ctx, c, http.MethodGet, v1+"/images/"+esc(name), nil, nil)
}

// AddImage records a URL image.
func (c *Client) AddImage(ctx context.Context, img NewImage) (Answer[ImageDetail], error) {
	return get[ImageDetail](ctx, c, http.MethodPost, v1+"/images", nil, img)
}

// UploadImage streams size bytes of body (size < 0: unknown) as image
// img's. Only ctx bounds it, not the client's per-call timeout: an image
// takes minutes.
func (c *Client) UploadImage(ctx context.Context, img NewImage, body io.Reader, size int64) (Answer[ImageDetail], error) {
	q := url.Values{}
	q.Set("name", img.Name)
	q.Set("sha256", img.SHA256)
	q.Set("format", img.Format)
	q.Set("osFamily", img.OSFamily)
	if img.Size != 0 {
		q.Set("size", strconv.FormatInt(img.Size, 10))
	}
	u := *c.base
	u.Path += v1 + "/images"
	u.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), body)
	if err != nil {
		return Answer[ImageDetail]{}, err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	untimed := *c.http
	untimed.Timeout = 0
	raw, err := c.do(&untimed, req)
	if err != nil {
		return Answer[ImageDetail]{}, err
	}
	return decode[ImageDetail](http.MethodPost, v1+"/images", raw)
}

// DeleteImage removes an image from the catalog.
func (c *Client) DeleteImage(ctx context.Context, name string) error {
	_, err := c.call(ctx, http.MethodDelete, v1+"/images/"+esc(name), nil, nil)
	return err
}
