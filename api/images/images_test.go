package images

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/access"
	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/auth"
	"github.com/metalflow/metalflow/inventory"
	"github.com/metalflow/metalflow/profiles"
)

// rig is the image routes over a real inventory, a profile naming
// ubuntu-24.04, and an image directory.
type rig struct {
	inv *inventory.Store
	dir string
	// api sends an operator's token; boot sends only what each test does.
	api, boot http.Handler
}

func newRig(t *testing.T, cfg Config) rig {
	t.Helper()
	inv := apitest.Inventory(t)
	cat, err := profiles.NewCatalog(profiles.Profile{Name: "r650", Role: profiles.RoleCompute, Image: "ubuntu-24.04"})
	require.NoError(t, err)
	if cfg.Dir == "" {
		cfg.Dir = filepath.Join(t.TempDir(), "images")
	}
	cfg.Catalog, cfg.Grants, cfg.Profiles, cfg.Logger = inv, inv, cat, slog.New(slog.DiscardHandler)
	s := New(cfg)
	e := apitest.Echo()
	guard := access.New(access.Config{Tokens: &auth.Tokens{Store: inv}, Store: inv, Logger: cfg.Logger})
	s.Register(e.Group("/api/v1"), guard)
	s.MountBoot(e.Group("/boot"))
	return rig{inv: inv, dir: cfg.Dir, api: apitest.WithToken(e, apitest.Token(t, inv, auth.Operator, "")), boot: e}
}

func digest(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// payload is recognisable bytes: byte i is i mod 251, so any slice of it
// says where it came from.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i % 251)
	}
	return b
}

func do(t *testing.T, h http.Handler, req *http.Request) *httptest.ResponseRecorder {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func uploadRaw(t *testing.T, r rig, name string, body []byte, sum string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/images?name="+name+"&sha256="+sum+"&format=raw&osFamily=debian", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/octet-stream")
	return do(t, r.api, req)
}

// files lists the image directory: what an upload left behind.
func files(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil
	}
	require.NoError(t, err)
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func catalog(t *testing.T, r rig) []string {
	t.Helper()
	imgs, err := r.inv.ListImages(context.Background())
	require.NoError(t, err)
	var names []string
	for _, img := range imgs {
		names = append(names, img.Name)
	}
	return names
}

func TestUploadKeptOnlyWithTheRightDigest(t *testing.T) {
	r := newRig(t, Config{})
	body := payload(4096)

	wrong := uploadRaw(t, r, "debian-12", body, digest([]byte("something else")))
	require.Equal(t, http.StatusUnprocessableEntity, wrong.Code, wrong.Body.String())
	require.Contains(t, wrong.Body.String(), "sha256 mismatch")
	require.Contains(t, wrong.Body.String(), digest(body), "the message says what the bytes hash to")
	require.Empty(t, catalog(t, r), "nothing is recorded")
	require.Empty(t, files(t, r.dir), "nothing is kept on disk")

	ok := uploadRaw(t, r, "debian-12", body, digest(body))
	require.Equal(t, http.StatusCreated, ok.Code, ok.Body.String())
	require.Equal(t, "/api/v1/images/debian-12", ok.Header().Get("Location"))
	var got imageDetail
	require.NoError(t, json.Unmarshal(ok.Body.Bytes(), &got))
	require.Equal(t, "upload", got.Source)
	require.Equal(t, int64(4096), got.Size, "the size is what was received")
	require.Equal(t, "/boot/images/debian-12", got.BootPath)
	require.NotEmpty(t, got.CreatedBy)
	require.Equal(t, []string{"debian-12"}, files(t, r.dir), "only the image, no temporary file")
	stored, err := os.ReadFile(filepath.Join(r.dir, "debian-12"))
	require.NoError(t, err)
	require.Equal(t, body, stored)

	again := uploadRaw(t, r, "debian-12", payload(10), digest(payload(10)))
	require.Equal(t, http.StatusConflict, again.Code, again.Body.String())
	stored, err = os.ReadFile(filepath.Join(r.dir, "debian-12"))
	require.NoError(t, err)
	require.Equal(t, body, stored, "a refused upload leaves the image's bytes alone")

	bad := uploadRaw(t, r, "debian-13", body, digest(body)+"&size=4095")
	require.Equal(t, http.StatusUnprocessableEntity, bad.Code, bad.Body.String())
	require.Contains(t, bad.Body.String(), "size mismatch")
	require.Equal(t, []string{"debian-12"}, files(t, r.dir))
}

func multipartBody(t *testing.T, fields [][2]string, file []byte, fileFirst bool) (*bytes.Buffer, string) {
	t.Helper()
	var buf bytes.Buffer
	w := multipart.NewWriter(&buf)
	writeFile := func() {
		fw, err := w.CreateFormFile("file", "disk.img")
		require.NoError(t, err)
		_, err = fw.Write(file)
		require.NoError(t, err)
	}
	if fileFirst {
		writeFile()
	}
	for _, f := range fields {
		require.NoError(t, w.WriteField(f[0], f[1]))
	}
	if !fileFirst && file != nil {
		writeFile()
	}
	require.NoError(t, w.Close())
	return &buf, w.FormDataContentType()
}

func TestUploadMultipart(t *testing.T) {
	r := newRig(t, Config{})
	body := payload(1000)
	fields := [][2]string{{"name", "alma-9"}, {"sha256", digest(body)}, {"format", "qcow2"}, {"osFamily", "rhel"}, {"size", "1000"}}

	buf, ct := multipartBody(t, fields, body, true)
	req := httptest.NewRequest(http.MethodPost, "/api/v1/images", buf)
	req.Header.Set("Content-Type", ct)
	rec := do(t, r.api, req)
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "must come before the file part")
	require.Empty(t, files(t, r.dir))

	buf, ct = multipartBody(t, append(fields, [2]string{"colour", "red"}), body, false)
	req = httptest.NewRequest(http.MethodPost, "/api/v1/images", buf)
	req.Header.Set("Content-Type", ct)
	rec = do(t, r.api, req)
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), `unknown field`)
	require.Contains(t, rec.Body.String(), `colour`)

	// Something after the bytes: refused, and the spooled bytes go.
	var trailing bytes.Buffer
	w := multipart.NewWriter(&trailing)
	for _, f := range fields {
		require.NoError(t, w.WriteField(f[0], f[1]))
	}
	fw, err := w.CreateFormFile("file", "disk.img")
	require.NoError(t, err)
	_, err = fw.Write(body)
	require.NoError(t, err)
	require.NoError(t, w.WriteField("note", "late"))
	require.NoError(t, w.Close())
	req = httptest.NewRequest(http.MethodPost, "/api/v1/images", &trailing)
	req.Header.Set("Content-Type", w.FormDataContentType())
	rec = do(t, r.api, req)
	require.Equal(t, http.StatusBadRequest, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "must be the form's last")
	require.Empty(t, files(t, r.dir))
	require.Empty(t, catalog(t, r))

	buf, ct = multipartBody(t, fields, body, false)
	req = httptest.NewRequest(http.MethodPost, "/api/v1/images", buf)
	req.Header.Set("Content-Type", ct)
	rec = do(t, r.api, req)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	stored, err := os.ReadFile(filepath.Join(r.dir, "alma-9"))
	require.NoError(t, err)
	require.Equal(t, body, stored)
	require.Equal(t, []string{"alma-9"}, catalog(t, r))
}

func TestUploadLimit(t *testing.T) {
	r := newRig(t, Config{MaxUploadBytes: 100})
	body := payload(101)
	rec := uploadRaw(t, r, "big", body, digest(body))
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code, "refused on Content-Length: %s", rec.Body)

	// Without a length the limit holds as the bytes arrive.
	req := httptest.NewRequest(http.MethodPost, "/api/v1/images?name=big&format=raw&osFamily=debian&sha256="+digest(body), io.MultiReader(bytes.NewReader(body)))
	req.ContentLength = -1
	req.Header.Set("Content-Type", "application/octet-stream")
	rec = do(t, r.api, req)
	require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code, rec.Body.String())
	require.Empty(t, files(t, r.dir), "nothing is kept")
	require.Empty(t, catalog(t, r))

	rec = uploadRaw(t, r, "fits", payload(100), digest(payload(100)))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
}

func postJSON(t *testing.T, h http.Handler, body string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/api/v1/images", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	return do(t, h, req)
}

func TestURLImageAndBadInput(t *testing.T) {
	r := newRig(t, Config{})
	sum := digest([]byte("x"))
	rec := postJSON(t, r.api, `{"name":"ubuntu-24.04","url":"https://mirror.example/u.raw.zst","sha256":"`+sum+`","format":"raw.zst","osFamily":"ubuntu"}`)
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	var got imageDetail
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &got))
	require.Equal(t, "url", got.Source)
	require.Equal(t, "https://mirror.example/u.raw.zst", got.URL)
	require.Equal(t, []string{"r650"}, got.Profiles)
	require.Empty(t, files(t, r.dir), "a URL image keeps no bytes")

	for _, tc := range []struct {
		name, body string
		status     int
		msg        string
	}{
		{"taken name", `{"name":"ubuntu-24.04","url":"https://x/y","sha256":"` + sum + `","format":"raw","osFamily":"ubuntu"}`, 409, "exists"},
		{"no url", `{"name":"u2","sha256":"` + sum + `","format":"raw","osFamily":"ubuntu"}`, 422, "url is required"},
		{"bad digest", `{"name":"u2","url":"https://x/y","sha256":"abc","format":"raw","osFamily":"ubuntu"}`, 422, "64 hex digits"},
		{"bad format", `{"name":"u2","url":"https://x/y","sha256":"` + sum + `","format":"iso","osFamily":"ubuntu"}`, 422, "format must be one of"},
		{"bad url", `{"name":"u2","url":"file:///etc/passwd","sha256":"` + sum + `","format":"raw","osFamily":"ubuntu"}`, 422, "http(s) URL"},
		{"bad name", `{"name":"../u2","url":"https://x/y","sha256":"` + sum + `","format":"raw","osFamily":"ubuntu"}`, 400, "image name"},
		{"unknown field", `{"name":"u2","url":"https://x/y","sha256":"` + sum + `","format":"raw","osFamily":"ubuntu","arch":"arm"}`, 400, "unknown field"},
		{"malformed", `{"name":`, 400, "invalid JSON"},
	} {
		rec := postJSON(t, r.api, tc.body)
		require.Equal(t, tc.status, rec.Code, "%s: %s", tc.name, rec.Body)
		require.Contains(t, rec.Body.String(), tc.msg, tc.name)
	}
	req := httptest.NewRequest(http.MethodPost, "/api/v1/images", strings.NewReader("x"))
	req.Header.Set("Content-Type", "text/plain")
	require.Equal(t, http.StatusUnsupportedMediaType, do(t, r.api, req).Code)
	require.Equal(t, []string{"ubuntu-24.04"}, catalog(t, r), "no refused request changed the catalog")

	list := do(t, r.api, httptest.NewRequest(http.MethodGet, "/api/v1/images", nil))
	require.Equal(t, http.StatusOK, list.Code)
	require.Contains(t, list.Body.String(), `"name":"ubuntu-24.04"`)
	require.Equal(t, http.StatusNotFound, do(t, r.api, httptest.NewRequest(http.MethodGet, "/api/v1/images/nope", nil)).Code)
}

// pendingInstall issues install attempt 1 of a server writing image and
// returns its token.
func pendingInstall(t *testing.T, inv *inventory.Store, serial, image string) string {
	t.Helper()
	ctx := context.Background()
	_, err := inv.RegisterAsset(ctx, inventory.AssetRecord{Serial: serial}, "test")
	require.NoError(t, err)
	b, err := inv.IssueBoot(ctx, serial, 1, []string{"02:00:00:00:00:01"}, time.Hour)
	require.NoError(t, err)
	if image != "" {
		require.NoError(t, inv.SetBootImage(ctx, serial, 1, image))
	}
	return b.Token
}

func TestDeleteRefusedWhileReferenced(t *testing.T) {
	r := newRig(t, Config{})
	body := payload(64)
	require.Equal(t, http.StatusCreated, uploadRaw(t, r, "ubuntu-24.04", body, digest(body)).Code)
	require.Equal(t, http.StatusCreated, uploadRaw(t, r, "debian-12", body, digest(body)).Code)
	del := func(name string) *httptest.ResponseRecorder {
		return do(t, r.api, httptest.NewRequest(http.MethodDelete, "/api/v1/images/"+name, nil))
	}

	rec := del("ubuntu-24.04")
	require.Equal(t, http.StatusConflict, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "profile r650")

	token := pendingInstall(t, r.inv, "SN-1", "debian-12")
	rec = del("debian-12")
	require.Equal(t, http.StatusConflict, rec.Code, rec.Body.String())
	require.Contains(t, rec.Body.String(), "SN-1")
	require.ElementsMatch(t, []string{"debian-12", "ubuntu-24.04"}, files(t, r.dir), "a refused delete keeps the bytes")

	_, err := r.inv.ConsumePhoneHome(context.Background(), token)
	require.NoError(t, err)
	rec = del("debian-12")
	require.Equal(t, http.StatusNoContent, rec.Code, rec.Body.String())
	require.Equal(t, []string{"ubuntu-24.04"}, files(t, r.dir), "the bytes go with the image")
	require.Equal(t, http.StatusNotFound, del("debian-12").Code)
}

func fetch(t *testing.T, h http.Handler, method, target string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, target, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return do(t, h, req)
}

func TestServeUploadWithRanges(t *testing.T) {
	r := newRig(t, Config{})
	body := payload(100)
	require.Equal(t, http.StatusCreated, uploadRaw(t, r, "debian-12", body, digest(body)).Code)
	require.Equal(t, http.StatusCreated, uploadRaw(t, r, "alma-9", body, digest(body)).Code)
	token := pendingInstall(t, r.inv, "SN-1", "debian-12")
	bearer := "Bearer " + token
	const path = "/boot/images/debian-12"

	rec := fetch(t, r.boot, "GET", path, "Authorization", bearer)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, body, rec.Body.Bytes())
	require.Equal(t, "bytes", rec.Header().Get("Accept-Ranges"))
	require.Equal(t, "application/octet-stream", rec.Header().Get("Content-Type"))
	require.Equal(t, `"`+digest(body)+`"`, rec.Header().Get("ETag"))

	rec = fetch(t, r.boot, "GET", path, "Authorization", bearer, "Range", "bytes=0-9")
	require.Equal(t, http.StatusPartialContent, rec.Code)
	require.Equal(t, "bytes 0-9/100", rec.Header().Get("Content-Range"))
	require.Equal(t, body[:10], rec.Body.Bytes())

	rec = fetch(t, r.boot, "GET", path+"?token="+token, "Range", "bytes=-10")
	require.Equal(t, http.StatusPartialContent, rec.Code, "the token as a query parameter: %s", rec.Body)
	require.Equal(t, "bytes 90-99/100", rec.Header().Get("Content-Range"))
	require.Equal(t, body[90:], rec.Body.Bytes())

	rec = fetch(t, r.boot, "GET", path, "Authorization", bearer, "Range", "bytes=200-300")
	require.Equal(t, http.StatusRequestedRangeNotSatisfiable, rec.Code)
	require.Equal(t, "bytes */100", rec.Header().Get("Content-Range"))

	// Resuming against other bytes (another ETag) starts over in full.
	rec = fetch(t, r.boot, "GET", path, "Authorization", bearer, "Range", "bytes=50-", "If-Range", `"stale"`)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Len(t, rec.Body.Bytes(), 100)

	rec = fetch(t, r.boot, "HEAD", path, "Authorization", bearer)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "100", rec.Header().Get("Content-Length"))
	require.Empty(t, rec.Body.Bytes())

	// Bound to the pending install and its image.
	require.Equal(t, http.StatusUnauthorized, fetch(t, r.boot, "GET", path).Code)
	require.Equal(t, http.StatusUnauthorized, fetch(t, r.boot, "GET", path, "Authorization", "Basic dTpw").Code)
	require.Equal(t, http.StatusForbidden, fetch(t, r.boot, "GET", path, "Authorization", "Bearer nope").Code)
	rec = fetch(t, r.boot, "GET", "/boot/images/alma-9", "Authorization", bearer)
	require.Equal(t, http.StatusForbidden, rec.Code)
	require.Contains(t, rec.Body.String(), "writes image debian-12, not alma-9")
	_, err := r.inv.ConsumePhoneHome(context.Background(), token)
	require.NoError(t, err)
	require.Equal(t, http.StatusForbidden, fetch(t, r.boot, "GET", path, "Authorization", bearer).Code, "the install is over")
}

func TestServeOpen(t *testing.T) {
	r := newRig(t, Config{Open: true})
	body := payload(10)
	require.Equal(t, http.StatusCreated, uploadRaw(t, r, "debian-12", body, digest(body)).Code)
	rec := fetch(t, r.boot, "GET", "/boot/images/debian-12")
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.Equal(t, body, rec.Body.Bytes())
	require.Equal(t, http.StatusNotFound, fetch(t, r.boot, "GET", "/boot/images/nope").Code)
}

// origin is an image server that records what it was asked.
type origin struct {
	body []byte
	mu   sync.Mutex
	got  []http.Header
	fail bool
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	o.got = append(o.got, r.Header.Clone())
	fail := o.fail
	o.mu.Unlock()
	if fail {
		http.Error(w, "gone", http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Type", "application/zstd")
	w.Header().Set("Set-Cookie", "tracking=1")
	http.ServeContent(w, r, "", time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), bytes.NewReader(o.body))
}

func (o *origin) last() http.Header {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.got[len(o.got)-1]
}

func TestServeProxiedWithRangeRelayed(t *testing.T) {
	o := &origin{body: payload(1000)}
	srv := httptest.NewServer(o)
	defer srv.Close()
	r := newRig(t, Config{})
	rec := postJSON(t, r.api, fmt.Sprintf(`{"name":"ubuntu-24.04","url":"%s/u.raw.zst","sha256":"%s","format":"raw.zst","osFamily":"ubuntu"}`, srv.URL, digest(o.body)))
	require.Equal(t, http.StatusCreated, rec.Code, rec.Body.String())
	bearer := "Bearer " + pendingInstall(t, r.inv, "SN-1", "ubuntu-24.04")
	const path = "/boot/images/ubuntu-24.04"

	rec = fetch(t, r.boot, "GET", path, "Authorization", bearer, "Range", "bytes=10-19")
	require.Equal(t, http.StatusPartialContent, rec.Code, rec.Body.String())
	require.Equal(t, "bytes=10-19", o.last().Get("Range"), "the Range reaches the origin")
	require.Equal(t, "identity", o.last().Get("Accept-Encoding"), "no transparent decompression shifting offsets")
	require.Empty(t, o.last().Get("Authorization"), "the install token stays with metalflow")
	require.Equal(t, "bytes 10-19/1000", rec.Header().Get("Content-Range"))
	require.Equal(t, o.body[10:20], rec.Body.Bytes())
	require.Equal(t, "application/octet-stream", rec.Header().Get("Content-Type"))
	require.Empty(t, rec.Header().Get("Set-Cookie"), "only range headers are relayed")

	rec = fetch(t, r.boot, "GET", path, "Authorization", bearer)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, o.body, rec.Body.Bytes())
	require.Equal(t, "1000", rec.Header().Get("Content-Length"))

	rec = fetch(t, r.boot, "GET", path, "Authorization", bearer, "Range", "bytes=5000-")
	require.Equal(t, http.StatusRequestedRangeNotSatisfiable, rec.Code)
	require.Equal(t, "bytes */1000", rec.Header().Get("Content-Range"))

	rec = fetch(t, r.boot, "HEAD", path, "Authorization", bearer)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Equal(t, "1000", rec.Header().Get("Content-Length"))
	require.Empty(t, rec.Body.Bytes())

	o.mu.Lock()
	o.fail = true
	o.mu.Unlock()
	rec = fetch(t, r.boot, "GET", path, "Authorization", bearer)
	require.Equal(t, http.StatusBadGateway, rec.Code)
	require.Contains(t, rec.Body.String(), "404")
	srv.Close()
	rec = fetch(t, r.boot, "GET", path, "Authorization", bearer)
	require.Equal(t, http.StatusBadGateway, rec.Code, rec.Body.String())
}
