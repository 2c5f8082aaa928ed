package agent

import "io"

// prefetch reads ahead of its reader in a goroutine of its own, so that
// the stages of a write — download and hash, decompress, write to disk —
// run at once on separate CPUs instead of taking turns.
type prefetch struct {
	full chan []byte
	free chan []byte
	// err is r's error, set before full is closed.
	err  error
	buf  []byte // held by the reader
	cur  []byte // its unread part
	stop chan struct{}
	done chan struct{}
}

// newPrefetch reads r in chunks of size, up to depth chunks ahead.
func newPrefetch(r io.Reader, size, depth int) *prefetch {
	p := &prefetch{
		full: make(chan []byte, depth),
		free: make(chan []byte, depth+2),
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	for range depth + 2 {
		p.free <- alignedBuffer(size)
	}
	go p.run(r)
	return p
}

func (p *prefetch) run(r io.Reader) {
	defer close(p.done)
	defer close(p.full)
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
			case p.full <- buf[:n]:
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

// Close stops the goroutine and waits for it. One blocked reading r stops
// only when r fails: cancel r's context first.
func (p *prefetch) Close() {
	close(p.stop)
	<-p.done
}
