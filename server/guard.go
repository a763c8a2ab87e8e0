package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"sync/atomic"
	"time"
)

// Why a guard: redcon v1.6.4 parses requests with no limits, and some
// inputs hurt more than the connection that sends them:
//   - a bulk length near math.MaxInt ("$9223372036854775807\r\n") overflows
//     an index and panics in redcon's connection goroutine, which has no
//     recover: the whole process dies;
//   - a multibulk count of a billion spins a loop over the count on every
//     read, before any data arrives;
//   - a bulk length, or an inline line with no newline, grows the read
//     buffer without bound.
//
// So every connection's bytes pass through a guardConn, which follows the
// RESP framing of the request stream and stops a connection at the first
// frame that is malformed or over a limit, with Redis's reply
// ("-ERR Protocol error: ...") and a close, as Redis does. It accepts only
// what redcon also accepts (a strict subset: digits only, CRLF where redcon
// wants it), so the two always agree where a command ends.

// Limits of one request; see Config.
type limits struct {
	maxArgs    int64
	maxBulk    int64
	maxRequest int64
	maxInline  int64
}

// maxInline is Redis's limit on an inline (telnet) request line.
const maxInline = 64 << 10

// Framing states.
const (
	stStart     = iota // before a command
	stInline           // in an inline command, outside quotes, until LF
	stQuote            // inside a quoted inline argument
	stClosed           // just after a closing quote
	stClosedCR         // CR after a closing quote
	stCount            // multibulk count digits, until CR
	stCountLF          // LF after the count
	stDollar           // '$' of the next bulk
	stBulkLen          // bulk length digits, until CR
	stBulkLenLF        // LF after the bulk length
	stBulkData         // bulk payload
	stBulkCR           // CR after the payload
	stBulkLF           // LF after the payload
)

// respGuard follows the framing of a request stream across reads.
type respGuard struct {
	lim    limits
	state  int
	num    int64 // number being read (count or bulk length)
	digits int   // digits read of it
	args   int64 // bulks left in the command
	left   int64 // payload bytes left in the bulk
	size   int64 // bytes of the current command so far
	end    int   // set by scan: the end of the last command in its input
	// With trackEnds, scan also lists the end of every command in its
	// input (the event loop runs them one by one).
	trackEnds bool
	ends      []int
	// Inline commands, checked as redcon splits them (its errors would
	// drop the commands read before them in the same read).
	argStart bool // at the start of an inline argument
	quote    byte // the open quote character
	escape   bool // the previous byte was a backslash inside quotes
}

// protocolError is a malformed or oversized request. The connection that
// sent it is answered and closed.
type protocolError struct{ msg string }

func (e *protocolError) Error() string { return "Protocol error: " + e.msg }

var (
	errTooBig = &protocolError{"too big request"}
	errQuotes = &protocolError{"unbalanced quotes in request"}
)

// scan checks b, the next bytes of the stream. It returns len(b) if all is
// well-framed so far, or the offset of the first bad byte and the error.
// Either way g.end is then the offset in b just after the last command
// that ends in b (0 if none does).
func (g *respGuard) scan(b []byte) (int, error) {
	g.end = 0
	g.ends = g.ends[:0]
	for i := 0; i < len(b); i++ {
		if g.state == stBulkData {
			// Skip the payload in one step.
			n := min(g.left, int64(len(b)-i))
			if room := g.lim.maxRequest - g.size; n > room {
				return i + int(room), errTooBig
			}
			g.size += n
			g.left -= n
			i += int(n) - 1
			if g.left == 0 {
				g.state = stBulkCR
			}
			continue
		}
		c := b[i]
		if g.state == stStart {
			g.size = 0
		}
		g.size++
		if g.state <= stClosedCR { // inline
			// An inline line has its own limit, no more than maxRequest.
			if g.size > g.lim.maxInline && c != '\n' {
				return i, &protocolError{"too big inline request"}
			}
		} else if g.size > g.lim.maxRequest {
			return i, errTooBig
		}
		switch g.state {
		case stStart:
			if c == '*' {
				g.state, g.num, g.digits = stCount, 0, 0
				continue
			}
			g.state, g.argStart = stInline, true
			fallthrough
		case stInline:
			switch c {
			case '\n':
				g.state = stStart
				g.commandEnd(i + 1)
			case ' ':
				g.argStart = true
			case '"', '\'':
				// A quote opens an argument only at its start.
				if !g.argStart {
					return i, errQuotes
				}
				g.state, g.quote, g.escape = stQuote, c, false
			default:
				g.argStart = false
			}
		case stQuote:
			switch {
			case c == '\n': // the line ends inside quotes
				return i, errQuotes
			case g.escape:
				g.escape = false
			case c == g.quote:
				g.state = stClosed
			case c == '\\':
				g.escape = true
			}
		case stClosed:
			// A closing quote ends the argument: a space or the end of the
			// line must follow.
			switch c {
			case ' ':
				g.state, g.argStart = stInline, true
			case '\n':
				g.state = stStart
				g.commandEnd(i + 1)
			case '\r':
				g.state = stClosedCR
			default:
				return i, errQuotes
			}
		case stClosedCR:
			if c != '\n' {
				return i, errQuotes
			}
			g.state = stStart
			g.commandEnd(i + 1)
		case stCount:
			if c == '\r' && g.digits > 0 {
				g.state = stCountLF
				continue
			}
			if !g.digit(c, g.lim.maxArgs) {
				return i, &protocolError{"invalid multibulk length"}
			}
		case stCountLF:
			// redcon refuses a count of 0 (Redis ignores "*0"); refuse it
			// here so the error is the same either way.
			if c != '\n' || g.num == 0 {
				return i, &protocolError{"invalid multibulk length"}
			}
			g.args, g.state = g.num, stDollar
		case stDollar:
			if c != '$' {
				return i, &protocolError{"expected '$', got '" + printable(c) + "'"}
			}
			g.state, g.num, g.digits = stBulkLen, 0, 0
		case stBulkLen:
			if c == '\r' && g.digits > 0 {
				g.state = stBulkLenLF
				continue
			}
			if !g.digit(c, g.lim.maxBulk) {
				return i, &protocolError{"invalid bulk length"}
			}
		case stBulkLenLF:
			if c != '\n' {
				return i, &protocolError{"invalid bulk length"}
			}
			g.left, g.state = g.num, stBulkData
			if g.left == 0 {
				g.state = stBulkCR
			}
		case stBulkCR:
			if c != '\r' {
				return i, &protocolError{"invalid bulk length"}
			}
			g.state = stBulkLF
		case stBulkLF:
			if c != '\n' {
				return i, &protocolError{"invalid bulk length"}
			}
			g.args--
			g.state = stDollar
			if g.args == 0 {
				g.state = stStart
				g.commandEnd(i + 1)
			}
		}
	}
	return len(b), nil
}

func (g *respGuard) commandEnd(i int) {
	g.end = i
	if g.trackEnds {
		g.ends = append(g.ends, i)
	}
}

// digit adds a decimal digit to g.num, refusing non-digits and values
// above limit.
func (g *respGuard) digit(c byte, limit int64) bool {
	if c < '0' || c > '9' {
		return false
	}
	g.num = g.num*10 + int64(c-'0') // cannot overflow: g.num <= limit before
	g.digits++
	return g.num <= limit
}

// printable shows a byte in an error reply: itself if printable ASCII,
// else \xHH.
func printable(c byte) string {
	if c >= 0x20 && c < 0x7f {
		return string(rune(c))
	}
	return `\x` + strconv.FormatUint(uint64(c)>>4, 16) + strconv.FormatUint(uint64(c)&0xf, 16)
}

// guardConn is a client connection as redcon sees it: reads pass through
// the respGuard, and once the server is shutting down a read ends the
// connection instead of waiting for the client. Writes are bounded in
// time and size (see Write). With TLS, Conn is the *tls.Conn: the guard
// sees the decrypted stream, and the deadlines reach the socket through it.
type guardConn struct {
	net.Conn
	guard    respGuard
	closing  *atomic.Bool // the server's
	perr     error        // framing error found, to answer at the next read
	answered bool
	// held is what the last socket read brought after the last command
	// that ended in it: redcon gets it on its next Read (see Read). It
	// is a window of heldBuf, which is reused so reads do not allocate.
	held, heldBuf []byte

	out outLimits
	// wset is when the write deadline was last set (zero: never).
	wset time.Time

	tls       *tls.Conn // nil without TLS
	handshook bool      // the TLS handshake was run (it may have failed)
	hsTimeout time.Duration
}

// outLimits bound what a client's replies may cost; see Config.
type outLimits struct {
	writeTimeout time.Duration // 0: none
	outputLimit  int64         // 0: none
}

// readChunk caps one read from the socket. With the boundary-aligned
// reads (see Read) it caps the requests redcon runs in one batch, and so
// the replies it buffers before one flush, to one large request plus
// readChunk bytes of small ones.
const readChunk = 64 << 10

// maxHeldKept bounds the held buffer a connection keeps between reads.
const maxHeldKept = 4 << 10

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

// Read is called by the connection's goroutine only, and only after the
// replies to every command read so far are flushed (redcon answers a
// batch, flushes, then reads): so the protocol error written here comes
// after every earlier reply, in order.
//
// Read hands redcon whole commands where it can: what follows the last
// command that ends in a socket read is held for the next Read. Why:
// redcon grows its read buffer whenever it fills with a command cut at its
// end, and keeps it (and lets it grow again) until a read ends exactly at
// a command boundary. A client that streams a pipeline faster than the
// server answers grew one connection's buffer, and the replies of one
// batch, to tens of megabytes. Aligned reads let redcon empty its buffer
// after every batch, so it shrinks back, and a batch stays small.
func (c *guardConn) Read(b []byte) (int, error) {
	if c.perr != nil {
		c.answer()
		return 0, c.perr
	}
	if c.closing.Load() {
		return 0, io.EOF
	}
	if c.tls != nil && !c.handshook {
		if err := c.handshake(); err != nil {
			return 0, c.readError(err)
		}
	}
	if len(c.held) > 0 {
		// Already scanned; a command cut short, so redcon reads again.
		n := copy(b, c.held)
		c.held = c.held[n:]
		if len(c.held) == 0 && cap(c.heldBuf) > maxHeldKept {
			c.heldBuf = nil
		}
		return n, nil
	}
	if len(b) > readChunk {
		b = b[:readChunk]
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		k, perr := c.guard.scan(b[:n])
		if perr != nil {
			c.perr = perr
			if k == 0 {
				c.answer()
				return 0, perr
			}
			// Hand over the good part first: the commands in it run and
			// are answered before the error.
			return k, nil
		}
		if end := c.guard.end; end > 0 && end < n && err == nil {
			c.heldBuf = append(c.heldBuf[:0], b[end:n]...)
			c.held = c.heldBuf
			n = end
		}
	}
	return n, c.readError(err)
}

// readError turns the error of a read woken by Shutdown into EOF.
func (c *guardConn) readError(err error) error {
	if err != nil && c.closing.Load() {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return io.EOF // woken by Shutdown, not a client timeout
		}
	}
	return err
}

// handshake runs the TLS handshake, once, on the connection's goroutine
// (on the accept loop, one slow client would stall every new one), within
// hsTimeout: a client that connects and sends nothing must not hold its
// slot of MaxClients for longer.
func (c *guardConn) handshake() error {
	c.handshook = true
	ctx, cancel := context.WithTimeout(context.Background(), c.hsTimeout)
	defer cancel()
	if err := c.tls.HandshakeContext(ctx); err != nil {
		return fmt.Errorf("TLS handshake: %w", err)
	}
	return nil
}

// Write sends a batch of replies (redcon flushes once per batch of
// requests) within the client's limits, as Redis's
// client-output-buffer-limit and a write deadline would:
//   - a batch larger than outputLimit is not sent: the connection is
//     closed. Its replies are already buffered by then, but the batch is
//     bounded (see Read), so the limit catches a reply that is too large
//     in itself rather than a client that reads slowly;
//   - a client that does not take its replies (the socket buffers are
//     full) for writeTimeout is closed, so a client that never reads
//     cannot hold a goroutine and its buffered replies forever.
//
// This is on the path of every command that is not pipelined, and setting
// a deadline costs a lock and a timer update in the runtime's poller, so
// the deadline is only moved once it is more than a slack old: it is then
// between writeTimeout-slack and writeTimeout from any write.
func (c *guardConn) Write(b []byte) (int, error) {
	if c.out.outputLimit > 0 && int64(len(b)) > c.out.outputLimit {
		return 0, &clientLimitError{msg: fmt.Sprintf("output limit: %d bytes of replies at once, more than the limit of %d", len(b), c.out.outputLimit)}
	}
	if d := c.out.writeTimeout; d > 0 {
		now := time.Now()
		if now.Sub(c.wset) > writeSlack(d) {
			if err := c.Conn.SetWriteDeadline(now.Add(d)); err != nil {
				return 0, err
			}
			c.wset = now
		}
	}
	n, err := c.Conn.Write(b)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() && !c.closing.Load() {
			err = &clientLimitError{msg: fmt.Sprintf("write timeout: the client took no replies for %v", c.out.writeTimeout), err: err}
		}
	}
	return n, err
}

// writeSlack is how stale the write deadline may get before Write moves
// it: a quarter of the timeout, at most a second.
func writeSlack(d time.Duration) time.Duration {
	return min(d/4, time.Second)
}

// refuse prepares a connection that is turned away (max clients) for its
// one error reply: a short deadline on reads and writes, which Write must
// not move, so that a peer that does not read, or (with TLS) does not
// finish the handshake, cannot stall the accept loop.
func (c *guardConn) refuse() {
	c.out.writeTimeout = 0
	_ = c.Conn.SetDeadline(time.Now().Add(refuseTime))
}

// refuseTime bounds the reply to a refused connection.
const refuseTime = 100 * time.Millisecond

// answer writes the protocol error, once; the connection is closed next.
func (c *guardConn) answer() {
	if c.answered {
		return
	}
	c.answered = true
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	if _, err := c.Conn.Write([]byte("-ERR " + c.perr.Error() + "\r\n")); err != nil {
		return
	}
	// Closing a socket with unread input resets the connection, and a
	// reset can make the client's kernel drop the reply before the client
	// reads it. So send FIN after the reply, and read (and discard) what
	// the client already sent, for a short while, before redcon closes.
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
		_ = c.Conn.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.CopyN(io.Discard, c.Conn, lingerBytes)
	}
}

// How long, and how much, a connection closed for a protocol error reads
// its client's input before it closes.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 1 << 20
)

// guardListener wraps accepted connections in guardConns. It also fixes
// two things in redcon's accept loop:
//   - redcon retries a failed Accept at once, forever, so running out of
//     file descriptors would spin a core; here failures back off (as in
//     net/http);
//   - when the listener is closed, redcon's loop closes every connection
//     at once. During a graceful shutdown the socket is closed (no new
//     clients) but Accept holds the error back until release is closed,
//     so that connections can finish their commands first.
type guardListener struct {
	net.Listener
	closing *atomic.Bool
	release chan struct{}
	lim     limits
	out     outLimits
	// tls, if set, serves TLS: the guard wraps the *tls.Conn, so that its
	// limits apply to the requests themselves.
	tls       *tls.Config
	hsTimeout time.Duration
	log       *slog.Logger
	delay     time.Duration
}

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			l.delay = 0
			gc := &guardConn{Conn: c, guard: respGuard{lim: l.lim}, closing: l.closing, out: l.out}
			if l.tls != nil {
				gc.tls = tls.Server(c, l.tls)
				gc.Conn, gc.hsTimeout = gc.tls, l.hsTimeout
			}
			return gc, nil
		}
		if errors.Is(err, net.ErrClosed) {
			if l.closing.Load() {
				<-l.release // closed by Shutdown: let connections finish first
			}
			return nil, err
		}
		l.delay = min(max(2*l.delay, 5*time.Millisecond), time.Second)
		l.log.Warn("accept failed; retrying", "err", err, "retry_in", l.delay)
		t := time.NewTimer(l.delay)
		select {
		case <-t.C:
		case <-l.release:
			t.Stop()
			return nil, err
		}
	}
}
