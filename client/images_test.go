package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/client"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
)

// imageAPI is the real API with an image directory and a profile naming
// "ubuntu-24.04"; it returns the API's URL, the directory and an operator
// and a viewer token.
func imageAPI(t *testing.T) (base, dir, operator, viewer string) {
	t.Helper()
	ctx := context.Background()
	inv, err := inventory.Open(ctx, inventory.DialectSQLite, filepath.Join(t.TempDir(), "inv.db"))
	require.NoError(t, err)
	t.Cleanup(func() { _ = inv.Close() })
	cat, err := profiles.NewCatalog(profiles.Profile{Name: "r650", Role: profiles.RoleCompute, Image: "ubuntu-24.04"})
	require.NoError(t, err)
	dir = t.TempDir()
	tokens := &auth.Tokens{Store: inv}
	s := api.New(api.Config{
		Inventory: inv, Tokens: tokens, Profiles: cat, Images: api.ImagesConfig{Dir: dir},
		Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler),
	})
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	operator, _, err = tokens.Issue(ctx, auth.IssueInput{Name: "op", Role: auth.Operator, By: "test"})
	require.NoError(t, err)
	viewer, _, err = tokens.Issue(ctx, auth.IssueInput{Name: "view", Role: auth.Viewer, By: "test"})
	require.NoError(t, err)
	return srv.URL, dir, operator, viewer
}

func TestClientImages(t *testing.T) {
	ctx := context.Background()
	base, dir, operator, viewer := imageAPI(t)
	c := newClient(t, base, operator)
	// Past the 1 MB every other body is held to.
	body := bytes.Repeat([]byte("disk"), 400_000)
	sum := sha256.Sum256(body)
	digest := hex.EncodeToString(sum[:])

	up, err := c.UploadImage(ctx, client.NewImage{Name: "debian-12", SHA256: digest, Format: "raw", OSFamily: "debian"}, bytes.NewReader(body), int64(len(body)))
	require.NoError(t, err)
	require.Equal(t, int64(len(body)), up.Value.Size)
	require.Equal(t, "upload", up.Value.Source)
	require.Equal(t, "/boot/images/debian-12", up.Value.BootPath)
	kept, err := os.ReadFile(filepath.Join(dir, "debian-12"))
	require.NoError(t, err)
	require.Equal(t, body, kept)

	_, err = c.UploadImage(ctx, client.NewImage{Name: "debian-13", SHA256: digest, Format: "raw", OSFamily: "debian"}, bytes.NewReader(body[1:]), -1)
	require.Equal(t, http.StatusUnprocessableEntity, client.StatusOf(err), "%v", err)
	require.ErrorContains(t, err, "sha256 mismatch")

	added, err := c.AddImage(ctx, client.NewImage{Name: "ubuntu-24.04", URL: "https://mirror.example/u.raw.zst", SHA256: digest, Format: "raw.zst", OSFamily: "ubuntu"})
	require.NoError(t, err)
	require.Equal(t, []string{"r650"}, added.Value.Profiles)
	_, err = c.AddImage(ctx, client.NewImage{Name: "ubuntu-24.04", URL: "https://x/y", SHA256: digest, Format: "raw", OSFamily: "ubuntu"})
	require.Equal(t, http.StatusConflict, client.StatusOf(err), "%v", err)

	// A viewer reads the catalog but changes nothing.
	v := newClient(t, base, viewer)
	list, err := v.Images(ctx)
	require.NoError(t, err)
	require.Len(t, list.Value.Images, 2)
	require.Equal(t, "debian-12", list.Value.Images[0].Name)
	one, err := v.Image(ctx, "ubuntu-24.04")
	require.NoError(t, err)
	require.Equal(t, "https://mirror.example/u.raw.zst", one.Value.URL)
	require.Equal(t, http.StatusForbidden, client.StatusOf(v.DeleteImage(ctx, "debian-12")))

	require.Equal(t, http.StatusConflict, client.StatusOf(c.DeleteImage(ctx, "ubuntu-24.04")), "profile r650 names it")
	require.NoError(t, c.DeleteImage(ctx, "debian-12"))
	_, err = c.Image(ctx, "debian-12")
	require.Equal(t, http.StatusNotFound, client.StatusOf(err))
	require.NoFileExists(t, filepath.Join(dir, "debian-12"))
}
