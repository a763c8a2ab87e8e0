package main

import (
	"context"
	"errors"

	"github.com/readstates/readstates/commands"
	"github.com/tidwall/redcon"
)

// The parse and the dispatch every driver shares, so that only the event
// loop differs between them.

// Limits of one command, as Redis's defaults.
const (
	maxArgs    = 1 << 20
	maxBulkLen = 512 << 20
)

var errProtocol = errors.New("Protocol error: expected a RESP multibulk command")

// parseCommand parses the RESP multibulk command at the start of b into
// args[:0], whose elements are slices of b (no copy, no allocation once
// args has grown). It returns the number of bytes the command takes, or 0
// if b does not hold a whole command yet.
func parseCommand(b []byte, args [][]byte) ([][]byte, int, error) {
	args = args[:0]
	if len(b) == 0 {
		return args, 0, nil
	}
	if b[0] != '*' {
		return args, 0, errProtocol
	}
	n, i, ok, err := parseInt(b, 1)
	if !ok || err != nil {
		return args, 0, err
	}
	if n < 0 || n > maxArgs {
		return args, 0, errProtocol
	}
	for range n {
		if i >= len(b) {
			return args, 0, nil
		}
		if b[i] != '$' {
			return args, 0, errProtocol
		}
		var l int
		l, i, ok, err = parseInt(b, i+1)
		if !ok || err != nil {
			return args, 0, err
		}
		if l < 0 || l > maxBulkLen {
			return args, 0, errProtocol
		}
		if len(b)-i < l+2 {
			return args, 0, nil
		}
		if b[i+l] != '\r' || b[i+l+1] != '\n' {
			return args, 0, errProtocol
		}
		args = append(args, b[i:i+l:i+l])
		i += l + 2
	}
	return args, i, nil
}

// parseInt parses the decimal number at b[i:] up to CRLF; it returns the
// number, the index after the CRLF, and ok=false if the CRLF has not come.
func parseInt(b []byte, i int) (n, next int, ok bool, err error) {
	neg := false
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	start := i
	for ; i < len(b); i++ {
		c := b[i]
		if c == '\r' {
			if i == start || i+1 >= len(b) {
				if i == start {
					return 0, 0, false, errProtocol
				}
				return 0, 0, false, nil
			}
			if b[i+1] != '\n' {
				return 0, 0, false, errProtocol
			}
			if neg {
				n = -n
			}
			return n, i + 2, true, nil
		}
		if c < '0' || c > '9' || i-start > 10 {
			return 0, 0, false, errProtocol
		}
		n = n*10 + int(c-'0')
	}
	return 0, 0, false, nil
}

// respWriter is commands.Writer over a byte slice, with
// redcon encoders (those of server/loop_linux.go).
type respWriter struct{ b []byte }

func (w *respWriter) WriteError(msg string)       { w.b = redcon.AppendError(w.b, msg) }
func (w *respWriter) WriteString(str string)      { w.b = redcon.AppendString(w.b, str) }
func (w *respWriter) WriteBulk(bulk []byte)       { w.b = redcon.AppendBulk(w.b, bulk) }
func (w *respWriter) WriteBulkString(bulk string) { w.b = redcon.AppendBulkString(w.b, bulk) }
func (w *respWriter) WriteInt64(num int64)        { w.b = redcon.AppendInt(w.b, num) }
func (w *respWriter) WriteArray(count int)        { w.b = redcon.AppendArray(w.b, count) }
func (w *respWriter) WriteNull()                  { w.b = redcon.AppendNull(w.b) }
func (w *respWriter) WriteRaw(data []byte)        { w.b = append(w.b, data...) }

// proc runs commands: the parse and dispatch of every driver. One proc
// serves one goroutine at a time (an event loop, or a connection's
// handler).
type proc struct {
	d    *commands.Dispatcher
	ctx  context.Context
	args [][]byte
	w    respWriter
}

func newProc(d *commands.Dispatcher) *proc {
	return &proc{d: d, ctx: context.Background(), args: make([][]byte, 0, 8)}
}

// run runs the whole commands at the start of in, appending their replies
// to p.w.b. It returns how many bytes of in it ran, and whether the
// connection is to be closed once the replies are sent (QUIT, or a
// protocol error, which is answered).
//
// A command that DispatchNoWait defers (a cache miss that would read
// through to the store) runs again at once with Dispatch: the store here
// is in memory and never blocks, and the server's hand-over of such
// commands to other goroutines is not what is being compared.
func (p *proc) run(sess *commands.Session, in []byte) (used int, closeConn bool) {
	for used < len(in) {
		args, n, err := parseCommand(in[used:], p.args)
		p.args = args
		if err != nil {
			p.w.b = append(p.w.b, "-ERR "...)
			p.w.b = append(p.w.b, err.Error()...)
			p.w.b = append(p.w.b, "\r\n"...)
			return len(in), true
		}
		if n == 0 {
			break
		}
		used += n
		p.d.DispatchNoWait(p.ctx, &p.w, sess, args)
		if sess.Deferred() {
			p.d.Dispatch(p.ctx, &p.w, sess, args)
		}
		if sess.Closing() {
			return len(in), true
		}
	}
	return used, false
}
