package server

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/tidwall/redcon"

	"github.com/readstates/readstates/commands"
)

// conn is one client connection's pipeline, the same whichever driver
// reads its socket (an event loop, loop_linux.go, or a goroutine,
// stream.go): requests are framed and checked by the parser, run by the
// dispatcher in order, and their replies appended to a reply buffer that
// the driver sends.
//
// A driver owns its conn: only its goroutine touches the fields, except
// that an event loop lends the conn to a goroutine for a deferred command
// (busy), and then reads none of the pipeline's fields until the
// goroutine hands it back.
type conn struct {
	s      *Server
	sess   *commands.Session
	parser reqParser
	// in is input not yet run: the start of a request that has not fully
	// arrived, or whole requests left while busy.
	in []byte
	// perr is the protocol error that ended the stream; the driver answers
	// it once the replies before it are sent, and closes.
	perr error
	// closing: run nothing more; close once the replies are sent.
	closing bool
	// busy: a command that must wait for the database runs on a goroutine
	// (deferred, its arguments owned), event loops only.
	busy     bool
	deferred [][]byte
}

func newConn(s *Server, sess *commands.Session) conn {
	c := conn{s: s, sess: sess}
	c.parser.lim = s.limits
	c.parser.reset()
	return c
}

// run runs the whole requests at the start of buf, in order, appending
// their replies to w, until a request is not whole, or the connection is
// to close, or (wait false) a command must wait for the database: then it
// is deferred (c.busy). It returns how many bytes of buf it used: what
// follows is the caller's to keep for the next call. The caller owns the
// pipeline: a driver's goroutine while c is not busy, the goroutine of
// the deferred command while it is.
func (c *conn) run(buf []byte, sc *scratch, w *replyWriter, wait bool) int {
	s := c.s
	pos := 0
	for !c.closing && c.perr == nil {
		if s.closing.Load() {
			c.closing = true // Shutdown: what was not run is not run
			break
		}
		n, args, err := c.parser.parse(buf[pos:], sc)
		if err != nil {
			c.perr = err
			pos = len(buf)
			break
		}
		if n == 0 {
			break
		}
		pos += n
		if len(args) == 0 {
			continue // a blank inline line
		}
		var mark commands.PushMark
		tracking := c.sess.Tracking()
		if tracking {
			mark = c.sess.Mark(len(w.b))
		}
		if wait {
			// A command that must wait for the database first reads what
			// the requests pipelined after it miss, concurrently.
			s.disp.DispatchNoWait(s.ctx, w, c.sess, args)
			if c.sess.Deferred() {
				c.prefetch(args, buf[pos:])
				s.disp.Dispatch(s.ctx, w, c.sess, args)
			}
		} else {
			s.disp.DispatchNoWait(s.ctx, w, c.sess, args)
			if c.sess.Deferred() {
				c.busy, c.deferred = true, commands.CopyArgs(args)
				break
			}
		}
		if tracking {
			// Client-side caching: invalidations queued while the command
			// ran go around its reply (commands/tracking.go).
			w.b = c.sess.PlacePushes(w.b, mark)
		}
		if c.sess.Closing() { // QUIT, SHUTDOWN
			c.closing = true
		}
	}
	sc.reset()
	return pos
}

// prefetch hands the dispatcher args, then the whole requests at the
// start of rest, read with a parser of their own: run reads them again.
func (c *conn) prefetch(args [][]byte, rest []byte) {
	var (
		p  reqParser
		sc scratch
	)
	p.lim = c.s.limits
	p.reset()
	first := true
	c.s.disp.Prefetch(c.s.ctx, c.sess, func() [][]byte {
		if first {
			first = false
			return args
		}
		for {
			n, a, err := p.parse(rest, &sc)
			if err != nil || n == 0 {
				return nil
			}
			rest = rest[n:]
			if len(a) > 0 {
				return a
			}
		}
	})
}

// appendProtocolError appends the reply to c.perr.
func (c *conn) appendProtocolError(b []byte) []byte {
	return redcon.AppendError(b, c.s.disp.ProtocolError(c.perr))
}

// keep returns in with its first n bytes dropped, in place; an emptied
// buffer larger than maxHeldKept is let go, so idle connections hold none.
func keep(in []byte, n int) []byte {
	in = in[:copy(in, in[n:])]
	if len(in) == 0 && cap(in) > maxHeldKept {
		return nil
	}
	return in
}

// readChunk caps one read from a socket, and so the requests run between
// two writes of replies.
const readChunk = 64 << 10

// maxHeldKept bounds the input and reply buffers a connection keeps while
// it has nothing pending.
const maxHeldKept = 4 << 10

// How long, and how much, a connection closed for a protocol error reads
// its client's input before it closes: closing a socket with unread input
// resets the connection, and the reset can make the client's kernel drop
// the error reply before the client reads it.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 1 << 20
)

// replyWriter is commands.Writer over a byte slice, with redcon's
// encoders.
type replyWriter struct{ b []byte }

func (w *replyWriter) WriteError(msg string)       { w.b = redcon.AppendError(w.b, msg) }
func (w *replyWriter) WriteString(str string)      { w.b = redcon.AppendString(w.b, str) }
func (w *replyWriter) WriteBulk(bulk []byte)       { w.b = redcon.AppendBulk(w.b, bulk) }
func (w *replyWriter) WriteBulkString(bulk string) { w.b = redcon.AppendBulkString(w.b, bulk) }
func (w *replyWriter) WriteInt64(num int64)        { w.b = redcon.AppendInt(w.b, num) }
func (w *replyWriter) WriteArray(count int)        { w.b = redcon.AppendArray(w.b, count) }
func (w *replyWriter) WriteNull()                  { w.b = redcon.AppendNull(w.b) }
func (w *replyWriter) WriteRaw(data []byte)        { w.b = append(w.b, data...) }

// clientLimitError is why a connection was closed for how it reads its
// replies (too slowly, or too much at once): Redis's output buffer limits.
type clientLimitError struct {
	msg string
	err error // the write error, if any
}

func (e *clientLimitError) Error() string {
	if e.err != nil {
		return e.msg + ": " + e.err.Error()
	}
	return e.msg
}

func (e *clientLimitError) Unwrap() error { return e.err }

// outputLimitError is the error of a connection with n bytes of replies
// waiting, more than the limit.
func outputLimitError(n, limit int) error {
	return &clientLimitError{msg: fmt.Sprintf("output limit: %d bytes of replies waiting, more than the limit of %d", n, limit)}
}

func writeTimeoutError(d time.Duration, err error) error {
	return &clientLimitError{msg: fmt.Sprintf("write timeout: the client took no replies for %v", d), err: err}
}

var (
	errIdle   = errors.New("idle timeout")
	errKilled = errors.New("killed by CLIENT KILL")
)

// client is one admitted connection, as the server tracks it.
type client struct {
	sess *commands.Session
	// nc is the connection of a goroutine-driven client (nil on an event
	// loop): Shutdown wakes its blocked read through it.
	nc net.Conn
	// kill closes the connection (CLIENT KILL); set by the driver, under
	// the server's lock, before the client is served.
	kill func()
	// killed is set, under the server's lock, once CLIENT KILL chose this
	// client: the close completes on the driver's side later, and until
	// then the client is gone for CLIENT KILL and CLIENT LIST, as a client
	// Redis frees at once.
	killed bool
}

// admit registers a new connection, unless the server is closing or full:
// then it returns nil, and a full server has counted the refusal (the
// caller answers it). stream is the goroutine driver's connection, which
// Shutdown wakes through it; nil on an event loop.
func (s *Server) admit(nc, stream net.Conn) (cl *client, full bool) {
	s.accepted.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.closed {
		return nil, false
	}
	if len(s.mu.clients) >= s.cfg.MaxClients {
		s.rejected.Add(1)
		return nil, true
	}
	cl = &client{sess: commands.NewSession(s.nextID.Add(1), nc.RemoteAddr().String(), nc.LocalAddr().String(), time.Now()), nc: stream}
	if stream != nil {
		cl.kill = func() { stream.Close() } // its goroutines see the error and end
	}
	s.mu.clients[cl] = struct{}{}
	s.log.Debug("connection open", "id", cl.sess.ID(), "remote", nc.RemoteAddr())
	return cl, false
}

// errMaxClients is the reply to a connection past Config.MaxClients.
const errMaxClients = "-ERR max number of clients reached\r\n"

// refuseTime bounds the reply to a refused connection.
const refuseTime = 100 * time.Millisecond

// refuse answers a connection turned away (max clients) and closes it,
// within refuseTime, so a peer that does not read (or, with TLS, does not
// finish its handshake) cannot hold anything longer.
func (s *Server) refuse(nc net.Conn) {
	_ = nc.SetDeadline(time.Now().Add(refuseTime))
	_, _ = nc.Write([]byte(errMaxClients))
	nc.Close()
	s.log.Debug("connection refused: max clients", "remote", nc.RemoteAddr())
}

// forget removes a closed connection, once no command of it runs; err is
// why it was closed.
func (s *Server) forget(cl *client, err error) {
	s.disp.Closed(cl.sess)
	s.mu.Lock()
	delete(s.mu.clients, cl)
	s.mu.closedCmds += cl.sess.Commands()
	if s.mu.closed && len(s.mu.clients) == 0 {
		close(s.mu.drained)
	}
	s.mu.Unlock()
	var perr *protocolError
	if errors.As(err, &perr) && s.metrics != nil {
		s.metrics.protocolErrors.Inc()
	}
	var lerr *clientLimitError
	if errors.As(err, &lerr) {
		// As Redis logs a client closed for its output buffer: the
		// operator should learn that a client does not keep up.
		s.log.Warn("client closed: it does not take its replies", "id", cl.sess.ID(), "remote", cl.sess.Addr(), "name", cl.sess.Name(), "err", err)
		return
	}
	s.log.Debug("connection closed", "id", cl.sess.ID(), "remote", cl.sess.Addr(), "err", err)
}
