package api

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/metalflow/metalflow/api/internal/apitest"
	"github.com/metalflow/metalflow/inventory"
)

// TestOpenAPIContractImages holds the image routes' answers, and the
// requests the document accepts, to api/openapi.json. Cases run in order:
// each leaves the catalog as the next expects.
func TestOpenAPIContractImages(t *testing.T) {
	s, inv := newContractServer(t)
	doc := loadDoc(t, openAPIDocument)
	ctx := context.Background()
	bytes := strings.Repeat("metalflow image bytes ", 10)
	sum := sha256.Sum256([]byte(bytes))
	digest := hex.EncodeToString(sum[:])
	other := strings.Repeat("0", 64)
	urlImage := `{"name":"ubuntu-24.04","url":"https://mirror.example/u.raw.zst","sha256":"` + digest + `","format":"raw.zst","osFamily":"ubuntu"}`
	const boundary = "b0undary"
	form := "--" + boundary + "\r\nContent-Disposition: form-data; name=\"name\"\r\n\r\nalma-9\r\n" +
		"--" + boundary + "\r\nContent-Disposition: form-data; name=\"sha256\"\r\n\r\n" + digest + "\r\n" +
		"--" + boundary + "\r\nContent-Disposition: form-data; name=\"format\"\r\n\r\nqcow2\r\n" +
		"--" + boundary + "\r\nContent-Disposition: form-data; name=\"osFamily\"\r\n\r\nrhel\r\n" +
		"--" + boundary + "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"alma.qcow2\"\r\nContent-Type: application/octet-stream\r\n\r\n" + bytes + "\r\n" +
		"--" + boundary + "--\r\n"
	raw := "/api/v1/images?name=debian-12&format=raw&osFamily=debian&sha256="

	_, err := inv.RegisterAsset(ctx, inventory.AssetRecord{Serial: "SN-IMG"}, "test")
	require.NoError(t, err)
	boot, err := inv.IssueBoot(ctx, "SN-IMG", 1, []string{"52:54:00:00:00:09"}, time.Hour)
	require.NoError(t, err)
	steps := []struct {
		contractCase
		after func()
	}{
		{contractCase: contractCase{"list images empty", "GET", "/api/v1/images", "", "", 200, true}},
		{contractCase: contractCase{"create URL image", "POST", "/api/v1/images", apitest.JSON, urlImage, 201, true}},
		{contractCase: contractCase{"create URL image again", "POST", "/api/v1/images", apitest.JSON, urlImage, 409, true}},
		{contractCase: contractCase{"image without url", "POST", "/api/v1/images", apitest.JSON, `{"name":"u2","sha256":"` + digest + `","format":"raw","osFamily":"ubuntu"}`, 422, false}},
		{contractCase: contractCase{"image with a short digest", "POST", "/api/v1/images", apitest.JSON, `{"name":"u2","url":"https://x/y","sha256":"abc","format":"raw","osFamily":"ubuntu"}`, 422, false}},
		{contractCase: contractCase{"image of an unknown format", "POST", "/api/v1/images", apitest.JSON, `{"name":"u2","url":"https://x/y","sha256":"` + digest + `","format":"iso","osFamily":"ubuntu"}`, 422, false}},
		{contractCase: contractCase{"image with a bad name", "POST", "/api/v1/images", apitest.JSON, `{"name":"-u2","url":"https://x/y","sha256":"` + digest + `","format":"raw","osFamily":"ubuntu"}`, 400, false}},
		{contractCase: contractCase{"image with an unknown field", "POST", "/api/v1/images", apitest.JSON, `{"name":"u2","url":"https://x/y","sha256":"` + digest + `","format":"raw","osFamily":"ubuntu","arch":"x86"}`, 400, false}},
		{contractCase: contractCase{"image malformed", "POST", "/api/v1/images", apitest.JSON, `{"name":`, 400, false}},
		{contractCase: contractCase{"image as text", "POST", "/api/v1/images", "text/plain", urlImage, 415, false}},
		{contractCase: contractCase{"upload with the wrong digest", "POST", raw + other, "application/octet-stream", bytes, 422, true}},
		{contractCase: contractCase{"upload", "POST", raw + digest, "application/octet-stream", bytes, 201, true}},
		{contractCase: contractCase{"upload multipart", "POST", "/api/v1/images", "multipart/form-data; boundary=" + boundary, form, 201, true}},
		{contractCase: contractCase{"list images", "GET", "/api/v1/images", "", "", 200, true}},
		{contractCase: contractCase{"image", "GET", "/api/v1/images/debian-12", "", "", 200, true}},
		{contractCase: contractCase{"image unknown", "GET", "/api/v1/images/nope", "", "", 404, true}},
		{contractCase: contractCase{"image bad name", "GET", "/api/v1/images/.x", "", "", 400, false}},
		{contractCase: contractCase{"server with an unknown image", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","image":"nope"}`, 422, true}},
		{contractCase: contractCase{"server with a bad image name", "POST", "/api/v1/servers", apitest.JSON, `{"serial":"SN-1","image":"a/b"}`, 400, false}},
		{contractCase: contractCase{"boot image with an API token, not an install's", "GET", "/boot/images/debian-12", "", "", 403, true}},
		{contractCase: contractCase{"boot image, no such token", "GET", "/boot/images/debian-12?token=nope", "", "", 403, true}},
		{contractCase: contractCase{"boot image of another install", "GET", "/boot/images/debian-12?token=" + boot.Token, "", "", 403, true},
			after: func() { require.NoError(t, inv.SetBootImage(ctx, "SN-IMG", 1, "debian-12")) }},
		{contractCase: contractCase{"boot image", "GET", "/boot/images/debian-12?token=" + boot.Token, "", "", 200, true}},
		{contractCase: contractCase{"boot image head", "HEAD", "/boot/images/debian-12?token=" + boot.Token, "", "", 200, true}},
		{contractCase: contractCase{"delete image in use", "DELETE", "/api/v1/images/debian-12", "", "", 409, true}},
		{contractCase: contractCase{"delete image", "DELETE", "/api/v1/images/alma-9", "", "", 204, true}},
		{contractCase: contractCase{"delete image unknown", "DELETE", "/api/v1/images/alma-9", "", "", 404, true}},
	}
	for _, c := range steps {
		x := apitest.Call(t, s, c.method, c.target, c.contentType, c.body)
		require.Equal(t, c.status, x.Status, "%s: %s", c.name, x.Body)
		require.NoError(t, doc.CheckResponse(x.Req, x.Status, x.Header, x.Body), "%s: %s", c.name, x.Body)
		err := doc.CheckRequest(x.Req, x.ReqBody)
		if c.docAccepts {
			require.NoError(t, err, "%s: the document refuses a request the API takes as well-formed", c.name)
		} else {
			require.Error(t, err, "%s: the document accepts input the API refuses as malformed", c.name)
		}
		if c.after != nil {
			c.after()
		}
	}
	// A ranged fetch, the token as a header, as the deploy agent sends it.
	req := httptest.NewRequest(http.MethodGet, "/boot/images/debian-12", nil)
	req.Header.Set("Authorization", "Bearer "+boot.Token)
	req.Header.Set("Range", "bytes=0-9")
	rec := httptest.NewRecorder()
	s.ServeHTTP(rec, req)
	require.Equal(t, http.StatusPartialContent, rec.Code, rec.Body.String())
	require.Equal(t, bytes[:10], rec.Body.String())
	require.NoError(t, doc.CheckResponse(req, rec.Code, rec.Header(), rec.Body.Bytes()))
	require.NoError(t, doc.CheckRequest(req, nil))
}
