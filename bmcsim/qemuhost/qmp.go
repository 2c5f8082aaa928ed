package qemuhost

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"time"
)

// qmp speaks the QEMU Machine Protocol over the VM's control socket. The
// protocol is one JSON object per line: a greeting, then one answer
// ("return" or "error") per command in order, with asynchronous "event"
// objects in between. Commands are sent one at a time, so answers need no
// ids.
type qmp struct {
	conn    net.Conn
	send    sync.Mutex // one command in flight
	answers chan qmpAnswer
	done    chan struct{} // closed when the socket is gone (qemu exited)
}

type qmpAnswer struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
}

// Event is an asynchronous QMP event (SHUTDOWN, RESET, STOP, ...).
type Event struct {
	Name string
	Data json.RawMessage
}

// dialQMP connects to a socket qemu is about to create, reads the
// greeting and leaves capability negotiation mode. onEvent is called from
// the reader goroutine for every event, in order.
func dialQMP(ctx context.Context, path string, onEvent func(Event)) (*qmp, error) {
	var conn net.Conn
	for {
		var err error
		var d net.Dialer
		conn, err = d.DialContext(ctx, "unix", path)
		if err == nil {
			break
		}
		// qemu creates the socket while it starts; until then dialing
		// fails and is worth repeating.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("qmp %s: %w", path, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	q := &qmp{conn: conn, answers: make(chan qmpAnswer), done: make(chan struct{})}
	r := bufio.NewReader(conn)
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	greeting, err := r.ReadBytes('\n')
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp greeting: %w", err)
	}
	var g struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if json.Unmarshal(greeting, &g) != nil || g.QMP == nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: unexpected greeting %q", greeting)
	}
	_ = conn.SetReadDeadline(time.Time{})
	go q.read(r, onEvent)
	if _, err := q.execute(ctx, "qmp_capabilities", nil); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmp) read(r *bufio.Reader, onEvent func(Event)) {
	defer close(q.done)
	for {
		line, err := r.ReadBytes('\n')
		if err != nil {
			return
		}
		var a qmpAnswer
		if json.Unmarshal(line, &a) != nil {
			continue
		}
		if a.Event != "" {
			if onEvent != nil {
				onEvent(Event{Name: a.Event, Data: a.Data})
			}
			continue
		}
		select {
		case q.answers <- a:
		case <-time.After(5 * time.Second):
			// Nobody waits any more (the caller gave up): drop it, the
			// next command must not read a stale answer.
		}
	}
}

// execute runs one command and returns its "return" value.
func (q *qmp) execute(ctx context.Context, command string, args any) (json.RawMessage, error) {
	q.send.Lock()
	defer q.send.Unlock()
	// A previous caller that gave up may have left an answer behind.
	select {
	case <-q.answers:
	default:
	}
	msg := map[string]any{"execute": command}
	if args != nil {
		msg["arguments"] = args
	}
	raw, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = q.conn.SetWriteDeadline(dl)
	}
	if _, err := q.conn.Write(append(raw, '\n')); err != nil {
		return nil, fmt.Errorf("qmp %s: %w", command, err)
	}
	select {
	case a := <-q.answers:
		if a.Error != nil {
			return nil, fmt.Errorf("qmp %s: %s: %s", command, a.Error.Class, a.Error.Desc)
		}
		return a.Return, nil
	case <-q.done:
		return nil, fmt.Errorf("qmp %s: connection closed", command)
	case <-ctx.Done():
		return nil, fmt.Errorf("qmp %s: %w", command, ctx.Err())
	}
}

func (q *qmp) close() { _ = q.conn.Close() }
