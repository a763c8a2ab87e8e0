package server

import (
	"errors"
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
func (g *respGuard) scan(b []byte) (int, error) {
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
			}
		}
	}
	return len(b), nil
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
// connection instead of waiting for the client.
type guardConn struct {
	net.Conn
	guard    respGuard
	closing  *atomic.Bool // the server's
	perr     error        // framing error found, to answer at the next read
	answered bool
}

// Read is called by the connection's goroutine only, and only after the
// replies to every command read so far are flushed (redcon answers a
// batch, flushes, then reads): so the protocol error written here comes
// after every earlier reply, in order.
func (c *guardConn) Read(b []byte) (int, error) {
	if c.perr != nil {
		c.answer()
		return 0, c.perr
	}
	if c.closing.Load() {
		return 0, io.EOF
	}
	n, err := c.Conn.Read(b)
	if n > 0 {
		if k, perr := c.guard.scan(b[:n]); perr != nil {
			c.perr = perr
			if k == 0 {
				c.answer()
				return 0, perr
			}
			// Hand over the good part first: the commands in it run and
			// are answered before the error.
			return k, nil
		}
	}
	if err != nil && c.closing.Load() {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = io.EOF // woken by Shutdown, not a client timeout
		}
	}
	return n, err
}

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
	log     *slog.Logger
	delay   time.Duration
}

func (l *guardListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err == nil {
			l.delay = 0
			return &guardConn{Conn: c, guard: respGuard{lim: l.lim}, closing: l.closing}, nil
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
