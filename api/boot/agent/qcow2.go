package agent

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"slices"

	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

// A qcow2 image is written in one sequential pass over the file, so it is
// hashed like any other format and never stored: the header, L1 and L2
// tables are read first with Range requests, which map every guest cluster
// to its place in the file (or to zeros); then the file streams from its
// first byte to its last, and each data cluster is written at its guest
// offset as it passes. The tables pass again in the stream and are checked
// against what was read, so the checksum vouches for the mapping too.
//
// See docs/interop/qcow2.txt in QEMU for the format.

const (
	qcowMagic = 0x514649fb // "QFI\xfb"
	// Incompatible feature bits the agent understands.
	qcowDirty            = 1 << 0 // refcounts may be stale: irrelevant to reading
	qcowCompressionField = 1 << 3 // the header names the compression type
	// L2 entry bits.
	qcowCompressed  = 1 << 62
	qcowZeroFlag    = 1 << 0
	qcowOffsetMask  = 0x00fffffffffffe00
	qcowHeaderV2Len = 72
	// maxMergedRun bounds how many contiguous data clusters are written in
	// one piece.
	maxMergedRun = chunkBytes
)

type qcowKind int

const (
	qcowData       qcowKind = iota // copy to guest
	qcowDeflated                   // decompress to guest
	qcowCheckTable                 // compare with the tables already read
)

// qcowExtent is a byte range of the file and what to do with it.
type qcowExtent struct {
	host, length int64
	kind         qcowKind
	guest        int64
	expect       []byte
}

type qcow2Image struct {
	clusterBits uint
	virtualSize int64
	zstd        bool
	// extents are in file order; zeros are guest ranges no cluster holds.
	extents []qcowExtent
	zeros   []extent
}

func be32(b []byte, off int) uint32 { return binary.BigEndian.Uint32(b[off:]) }
func be64(b []byte, off int) uint64 { return binary.BigEndian.Uint64(b[off:]) }

// isQCOW2 tells a qcow2 file by its magic.
func isQCOW2(head []byte) bool {
	return len(head) >= 4 && be32(head, 0) == qcowMagic
}

// parseQCOW2 reads the image's tables: head is the file's first bytes.
func parseQCOW2(ctx context.Context, src *source, head []byte) (*qcow2Image, error) {
	invalid := func(format string, args ...any) error {
		return fail(agentapi.ClassImageInvalid, "qcow2: "+format, args...)
	}
	if len(head) < qcowHeaderV2Len || !isQCOW2(head) {
		return nil, invalid("no qcow2 header")
	}
	version := be32(head, 4)
	if version != 2 && version != 3 {
		return nil, invalid("version %d", version)
	}
	if be64(head, 8) != 0 {
		return nil, invalid("the image has a backing file; flatten it (qemu-img convert) first")
	}
	q := &qcow2Image{clusterBits: uint(be32(head, 20)), virtualSize: int64(be64(head, 24))}
	if q.clusterBits < 9 || q.clusterBits > 21 {
		return nil, invalid("cluster bits %d", q.clusterBits)
	}
	if be32(head, 32) != 0 {
		return nil, invalid("the image is encrypted")
	}
	headerLen := int64(qcowHeaderV2Len)
	if version == 3 {
		if len(head) < 104 {
			return nil, invalid("short v3 header")
		}
		incompatible := be64(head, 72)
		if unknown := incompatible &^ (qcowDirty | qcowCompressionField); unknown != 0 {
			// Corrupt (bit 1), external data file (bit 2), extended L2
			// entries (bit 4), or newer.
			return nil, invalid("incompatible features %#x are not supported", unknown)
		}
		headerLen = int64(be32(head, 100))
		if incompatible&qcowCompressionField != 0 && headerLen > 104 && len(head) > 104 {
			switch head[104] {
			case 0:
			case 1:
				q.zstd = true
			default:
				return nil, invalid("compression type %d", head[104])
			}
		}
	}
	if headerLen > int64(len(head)) {
		return nil, invalid("header of %d bytes", headerLen)
	}
	q.extents = append(q.extents, qcowExtent{host: 0, length: headerLen, kind: qcowCheckTable, expect: head[:headerLen]})

	clusterSize := int64(1) << q.clusterBits
	l2Entries := clusterSize / 8
	l1Size := int64(be32(head, 36))
	l1Off := int64(be64(head, 40))
	if need := (q.virtualSize + clusterSize*l2Entries - 1) / (clusterSize * l2Entries); l1Size < need {
		return nil, invalid("L1 table of %d entries for %d bytes", l1Size, q.virtualSize)
	}
	l1, _, err := src.fetchRange(ctx, l1Off, l1Size*8)
	if err != nil {
		return nil, err
	}
	if int64(len(l1)) != l1Size*8 {
		return nil, invalid("the file ends inside the L1 table")
	}
	q.extents = append(q.extents, qcowExtent{host: l1Off, length: l1Size * 8, kind: qcowCheckTable, expect: l1})

	l2s, err := q.fetchL2Tables(ctx, src, l1, clusterSize)
	if err != nil {
		return nil, err
	}
	var data []qcowExtent
	csizeShift := 62 - (q.clusterBits - 8)
	for i := range l1Size {
		guestBase := i * l2Entries * clusterSize
		if guestBase >= q.virtualSize {
			break
		}
		l2Off := int64(be64(l1, int(i*8)) & qcowOffsetMask)
		if l2Off == 0 {
			q.zeros = appendExtent(q.zeros, extent{guestBase, min(l2Entries*clusterSize, q.virtualSize-guestBase)})
			continue
		}
		l2 := l2s[l2Off]
		for j := range l2Entries {
			guest := guestBase + j*clusterSize
			if guest >= q.virtualSize {
				break
			}
			length := min(clusterSize, q.virtualSize-guest)
			entry := be64(l2, int(j*8))
			switch {
			case entry&qcowCompressed != 0:
				host := int64(entry & (1<<csizeShift - 1))
				sectors := int64((entry>>csizeShift)&(1<<(q.clusterBits-8)-1)) + 1
				data = append(data, qcowExtent{host: host, length: sectors*512 - host&511, kind: qcowDeflated, guest: guest})
			case entry&qcowOffsetMask == 0 || (version == 3 && entry&qcowZeroFlag != 0):
				q.zeros = appendExtent(q.zeros, extent{guest, length})
			default:
				host := int64(entry & qcowOffsetMask)
				if n := len(data); n > 0 && data[n-1].kind == qcowData &&
					data[n-1].host+data[n-1].length == host && data[n-1].guest+data[n-1].length == guest &&
					data[n-1].length+length <= maxMergedRun {
					data[n-1].length += length
					continue
				}
				data = append(data, qcowExtent{host: host, length: length, kind: qcowData, guest: guest})
			}
		}
	}
	q.extents = append(q.extents, data...)
	slices.SortStableFunc(q.extents, func(a, b qcowExtent) int { return cmp.Compare(a.host, b.host) })
	return q, nil
}

// fetchL2Tables reads the L2 tables the L1 table points to, contiguous
// tables in one request, and queues them for checking in the stream.
func (q *qcow2Image) fetchL2Tables(ctx context.Context, src *source, l1 []byte, clusterSize int64) (map[int64][]byte, error) {
	var offs []int64
	for i := 0; i+8 <= len(l1); i += 8 {
		if off := int64(be64(l1, i) & qcowOffsetMask); off != 0 {
			offs = append(offs, off)
		}
	}
	slices.Sort(offs)
	offs = slices.Compact(offs)
	tables := make(map[int64][]byte, len(offs))
	for len(offs) > 0 {
		run := 1
		for run < len(offs) && offs[run] == offs[0]+int64(run)*clusterSize && int64(run+1)*clusterSize <= maxMergedRun {
			run++
		}
		b, _, err := src.fetchRange(ctx, offs[0], int64(run)*clusterSize)
		if err != nil {
			return nil, err
		}
		if int64(len(b)) != int64(run)*clusterSize {
			return nil, fail(agentapi.ClassImageInvalid, "qcow2: the file ends inside the L2 table at %d", offs[0])
		}
		q.extents = append(q.extents, qcowExtent{host: offs[0], length: int64(len(b)), kind: qcowCheckTable, expect: b})
		for k := range run {
			tables[offs[k]] = b[int64(k)*clusterSize : int64(k+1)*clusterSize]
		}
		offs = offs[run:]
	}
	return tables, nil
}

// appendExtent adds e to ranges in ascending order, merging with the last.
func appendExtent(ranges []extent, e extent) []extent {
	if n := len(ranges); n > 0 && ranges[n-1].Off+ranges[n-1].Len == e.Off {
		ranges[n-1].Len += e.Len
		return ranges
	}
	return append(ranges, e)
}

// write zeroes the unallocated guest ranges, then streams the file once
// and writes each cluster where the tables put it.
func (q *qcow2Image) write(st io.Reader, t *target) (int64, error) {
	for _, z := range q.zeros {
		if err := t.zero(z.Off, z.Len); err != nil {
			return 0, err
		}
	}
	clusterSize := int64(1) << q.clusterBits
	cluster := make([]byte, clusterSize)
	var dec *zstd.Decoder
	if q.zstd {
		var err error
		if dec, err = zstd.NewReader(nil, zstd.WithDecoderConcurrency(1)); err != nil {
			return 0, err
		}
		defer dec.Close()
	}
	cur := cursor{r: st}
	var written int64
	for _, e := range q.extents {
		b, err := cur.read(e.host, e.host+e.length)
		if err != nil {
			return written, err
		}
		if e.kind != qcowDeflated && int64(len(b)) < e.length {
			return written, fail(agentapi.ClassImageInvalid, "qcow2: the file ends before byte %d", e.host+e.length)
		}
		switch e.kind {
		case qcowCheckTable:
			if !bytes.Equal(b, e.expect) {
				return written, fail(agentapi.ClassChecksum, "qcow2: the table at byte %d differs between its Range read and the stream", e.host)
			}
			continue
		case qcowDeflated:
			var r io.Reader
			if dec != nil {
				if err := dec.Reset(bytes.NewReader(b)); err != nil {
					return written, fail(agentapi.ClassImageInvalid, "qcow2: cluster at %d: %v", e.host, err)
				}
				r = dec
			} else {
				r = flate.NewReader(bytes.NewReader(b))
			}
			// The compressed range is rounded up to sectors, so it may
			// carry the next cluster's first bytes: read one cluster only.
			if _, err := io.ReadFull(r, cluster); err != nil {
				return written, fail(agentapi.ClassImageInvalid, "qcow2: compressed cluster at %d: %v", e.host, err)
			}
			b = cluster[:min(clusterSize, q.virtualSize-e.guest)]
		}
		if _, err := t.WriteAt(b, e.guest); err != nil {
			return written, err
		}
		written += int64(len(b))
		t.written.Add(int64(len(b)))
	}
	return written, nil
}

// cursor reads byte ranges of a stream in ascending order of their start.
// Ranges may overlap (a compressed cluster's sectors hold the start of the
// next), so it keeps the bytes from the last start on.
type cursor struct {
	r        io.Reader
	pos      int64
	win      []byte
	winStart int64
}

// read returns the bytes [start, end); the slice is valid until the next
// call. A range ending past the end of the file is cut short.
func (c *cursor) read(start, end int64) ([]byte, error) {
	switch {
	case start < c.winStart:
		return nil, fail(agentapi.ClassImageInvalid, "qcow2: clusters out of order at byte %d", start)
	case start >= c.pos:
		if _, err := io.CopyN(io.Discard, c.r, start-c.pos); err != nil {
			return nil, c.eof(err, start)
		}
		c.win, c.winStart, c.pos = c.win[:0], start, start
	default:
		c.win = c.win[start-c.winStart:]
		c.winStart = start
	}
	if end > c.pos {
		have := len(c.win)
		c.win = slices.Grow(c.win, int(end-c.pos))[:have+int(end-c.pos)]
		n, err := io.ReadFull(c.r, c.win[have:])
		c.win = c.win[:have+n]
		c.pos += int64(n)
		if err != nil && (n == 0 || (!errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF))) {
			return nil, c.eof(err, end)
		}
	}
	return c.win[:min(end, c.pos)-start], nil
}

func (c *cursor) eof(err error, at int64) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fail(agentapi.ClassImageInvalid, "qcow2: the file ends before byte %d", at)
	}
	return err
}
