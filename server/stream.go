package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// The goroutine driver: TLS, systems without the event loops, and
// Config.EventLoops < 0. Each connection has a reader goroutine, which
// reads, runs the commands (waiting for the database when it must) and
// queues their replies, and a writer goroutine, which sends them, as
// nats-server runs a client's read and write loops. With two, a client
// may write a whole pipeline before it reads a reply, as every client
// library's pipeline does: the reader keeps reading while the replies
// wait, up to Config.OutputLimit, as Redis does.
//
// Invariants:
//   - The pipeline (conn) belongs to the reader; the reply queue (q) to
//     whoever holds mu.
//   - The server forgets the connection only after both goroutines have
//     ended, so when the server is drained no command runs.

// A goroutine-driven connection reads into a buffer of its own: streamBuf
// to start with (most clients send small requests, and an idle connection
// keeps its buffer), doubled when a read fills it (a pipeline, or a
// request that does not fit), kept up to twice readChunk.
const streamBuf = 4 << 10

// streamConn is a connection served by goroutines.
type streamConn struct {
	conn
	cl  *client
	nc  net.Conn
	tls *tls.Conn // nil without TLS

	mu struct {
		sync.Mutex
		q       *replyBuf // replies queued for the writer (nil: none)
		done    bool      // the reader has queued its last reply
		err     error     // the writer failed: the connection is dead
		writing bool      // the writer holds a batch taken from q
		sending int       // the bytes of that batch
	}
	writerDead atomic.Bool   // the writer failed
	wake       chan struct{} // the reader queued replies, or is done (cap 1)
	idle       chan struct{} // the writer has sent everything queued (cap 1)
	dead       chan struct{} // closed when the writer ends
}

// serveStream serves nc on goroutines until it closes; it is its reader
// goroutine.
func (s *Server) serveStream(nc net.Conn) {
	if s.cfg.TLS != nil {
		nc = tls.Server(nc, s.cfg.TLS)
	}
	cl, full := s.admit(nc, nc)
	if cl == nil {
		if full {
			s.refuse(nc)
		} else {
			nc.Close()
		}
		return
	}
	c := &streamConn{
		conn: newConn(s, cl.sess),
		cl:   cl, nc: nc,
		wake: make(chan struct{}, 1),
		idle: make(chan struct{}, 1),
		dead: make(chan struct{}),
	}
	c.tls, _ = nc.(*tls.Conn)
	c.sess.SetPusher(c.push)
	go c.writeLoop()
	err := c.readLoop()
	c.finish(err)
}

// readLoop reads and runs requests until the connection is to close; it
// returns why.
func (c *streamConn) readLoop() error {
	s := c.s
	if c.tls != nil {
		// On the connection's goroutine, not the accept loop, within a
		// bound: a client that connects and says nothing must not hold
		// its slot of MaxClients for long.
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.TLSHandshakeTimeout)
		err := c.tls.HandshakeContext(ctx)
		cancel()
		if err != nil {
			return fmt.Errorf("TLS handshake: %w", err)
		}
	}
	var sc scratch
	var w replyWriter
	var rb *replyBuf // w's buffer, from the server's pool while a batch runs
	defer func() {
		if rb != nil {
			s.putReplyBuf(rb)
		}
	}()
	full := false // the last read filled the buffer
	idle := s.cfg.IdleTimeout
	for {
		if s.closing.Load() {
			return nil
		}
		if idle > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(idle))
		}
		if s.closing.Load() {
			return nil // Shutdown began while the deadline was being set
		}
		if c.writerDead.Load() {
			return nil // the writer failed: finish reports its error
		}
		if rb != nil && len(rb.b) == 0 {
			// Idle connections hold no reply buffer.
			s.putReplyBuf(rb)
			rb = nil
		}
		if room := cap(c.in) - len(c.in); room == 0 || (full && cap(c.in) < readChunk) {
			c.in = slices.Grow(c.in, max(streamBuf, cap(c.in)))
		}
		n, err := c.nc.Read(c.in[len(c.in):cap(c.in)])
		full = n == cap(c.in)-len(c.in)
		if n > 0 {
			c.in = c.in[:len(c.in)+n]
			if rb == nil {
				rb = s.getReplyBuf()
			}
			w.b = rb.b[:0]
			tracking := c.sess.Tracking()
			if tracking {
				c.sess.BeginBatch()
			}
			used := c.run(c.in, &sc, &w, true)
			c.in = c.in[:copy(c.in, c.in[used:])]
			if len(c.in) == 0 && cap(c.in) > 2*readChunk {
				c.in = nil // a large request's buffer does not stay
			}
			if c.perr != nil {
				w.b = c.appendProtocolError(w.b)
			}
			rb.b, w.b = w.b, nil
			var qerr error
			if tracking || c.sess.Tracking() {
				// The invalidations queued since the last command go after
				// the batch's replies, in the same hand-over to the writer.
				qerr = c.sess.EndBatch(rb.b, func(b []byte) error {
					rb.b = b
					return c.queue(&rb)
				})
			} else {
				qerr = c.queue(&rb)
			}
			if qerr != nil {
				return qerr
			}
			if c.perr != nil {
				c.linger()
				return c.perr
			}
			if c.closing {
				return nil
			}
		}
		if err != nil {
			if s.closing.Load() {
				return nil // woken by Shutdown
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && idle > 0 {
				return errIdle
			}
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// push is the session's pusher (Session.SetPusher): an invalidation
// queued between batches goes to the writer at once.
func (c *streamConn) push(take func([]byte) []byte) {
	rb := c.s.getReplyBuf()
	rb.b = take(rb.b)
	if c.queue(&rb) != nil {
		c.nc.Close() // an invalidation must not be dropped: the reader ends
	}
	if rb != nil {
		c.s.putReplyBuf(rb)
	}
}

// queue hands the replies in *rb to the writer: the buffer itself if
// none wait (*rb is then nil), else a copy. It fails if the writer has
// failed, or if the replies waiting pass Config.OutputLimit: as Redis's
// hard client-output-buffer-limit, that counts replies before the socket
// takes them, so one reply too large closes the connection too.
func (c *streamConn) queue(rb **replyBuf) error {
	b := *rb
	if len(b.b) == 0 {
		return nil
	}
	c.mu.Lock()
	if err := c.mu.err; err != nil {
		c.mu.Unlock()
		return err
	}
	waiting := c.mu.sending
	if c.mu.q != nil {
		waiting += len(c.mu.q.b)
	}
	if lim := c.s.cfg.OutputLimit; lim > 0 && waiting+len(b.b) > lim {
		c.mu.Unlock()
		return outputLimitError(waiting+len(b.b), lim)
	}
	if c.mu.q == nil {
		c.mu.q, *rb = b, nil
	} else {
		c.mu.q.b = append(c.mu.q.b, b.b...)
		b.b = b.b[:0]
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return nil
}

// writeLoop is the writer goroutine: it sends what the reader queues,
// until the reader is done and everything is sent, or a write fails.
func (c *streamConn) writeLoop() {
	defer close(c.dead)
	s := c.s
	var wset time.Time // when the write deadline was last moved
	for {
		c.mu.Lock()
		c.mu.writing, c.mu.sending = false, 0
		if c.mu.q == nil {
			done := c.mu.done
			c.mu.Unlock()
			select {
			case c.idle <- struct{}{}:
			default:
			}
			if done {
				return
			}
			<-c.wake
			continue
		}
		batch := c.mu.q
		c.mu.q = nil
		c.mu.writing, c.mu.sending = true, len(batch.b)
		c.mu.Unlock()
		// Setting a deadline costs a lock and a timer update in the
		// runtime's poller, so it is moved only once it is more than a
		// slack old: it is then between d-slack and d from any write.
		if d := s.cfg.WriteTimeout; d > 0 {
			if now := time.Now(); now.Sub(wset) > writeSlack(d) {
				_ = c.nc.SetWriteDeadline(now.Add(d))
				wset = now
			}
		}
		_, err := c.nc.Write(batch.b)
		s.putReplyBuf(batch)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !s.closing.Load() {
				err = writeTimeoutError(s.cfg.WriteTimeout, err)
			}
			c.mu.Lock()
			c.mu.err = err
			c.mu.Unlock()
			// The reader may be blocked reading: wake it, the connection
			// is dead (it checks writerDead after moving its deadline).
			c.writerDead.Store(true)
			_ = c.nc.SetReadDeadline(time.Now())
			return
		}
	}
}

// replyBuf is a reply buffer of the goroutine driver. Buffers come from a
// pool of the server's, so a connection holds one only while it has
// replies to make or send, and a steady stream of batches allocates none.
type replyBuf struct{ b []byte }

func (s *Server) getReplyBuf() *replyBuf {
	if b, ok := s.replyBufs.Get().(*replyBuf); ok {
		return b
	}
	return &replyBuf{b: make([]byte, 0, streamBuf)}
}

// putReplyBuf gives b back; one that grew huge is let go.
func (s *Server) putReplyBuf(b *replyBuf) {
	if cap(b.b) > 4*readChunk {
		return
	}
	b.b = b.b[:0]
	s.replyBufs.Put(b)
}

// writeSlack is how stale the write deadline may get before the writer
// moves it: a quarter of the timeout, at most a second.
func writeSlack(d time.Duration) time.Duration {
	return min(d/4, time.Second)
}

// flushed waits until the writer has sent everything queued, or failed,
// or the server forces connections closed.
func (c *streamConn) flushed() {
	for {
		c.mu.Lock()
		empty := c.mu.q == nil && !c.mu.writing
		c.mu.Unlock()
		if empty {
			return
		}
		select {
		case <-c.idle:
		case <-c.dead:
			return
		case <-c.s.released:
			return
		}
	}
}

// linger sends FIN after the error reply and reads what the client already
// sent, for a while, before the connection closes.
func (c *streamConn) linger() {
	c.flushed()
	type closeWriter interface{ CloseWrite() error }
	if cw, ok := c.nc.(closeWriter); ok {
		_ = cw.CloseWrite()
		_ = c.nc.SetReadDeadline(time.Now().Add(lingerTime))
		_, _ = io.CopyN(io.Discard, c.nc, lingerBytes)
	}
}

// finish ends the connection once its replies are sent (or cannot be):
// the writer ends, the socket is closed, the server forgets it.
func (c *streamConn) finish(err error) {
	var werr error
	if err == nil || !isLimit(err) {
		c.flushed()
	}
	c.mu.Lock()
	c.mu.done = true
	werr = c.mu.err
	if q := c.mu.q; q != nil { // not sent: the connection closes
		c.mu.q = nil
		c.s.putReplyBuf(q)
	}
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	c.nc.Close() // a writer still blocked fails now
	<-c.dead
	if err == nil {
		err = werr
	}
	c.s.forget(c.cl, err)
}

func isLimit(err error) bool {
	var lerr *clientLimitError
	return errors.As(err, &lerr)
}
