package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/metalflow/metalflow/api/boot/agentapi"
)

const (
	mib = 1 << 20
	// chunkBytes is the write size: large enough that a disk streams at
	// its sequential rate, small enough to stay cheap in a 512 MiB agent.
	chunkBytes = 4 * mib
	// align is what O_DIRECT asks of a write's memory, offset and length:
	// a page, which covers disks of 512- and 4096-byte logical blocks.
	align = 4096
	// blkZeroOut is BLKZEROOUT (_IO(0x12, 127)): the device zeroes a range
	// itself (WRITE ZEROES/UNMAP) instead of the agent sending zeros.
	blkZeroOut = 0x127f
)

// target is the disk being installed. Writes past limit (the end of the
// room left for the image: the disk minus the seed partition) fail as
// disk-too-small, and any write error as write-failed.
type target struct {
	f *os.File
	// direct is the same disk opened with O_DIRECT, nil where that is
	// refused. Aligned writes go through it: the page cache would cost a
	// copy of every byte (dear on a slow CPU) and hold the image back in
	// writeback until the final flush.
	direct *os.File
	size   int64
	limit  int64
	block  bool
	// written counts image bytes for progress reports.
	written atomic.Int64
}

// openTarget opens a disk (or, in tests, a regular file standing for one).
// O_EXCL on a block device fails if anything has it mounted.
func openTarget(path string) (*target, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fail(agentapi.ClassWriteFailed, "open %s: %v", path, err)
	}
	flags := os.O_RDWR
	block := fi.Mode()&os.ModeDevice != 0
	if block {
		flags |= unix.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		return nil, fail(agentapi.ClassWriteFailed, "open %s: %v", path, err)
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		f.Close()
		return nil, fail(agentapi.ClassWriteFailed, "size of %s: %v", path, err)
	}
	t := &target{f: f, size: size, limit: size, block: block}
	// Not O_EXCL: f holds the disk's exclusive claim, which a second
	// exclusive open by the same process would collide with.
	if d, err := os.OpenFile(path, os.O_WRONLY|unix.O_DIRECT, 0); err == nil {
		t.direct = d
	}
	return t, nil
}

func (t *target) close() {
	if t.direct != nil {
		t.direct.Close()
	}
	t.f.Close()
}

// alignedBuffer is n bytes at an address O_DIRECT accepts.
func alignedBuffer(n int) []byte {
	b := make([]byte, n+align)
	skip := (align - int(uintptr(unsafe.Pointer(&b[0]))%align)) % align
	return b[skip : skip+n : skip+n]
}

// aligned tells whether p at off can be written with O_DIRECT.
func aligned(p []byte, off int64) bool {
	return len(p) > 0 && len(p)%align == 0 && off%align == 0 && uintptr(unsafe.Pointer(&p[0]))%align == 0
}

func (t *target) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > t.limit {
		return 0, fail(agentapi.ClassDiskTooSmall, "the image needs more than the %d bytes available on the disk (%d bytes, less %d for the seed partition)", t.limit, t.size, t.size-t.limit)
	}
	// The rest (an image's unaligned tail, a qcow2 cluster in a buffer of
	// its own) goes through the page cache; the kernel writes back cached
	// pages of a range before a direct write to it, so the two agree.
	f := t.f
	if t.direct != nil && aligned(p, off) {
		f = t.direct
	}
	n, err := f.WriteAt(p, off)
	if err != nil {
		return n, fail(agentapi.ClassWriteFailed, "write at byte %d: %v", off, err)
	}
	return n, nil
}

// zero makes [off, off+n) read as zeros, cheaply where the device can.
func (t *target) zero(off, n int64) error {
	if off+n > t.limit {
		return fail(agentapi.ClassDiskTooSmall, "the image needs %d bytes, the disk has %d for it", off+n, t.limit)
	}
	var err error
	if t.block {
		rng := [2]uint64{uint64(off), uint64(n)}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, t.f.Fd(), blkZeroOut, uintptr(unsafe.Pointer(&rng)))
		if errno == 0 {
			return nil
		}
		err = errno
	} else {
		err = unix.Fallocate(int(t.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
		if err == nil {
			return nil
		}
	}
	if !errors.Is(err, unix.EOPNOTSUPP) && !errors.Is(err, unix.ENOTTY) && !errors.Is(err, unix.EINVAL) {
		return fail(agentapi.ClassWriteFailed, "zero %d bytes at %d: %v", n, off, err)
	}
	return t.writeZeros(off, n)
}

func (t *target) writeZeros(off, n int64) error {
	buf := alignedBuffer(int(min(n, chunkBytes)))
	for n > 0 {
		c := min(n, int64(len(buf)))
		if _, err := t.WriteAt(buf[:c], off); err != nil {
			return err
		}
		off, n = off+c, n-c
	}
	return nil
}

func (t *target) sync() error {
	if err := t.f.Sync(); err != nil {
		return fail(agentapi.ClassWriteFailed, "flush: %v", err)
	}
	return nil
}

// wipeSignatures erases what firmware, the kernel and blkid recognise a
// disk and its partitions by — MBR, GPT headers and arrays (the primary at
// the start, the backup at the end), filesystem, RAID and LVM superblocks,
// which all sit in a partition's or disk's first or last MiB — like wipefs.
// extra are further ranges known to hold such structures (the image's own
// backup GPT, which lies at the image's end, not the disk's).
func (t *target) wipeSignatures(parts []extent, extra ...extent) error {
	ranges := append([]extent{{0, mib}, {t.size - mib, mib}}, extra...)
	for _, p := range parts {
		ranges = append(ranges, extent{p.Off, mib}, extent{p.Off + p.Len - mib, mib})
	}
	buf := make([]byte, mib)
	for _, r := range ranges {
		off := max(r.Off, 0)
		n := min(r.Len, t.size-off)
		if n <= 0 {
			continue
		}
		if _, err := t.f.WriteAt(buf[:n], off); err != nil {
			return fail(agentapi.ClassWriteFailed, "wipe %d bytes at %d: %v", n, off, err)
		}
	}
	return t.sync()
}

// chunks yields what copyFrom writes: each chunk may be written straight
// from its buffer, which stays valid until the next call.
type chunks interface {
	next() ([]byte, error)
}

// copyFrom writes src to the disk from byte 0 and returns the bytes
// written. Chunks are written from the buffers they come in, so the image
// is not copied once more on its way to the disk.
func (t *target) copyFrom(src chunks) (int64, error) {
	var off int64
	for {
		b, err := src.next()
		if len(b) > 0 {
			if _, werr := t.WriteAt(b, off); werr != nil {
				return off, werr
			}
			off += int64(len(b))
			t.written.Add(int64(len(b)))
		}
		if errors.Is(err, io.EOF) {
			return off, nil
		}
		if err != nil {
			return off, err
		}
	}
}

// fill reads until buf is full or r fails. Unlike io.ReadFull it passes a
// decompressor's io.ErrUnexpectedEOF (a truncated image) on as the error it
// is, rather than as a short last chunk.
func fill(r io.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// benchmark writes n bytes of zeros from the start of the disk the way
// images are written (the same chunks, O_DIRECT where images get it), and
// flushes: the disk's own sequential rate, for images to be measured by.
func (t *target) benchmark(n int64) error {
	if _, err := t.copyFrom(&zeroChunks{buf: alignedBuffer(chunkBytes), left: n}); err != nil {
		return fmt.Errorf("disk benchmark: %w", err)
	}
	t.written.Store(0)
	return t.sync()
}

// zeroChunks is left bytes of zeros in chunks of buf.
type zeroChunks struct {
	buf  []byte
	left int64
}

func (z *zeroChunks) next() ([]byte, error) {
	if z.left == 0 {
		return nil, io.EOF
	}
	n := min(z.left, int64(len(z.buf)))
	z.left -= n
	return z.buf[:n], nil
}
