package agent

import (
	"hash"
	"io"
	"sync"
)

// prefetch reads ahead of its reader in a goroutine of its own, so that
// the stages of a write — download, hash, decompress, write to disk — run
// at once on separate CPUs instead of taking turns.
type prefetch struct {
	full chan []byte
	free chan []byte
	// err is r's error, set before full is closed.
	err  error
	buf  []byte // held by the reader
	cur  []byte // its unread part
	stop chan struct{}
	wg   sync.WaitGroup
}

// newPrefetch reads r in chunks of size, up to depth chunks ahead. If sum
// is not nil it sees every chunk, in order, before the reader does, in a
// goroutine of its own: on a slow CPU the image's SHA-256 costs as much
// as receiving the bytes, and on the download's goroutine it halved the
// download.
func newPrefetch(r io.Reader, size, depth int, sum hash.Hash) *prefetch {
	p := &prefetch{
		full: make(chan []byte, depth),
		free: make(chan []byte, depth+2),
		stop: make(chan struct{}),
	}
	for range depth + 2 {
		p.free <- alignedBuffer(size)
	}
	read := p.full
	if sum != nil {
		read = make(chan []byte, depth)
		p.wg.Go(func() { p.hash(sum, read) })
	}
	p.wg.Go(func() { p.run(r, read) })
	return p
}

func (p *prefetch) run(r io.Reader, out chan<- []byte) {
	defer close(out)
	for {
		var buf []byte
		select {
		case buf = <-p.free:
		case <-p.stop:
			return
		}
		n, err := fill(r, buf)
		if n > 0 {
			select {
			case out <- buf[:n]:
			case <-p.stop:
				return
			}
		}
		if err != nil {
			p.err = err
			return
		}
	}
}

// hash passes the chunks read on to the reader through sum. It closes
// full only once in is closed, after run has set err.
func (p *prefetch) hash(sum hash.Hash, in <-chan []byte) {
	defer close(p.full)
	for buf := range in {
		sum.Write(buf)
		select {
		case p.full <- buf:
		case <-p.stop:
			return
		}
	}
}

func (p *prefetch) Read(b []byte) (int, error) {
	if len(p.cur) == 0 {
		buf, err := p.next()
		if err != nil {
			return 0, err
		}
		p.cur = buf
	}
	n := copy(b, p.cur)
	p.cur = p.cur[n:]
	return n, nil
}

// next hands over the next chunk whole (full but for the last), its buffer
// the reader's until the following call: the disk writes it in place.
func (p *prefetch) next() ([]byte, error) {
	if p.buf != nil {
		p.free <- p.buf[:cap(p.buf)]
		p.buf, p.cur = nil, nil
	}
	buf, ok := <-p.full
	if !ok {
		return nil, p.err
	}
	p.buf = buf
	return buf, nil
}

// Close stops the goroutines and waits for them. One blocked reading r
// stops only when r fails: cancel r's context first.
func (p *prefetch) Close() {
	close(p.stop)
	p.wg.Wait()
}
