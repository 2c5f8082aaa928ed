package agent

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"strings"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

// probeBytes is how much of the image is read before choosing a disk: a
// qcow2 header with its extensions fits.
const probeBytes = 4096

// image is the plan's image once probed: reachable, of the declared
// format, with its expanded size if it can be known before writing.
type image struct {
	spec agentapi.Image
	src  *source
	size int64
	qcow *qcow2Image
}

// probeImage checks the image before any disk is touched, so that an
// unreachable or malformed image leaves the old disk as it was.
func probeImage(ctx context.Context, src *source, spec agentapi.Image) (*image, error) {
	if sum, err := hex.DecodeString(spec.SHA256); err != nil || len(sum) != 32 {
		return nil, fail(agentapi.ClassPlanInvalid, "image sha256 %q is not a hex SHA-256", spec.SHA256)
	}
	switch spec.Format {
	case agentapi.FormatRaw, agentapi.FormatRawGzip, agentapi.FormatRawZstd, agentapi.FormatQCOW2:
	default:
		return nil, fail(agentapi.ClassPlanInvalid, "image format %q is not one of raw, raw+gzip, raw+zstd, qcow2", spec.Format)
	}
	head, total, err := src.fetchRange(ctx, 0, probeBytes)
	if err != nil {
		return nil, err
	}
	im := &image{spec: spec, src: src, size: spec.Size}
	switch spec.Format {
	case agentapi.FormatQCOW2:
		if im.qcow, err = parseQCOW2(ctx, src, head); err != nil {
			return nil, err
		}
		im.size = im.qcow.virtualSize
	case agentapi.FormatRaw:
		// Written raw, a qcow2 file would be a disk that never boots.
		if isQCOW2(head) {
			return nil, fail(agentapi.ClassImageInvalid, "the image is declared raw but is a qcow2 file")
		}
		if im.size == 0 && total > 0 {
			im.size = total
		}
	}
	return im, nil
}

// write streams the image onto the disk and checks its SHA-256; it
// returns the bytes written.
func (im *image) write(ctx context.Context, t *target) (int64, error) {
	sctx, cancel := context.WithCancel(ctx)
	st := im.src.open(sctx)
	sum := sha256.New()
	// Chunks of the write size: a raw image is written from these buffers.
	in := newPrefetch(st, chunkBytes, 4, sum)
	var decoded *prefetch
	defer func() {
		// Cancelling the download unblocks the goroutines reading it.
		cancel()
		if decoded != nil {
			decoded.Close()
		}
		in.Close()
		st.close()
	}()
	var n int64
	var err error
	switch im.spec.Format {
	case agentapi.FormatRaw:
		n, err = t.copyFrom(in)
	case agentapi.FormatRawGzip:
		var gz *gzip.Reader
		if gz, err = gzip.NewReader(in); err == nil {
			decoded = newPrefetch(gz, chunkBytes, 2, nil)
			n, err = t.copyFrom(decoded)
		}
	case agentapi.FormatRawZstd:
		var dec *zstd.Decoder
		if dec, err = zstd.NewReader(in, zstd.WithDecoderConcurrency(1)); err == nil {
			defer dec.Close()
			decoded = newPrefetch(dec, chunkBytes, 2, nil)
			n, err = t.copyFrom(decoded)
		}
	case agentapi.FormatQCOW2:
		n, err = im.qcow.write(in, t)
	}
	if err != nil {
		var f *failure
		if !errors.As(err, &f) && ctx.Err() == nil {
			// Not the download, not the disk: the decompressor. Corrupt
			// bytes in transit are a checksum failure, though, which the
			// rest of the stream tells.
			if verr := im.verify(in, st, sum); verr != nil {
				return n, verr
			}
			err = fail(agentapi.ClassImageInvalid, "%s image: %v", im.spec.Format, err)
		}
		return n, err
	}
	if err := im.verify(in, st, sum); err != nil {
		return n, err
	}
	if im.size > 0 && n < im.size && im.spec.Format != agentapi.FormatQCOW2 {
		return n, fail(agentapi.ClassImageInvalid, "the image expanded to %d bytes, the plan says %d", n, im.size)
	}
	return n, nil
}

// verify reads what the format did not need (trailing metadata) so the
// checksum covers every byte, then checks it.
func (im *image) verify(in io.Reader, st *stream, sum hash.Hash) error {
	if _, err := io.Copy(io.Discard, in); err != nil {
		return err
	}
	if got := hex.EncodeToString(sum.Sum(nil)); !strings.EqualFold(got, im.spec.SHA256) {
		return fail(agentapi.ClassChecksum, "image SHA-256 is %s, the plan says %s (%d bytes downloaded)", got, im.spec.SHA256, st.off)
	}
	return nil
}
