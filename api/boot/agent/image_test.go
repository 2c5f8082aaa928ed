package agent

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

// pattern is a disk's worth of recognisable bytes with holes of zeros, so
// that qcow2 conversions have unallocated clusters to zero.
func pattern(size int) []byte {
	b := make([]byte, size)
	for i := 0; i < size; i += 8 {
		block := i / (256 << 10)
		if block%3 == 1 {
			continue // a 256 KiB hole
		}
		v := uint64(i)*0x9e3779b97f4a7c15 ^ uint64(block)
		for k := 0; k < 8 && i+k < size; k++ {
			b[i+k] = byte(v >> (8 * k))
		}
	}
	return b
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := gzip.NewWriter(&buf)
	if _, err := w.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func zstded(t *testing.T, b []byte) []byte {
	t.Helper()
	enc, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer enc.Close()
	return enc.EncodeAll(b, nil)
}

// qcow2Of converts raw bytes with qemu-img, as image pipelines do.
func qcow2Of(t *testing.T, raw []byte, args ...string) []byte {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Skip("qemu-img is not installed (apt-get install qemu-utils)")
	}
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.raw"), filepath.Join(dir, "out.qcow2")
	if err := os.WriteFile(in, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("qemu-img", append(append([]string{"convert", "-f", "raw", "-O", "qcow2"}, args...), in, out)...)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// imageServer serves one image with Range support, and misbehaves on
// request: dropCut > 0 cuts the connection after that many bytes of the
// first full GET (or, with stall, stops sending for that long instead);
// fail503 answers that many requests with 503 first.
type imageServer struct {
	data     []byte
	dropCut  int
	stall    time.Duration
	fail503  atomic.Int32
	dropped  atomic.Bool
	requests atomic.Int32
	ranges   atomic.Int32
}

func (s *imageServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	if r.Header.Get("Range") != "" {
		s.ranges.Add(1)
	}
	if s.fail503.Add(-1) >= 0 {
		http.Error(w, "busy", http.StatusServiceUnavailable)
		return
	}
	if s.dropCut > 0 && r.Header.Get("Range") == "" && !s.dropped.Swap(true) {
		w.Header().Set("Content-Length", strconv.Itoa(len(s.data)))
		w.WriteHeader(http.StatusOK)
		w.Write(s.data[:s.dropCut])
		w.(http.Flusher).Flush()
		select {
		case <-time.After(s.stall):
		case <-r.Context().Done():
		}
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return
	}
	http.ServeContent(w, r, "image", time.Time{}, bytes.NewReader(s.data))
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func testSource(url string) *source {
	return &source{
		client: http.DefaultClient, url: url, retries: 3, backoff: 10 * time.Millisecond, stall: time.Minute,
		log: slog.New(slog.DiscardHandler), notify: func(string) {},
	}
}

// diskFile stands for a disk: a file of size bytes of 0xAA, so that
// anything the agent did not write (or zero) shows.
func diskFile(t *testing.T, size int64) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "disk")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	junk := bytes.Repeat([]byte{0xAA}, mib)
	for off := int64(0); off < size; off += mib {
		if _, err := f.WriteAt(junk[:min(mib, size-off)], off); err != nil {
			t.Fatal(err)
		}
	}
	return path
}

func writeImage(t *testing.T, url string, spec agentapi.Image, diskPath string) (int64, *source, error) {
	t.Helper()
	src := testSource(url)
	spec.URL = url
	im, err := probeImage(context.Background(), src, spec)
	if err != nil {
		return 0, src, err
	}
	tg, err := openTarget(diskPath)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.f.Close()
	n, err := im.write(context.Background(), tg)
	return n, src, err
}

func TestStreamFormatsRoundTrip(t *testing.T) {
	raw := pattern(24 << 20)
	for _, tc := range []struct {
		name   string
		format agentapi.ImageFormat
		file   func() []byte
	}{
		{"raw", agentapi.FormatRaw, func() []byte { return raw }},
		{"gzip", agentapi.FormatRawGzip, func() []byte { return gzipped(t, raw) }},
		{"zstd", agentapi.FormatRawZstd, func() []byte { return zstded(t, raw) }},
		{"qcow2", agentapi.FormatQCOW2, func() []byte { return qcow2Of(t, raw) }},
		{"qcow2-compressed", agentapi.FormatQCOW2, func() []byte { return qcow2Of(t, raw, "-c") }},
		{"qcow2-v2-4k-clusters", agentapi.FormatQCOW2, func() []byte { return qcow2Of(t, raw, "-o", "compat=0.10,cluster_size=4096") }},
		{"qcow2-zstd", agentapi.FormatQCOW2, func() []byte { return qcow2Of(t, raw, "-c", "-o", "compression_type=zstd") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := tc.file()
			url := serve(t, &imageServer{data: file})
			disk := diskFile(t, 32<<20)
			n, src, err := writeImage(t, url, agentapi.Image{SHA256: sha(file), Format: tc.format}, disk)
			if err != nil {
				t.Fatal(err)
			}
			if n != int64(len(raw)) && tc.format != agentapi.FormatQCOW2 {
				t.Errorf("wrote %d bytes, want %d", n, len(raw))
			}
			if got := src.downloaded.Load(); got != int64(len(file)) {
				t.Errorf("downloaded %d bytes, the file has %d", got, len(file))
			}
			got, err := os.ReadFile(disk)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got[:len(raw)], raw) {
				t.Fatalf("disk differs from the raw image at byte %d", firstDiff(got, raw))
			}
			if !bytes.Equal(got[len(raw):], bytes.Repeat([]byte{0xAA}, len(got)-len(raw))) {
				t.Fatal("the agent wrote past the image")
			}
		})
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestStreamResumesAfterDropAnd503(t *testing.T) {
	raw := pattern(12 << 20)
	for _, tc := range []struct {
		name   string
		format agentapi.ImageFormat
		file   []byte
	}{
		{"gzip", agentapi.FormatRawGzip, gzipped(t, raw)},
		{"raw", agentapi.FormatRaw, raw},
		{"qcow2", agentapi.FormatQCOW2, qcow2Of(t, raw)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := &imageServer{data: tc.file, dropCut: len(tc.file) / 2}
			srv.fail503.Store(1)
			url := serve(t, srv)
			disk := diskFile(t, 16<<20)
			_, src, err := writeImage(t, url, agentapi.Image{SHA256: sha(tc.file), Format: tc.format}, disk)
			if err != nil {
				t.Fatal(err)
			}
			if !srv.dropped.Load() {
				t.Fatal("the server never dropped the connection")
			}
			if src.resumes.Load() != 1 {
				t.Errorf("resumes = %d, want 1", src.resumes.Load())
			}
			if got := src.downloaded.Load(); got != int64(len(tc.file)) {
				t.Errorf("downloaded %d bytes for a %d-byte file: a resume repeated or skipped bytes", got, len(tc.file))
			}
			got, _ := os.ReadFile(disk)
			if !bytes.Equal(got[:len(raw)], raw) {
				t.Fatalf("disk differs from the image at byte %d", firstDiff(got, raw))
			}
		})
	}
}

func TestStreamGivesUpAfterRetries(t *testing.T) {
	srv := &imageServer{data: pattern(1 << 20)}
	srv.fail503.Store(100)
	_, _, err := writeImage(t, serve(t, srv), agentapi.Image{SHA256: sha(srv.data), Format: agentapi.FormatRaw}, diskFile(t, 2<<20))
	if classOf(err) != agentapi.ClassImageUnreachable {
		t.Fatalf("%v, want image-unreachable", err)
	}
	if got := srv.requests.Load(); got != 4 {
		t.Errorf("%d requests, want 1 + 3 retries", got)
	}
}

func TestStreamClassifiesBadImages(t *testing.T) {
	raw := pattern(1 << 20)
	q := qcow2Of(t, raw)
	notFound := serve(t, http.NotFoundHandler())
	for _, tc := range []struct {
		name string
		url  string
		spec agentapi.Image
		want agentapi.FailureClass
	}{
		{"404", notFound, agentapi.Image{SHA256: sha(raw), Format: agentapi.FormatRaw}, agentapi.ClassImageUnreachable},
		{"checksum", serve(t, &imageServer{data: raw}), agentapi.Image{SHA256: sha([]byte("other")), Format: agentapi.FormatRaw}, agentapi.ClassChecksum},
		{"not gzip", serve(t, &imageServer{data: raw}), agentapi.Image{SHA256: sha(raw), Format: agentapi.FormatRawGzip}, agentapi.ClassImageInvalid},
		{"qcow2 declared raw", serve(t, &imageServer{data: q}), agentapi.Image{SHA256: sha(q), Format: agentapi.FormatRaw}, agentapi.ClassImageInvalid},
		{"unknown format", serve(t, &imageServer{data: raw}), agentapi.Image{SHA256: sha(raw), Format: "vmdk"}, agentapi.ClassPlanInvalid},
		{"bad sha", serve(t, &imageServer{data: raw}), agentapi.Image{SHA256: "abc", Format: agentapi.FormatRaw}, agentapi.ClassPlanInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, err := writeImage(t, tc.url, tc.spec, diskFile(t, 2<<20))
			if classOf(err) != tc.want {
				t.Fatalf("%v, want class %s", err, tc.want)
			}
		})
	}
}

func TestCorruptGzipIsAChecksumFailure(t *testing.T) {
	file := gzipped(t, pattern(4<<20))
	want := sha(file)
	bad := bytes.Clone(file)
	bad[len(bad)/2] ^= 0xff
	_, _, err := writeImage(t, serve(t, &imageServer{data: bad}), agentapi.Image{SHA256: want, Format: agentapi.FormatRawGzip}, diskFile(t, 8<<20))
	if classOf(err) != agentapi.ClassChecksum {
		t.Fatalf("%v, want checksum: bytes corrupted in transit, whatever the decompressor said", err)
	}
}

func TestStreamResumesAStalledDownload(t *testing.T) {
	raw := pattern(4 << 20)
	srv := &imageServer{data: raw, dropCut: len(raw) / 2, stall: 10 * time.Second}
	src := testSource(serve(t, srv))
	src.stall = 200 * time.Millisecond
	im, err := probeImage(context.Background(), src, agentapi.Image{URL: src.url, SHA256: sha(raw), Format: agentapi.FormatRaw})
	if err != nil {
		t.Fatal(err)
	}
	disk := diskFile(t, 8<<20)
	tg, err := openTarget(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer tg.f.Close()
	begin := time.Now()
	if _, err := im.write(context.Background(), tg); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(begin); took > 5*time.Second || src.resumes.Load() != 1 {
		t.Fatalf("took %s with %d resumes: the stalled connection was waited out, not resumed", took, src.resumes.Load())
	}
	if got := readAt(t, disk, 0, int64(len(raw))); !bytes.Equal(got, raw) {
		t.Fatal("disk differs from the image")
	}
}
