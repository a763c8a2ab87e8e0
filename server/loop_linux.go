//go:build linux

package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/readstates/readstates/commands"
	"github.com/readstates/readstates/internal/redcon"
)

// The event loops: Linux's epoll, with redcon's parser and reply encoders
// and the same guard, limits and shutdown as the goroutine-per-connection
// layer (server.go), which serves TLS and other systems.
//
// Why: with a goroutine per connection, every request that is not
// pipelined parks its goroutine and wakes it through the runtime's
// netpoller, and the scheduler wakes idle threads to look for the work
// and puts them back to sleep: more CPU per request than one loop, and
// less throughput than Redis (the figures: BENCHMARKS.md, section 2).
// A loop reads every ready socket from one epoll_wait, runs the commands
// and writes the replies, as Redis does.
//
// Invariants:
//   - A loopConn belongs to one loop; only that loop's goroutine touches
//     its fields, except the session, which a deferred command's goroutine
//     uses while the connection is busy (the loop leaves it alone then).
//   - Commands run in order, one at a time per connection. A command that
//     would wait for the database (a cache miss, persist.ErrWouldBlock)
//     runs again on a goroutine of its own, and the connection reads and
//     runs nothing more until it is done: the loop never blocks on the
//     store, and a slow read-through delays only its own client.
//   - A client costs what it sends: input is read 64 KiB at a time and
//     cut to whole commands (the guard); replies that the client does not
//     take pile up to outPause, then the loop stops reading from it, and
//     past Config.OutputLimit, or after Config.WriteTimeout without
//     progress, it is closed. Idle connections hold no buffers.
//   - A connection is forgotten by the server (Server.forget) only once
//     its socket is closed and no command of it runs, so when the server
//     is drained no command runs.

// outPause is how many bytes of unsent replies make the loop stop reading
// from a connection until they drain: a client may pipeline this deep
// without reading before it is paused (Redis buffers without bound).
const outPause = 1 << 20

// sweepEvery is how often a loop checks its connections' timeouts.
const sweepEvery = 100 * time.Millisecond

type eventLoop struct {
	s      *Server
	epfd   int
	wakefd int // eventfd: connections added, commands finished, close
	conns  map[int]*loopConn
	ctx    context.Context // the server's, without waiting (persist)
	events []unix.EpollEvent
	rbuf   []byte // socket reads land here
	wbuf   []byte // replies of connections with nothing pending
	rw     loopWriter
	parser redcon.CommandParser
	now    time.Time
	swept  time.Time

	woken atomic.Bool // wakefd has been written since the loop last read it
	mu    struct {
		sync.Mutex
		added    []*loopConn
		finished []finished
		stop     bool
	}
}

// finished is a deferred command's outcome: the replies to it and to the
// commands after it that ran too, the first ranEnds of c.ends, which end
// at c.in[ran].
type finished struct {
	c       *loopConn
	reply   []byte
	ran     int
	ranEnds int
}

type loopConn struct {
	fd     int
	cl     *client
	guard  respGuard
	in     []byte // input not yet run: whole commands, then a partial one
	ends   []int  // ends, in in, of the whole commands in it
	out    []byte // replies not yet sent
	events uint32 // epoll interest registered

	busy bool // a deferred command runs on its own goroutine
	// deferred is the command to run off the loop once c.in is settled
	// (see startDeferred).
	deferred [][]byte
	closed   bool  // the socket is closed
	perr     error // protocol error, to answer once the commands before it ran
	closing  bool  // answer nothing more: close when out is sent
	linger   bool  // after out is sent: shut down writes, drain input, close
	// lingering: writes are shut down, input is drained until EOF,
	// lingerBytes or the deadline.
	lingering  bool
	lingerLeft int
	deadline   time.Time // closing or lingering: close by then
	lastIn     time.Time // last input, for Config.IdleTimeout
	stallSince time.Time // out is pending and the client took none since
}

// useLoops reports whether Serve runs ln on event loops.
func (s *Server) useLoops(ln net.Listener) bool {
	if s.cfg.EventLoops <= 0 || s.cfg.TLS != nil {
		return false
	}
	switch ln.(type) {
	case *net.TCPListener, *net.UnixListener:
		return true
	}
	return false
}

// serveLoops is Serve's accept loop with event loops: it returns when gl's
// Accept fails for good (after release), with every loop still running;
// stopLoops ends them.
func (s *Server) serveLoops(gl *guardListener) error {
	loops := make([]*eventLoop, s.cfg.EventLoops)
	for i := range loops {
		l, err := newEventLoop(s)
		if err != nil {
			for _, l := range loops[:i] {
				l.closeFDs()
			}
			return fmt.Errorf("event loop: %w", err)
		}
		loops[i] = l
	}
	s.mu.Lock()
	s.mu.loops = loops
	s.mu.Unlock()
	s.deferred = &deferPool{s: s, jobs: make(chan deferredCmd), stop: make(chan struct{})}
	for _, l := range loops {
		s.loopsWG.Go(l.run)
	}
	for next := 0; ; next++ {
		nc, err := gl.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) || s.forced.Load() {
				return nil
			}
			continue // gl.Accept has backed off already
		}
		gc := nc.(*guardConn)
		s.acceptLoopConn(gc, loops[next%len(loops)])
	}
}

// stopLoops ends the event loops once no connection is left.
func (s *Server) stopLoops() {
	s.mu.Lock()
	loops := s.mu.loops
	s.mu.Unlock()
	for _, l := range loops {
		l.mu.Lock()
		l.mu.stop = true
		l.mu.Unlock()
		l.wake()
	}
	s.loopsWG.Wait()
	if p := s.deferred; p != nil {
		close(p.stop)
		p.wg.Wait()
	}
	// Last: a deferred command's goroutine wakes its loop after handing
	// its reply over, and the loop may have read it (and let the server
	// drain) before that wake-up is written.
	for _, l := range loops {
		l.closeFDs()
	}
}

// wakeLoops makes every loop look at the server's state (closing).
func (s *Server) wakeLoops() {
	s.mu.Lock()
	loops := s.mu.loops
	s.mu.Unlock()
	for _, l := range loops {
		l.wake()
	}
}

// acceptLoopConn admits a connection (as accept does for redcon) and
// hands its socket to l.
func (s *Server) acceptLoopConn(gc *guardConn, l *eventLoop) {
	nc := gc.Conn
	s.accepted.Add(1)
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		nc.Close()
		return
	}
	if len(s.mu.clients) >= s.cfg.MaxClients {
		s.mu.Unlock()
		s.rejected.Add(1)
		gc.refuse()
		_, _ = nc.Write([]byte("-ERR max number of clients reached\r\n"))
		nc.Close()
		s.log.Debug("connection refused: max clients", "remote", nc.RemoteAddr())
		return
	}
	s.mu.Unlock()
	fd, err := dupSocket(nc)
	nc.Close() // the loop has its own descriptor of the socket
	if err != nil {
		s.log.Warn("connection dropped: cannot take over its socket", "remote", nc.RemoteAddr(), "err", err)
		return
	}
	cl := &client{sess: commands.NewSession(s.nextID.Add(1), nc.RemoteAddr().String(), nc.LocalAddr().String(), time.Now())}
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		unix.Close(fd)
		return
	}
	s.mu.clients[cl] = struct{}{}
	s.mu.Unlock()
	s.log.Debug("connection open", "id", cl.sess.ID(), "remote", nc.RemoteAddr())
	c := &loopConn{fd: fd, cl: cl, guard: respGuard{lim: s.limits, trackEnds: true}}
	l.mu.Lock()
	l.mu.added = append(l.mu.added, c)
	l.mu.Unlock()
	l.wake()
}

// dupSocket returns a non-blocking, close-on-exec duplicate of nc's socket.
func dupSocket(nc net.Conn) (int, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return -1, errors.New("not a socket")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var derr error
	if err := rc.Control(func(sfd uintptr) {
		fd, derr = unix.FcntlInt(sfd, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func newEventLoop(s *Server) (*eventLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create: %w", err)
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, fmt.Errorf("eventfd: %w", err)
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	l := &eventLoop{
		s: s, epfd: epfd, wakefd: wakefd,
		conns:  make(map[int]*loopConn),
		ctx:    s.ctx,
		events: make([]unix.EpollEvent, 256),
		rbuf:   make([]byte, readChunk),
	}
	return l, nil
}

func (l *eventLoop) closeFDs() {
	unix.Close(l.wakefd)
	unix.Close(l.epfd)
}

// wake makes the loop's epoll_wait return; it is called by any goroutine.
func (l *eventLoop) wake() {
	if l.woken.CompareAndSwap(false, true) {
		var one = [8]byte{1}
		_, _ = unix.Write(l.wakefd, one[:])
	}
}

// run is the loop's goroutine: until stopLoops, wait for ready sockets and
// serve them.
func (l *eventLoop) run() {
	timeout := int(sweepEvery / time.Millisecond)
	for {
		// A blocking epoll_wait: parking the goroutine in the runtime's
		// poller instead (on the epoll descriptor) cost 15-35% more CPU
		// per request, in wake-ups, on 2 cores.
		n, err := unix.EpollWait(l.epfd, l.events, timeout)
		if err != nil && err != unix.EINTR {
			// Only a bug gets here (a bad descriptor or argument).
			l.s.log.Error("epoll_wait failed", "err", err)
			time.Sleep(10 * time.Millisecond)
		}
		l.now = time.Now()
		for _, ev := range l.events[:max(n, 0)] {
			fd := int(ev.Fd)
			if fd == l.wakefd {
				continue
			}
			if c := l.conns[fd]; c != nil {
				l.ready(c, ev.Events)
			}
		}
		if l.handleWake() {
			return
		}
		if l.now.Sub(l.swept) >= sweepEvery {
			l.sweep()
		}
	}
}

// handleWake takes what other goroutines handed over; it reports whether
// the loop must end.
func (l *eventLoop) handleWake() bool {
	if !l.woken.Load() {
		return false
	}
	var buf [8]byte
	_, _ = unix.Read(l.wakefd, buf[:])
	l.woken.Store(false) // before taking the queues: see wake
	l.mu.Lock()
	added, done, stop := l.mu.added, l.mu.finished, l.mu.stop
	l.mu.added, l.mu.finished = nil, nil
	l.mu.Unlock()
	for _, c := range added {
		l.add(c)
	}
	for _, f := range done {
		l.deferredDone(f)
	}
	s := l.s
	if s.forced.Load() {
		l.closeAll(nil)
	} else if s.closing.Load() {
		for _, c := range l.conns {
			if !c.busy && !c.closing {
				c.closing = true
				l.flush(c, true)
			}
		}
	}
	return stop
}

func (l *eventLoop) add(c *loopConn) {
	if l.s.forced.Load() {
		unix.Close(c.fd)
		l.s.forget(c.cl, nil)
		return
	}
	c.lastIn = l.now
	c.events = unix.EPOLLIN
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &unix.EpollEvent{Events: c.events, Fd: int32(c.fd)}); err != nil {
		unix.Close(c.fd)
		l.s.forget(c.cl, fmt.Errorf("epoll_ctl: %w", err))
		return
	}
	l.conns[c.fd] = c
	if l.s.closing.Load() {
		c.closing = true
		l.flush(c, true)
	}
}

// ready serves one epoll event of c.
func (l *eventLoop) ready(c *loopConn, ev uint32) {
	if ev&unix.EPOLLOUT != 0 && len(c.out) > 0 {
		l.flush(c, true)
		if c.closed {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) == 0 {
		return
	}
	if c.lingering {
		l.drain(c)
		return
	}
	if c.events&unix.EPOLLIN == 0 {
		if ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			l.closeConn(c, io.EOF) // paused, and the peer is gone
		}
		return
	}
	n, err := unix.Read(c.fd, l.rbuf)
	if n <= 0 {
		if err == unix.EAGAIN || err == unix.EINTR {
			return
		}
		if err == nil {
			err = io.EOF
		}
		l.closeConn(c, err)
		return
	}
	c.lastIn = l.now
	data := l.rbuf[:n]
	k, perr := c.guard.scan(data)
	if perr != nil {
		c.perr = perr
		data = data[:k]
	}
	l.target(c)
	ends, from := c.guard.ends, 0
	if len(c.in) > 0 {
		if len(c.ends) > 0 {
			// Whole commands wait (the connection was paused): the new
			// input goes behind them.
			off := len(c.in)
			c.in = append(c.in, data...)
			for _, e := range ends {
				c.ends = append(c.ends, off+e)
			}
			l.runPending(c)
			l.send(c)
			return
		}
		if len(ends) == 0 { // still no whole command
			c.in = append(c.in, data...)
			l.send(c)
			return
		}
		// c.in holds the start of one command: complete it and run it,
		// then go on in the read buffer. So c.in never holds more than
		// one command, and a streamed pipeline is not copied.
		c.in = append(c.in, data[:ends[0]]...)
		c.ends = append(c.ends, len(c.in))
		l.runPending(c)
		from, ends = ends[0], ends[1:]
		if len(c.in) > 0 { // it was deferred, or the connection closes
			off := len(c.in) - from
			c.in = append(c.in, data[from:]...)
			for _, e := range ends {
				c.ends = append(c.ends, off+e)
			}
			l.send(c)
			return
		}
	}
	// The common case: whole commands, run from the read buffer.
	rest, restEnds := l.runFrom(c, data, from, ends)
	done := len(data) - len(rest)
	c.in = append(c.in, rest...)
	for _, e := range restEnds {
		c.ends = append(c.ends, e-done)
	}
	l.send(c)
}

// runPending runs the whole commands buffered in c.in, after target.
func (l *eventLoop) runPending(c *loopConn) {
	rest, restEnds := l.runFrom(c, c.in, 0, c.ends)
	l.keepRest(c, rest, restEnds)
}

// keepRest makes c.in and c.ends what was not run of them: rest, a tail of
// c.in, and restEnds, a tail of c.ends.
func (l *eventLoop) keepRest(c *loopConn, rest []byte, restEnds []int) {
	done := len(c.in) - len(rest)
	c.in = c.in[:copy(c.in, rest)]
	c.ends = c.ends[:copy(c.ends, restEnds)]
	for i := range c.ends {
		c.ends[i] -= done
	}
	if len(c.in) == 0 && cap(c.in) > maxHeldKept {
		c.in, c.ends = nil, nil // idle connections hold no buffers
	}
}

// runFrom runs the commands of buf from offset from that end at ends, in
// order, until one is deferred or the connection is to close; the replies
// go to the reply writer (see target). It returns what of buf was not run,
// and the ends (offsets in buf) of the whole commands in it.
func (l *eventLoop) runFrom(c *loopConn, buf []byte, from int, ends []int) (rest []byte, restEnds []int) {
	start := from
	s := l.s
	for i, end := range ends {
		if c.busy || c.closing {
			return buf[start:], ends[i:]
		}
		if s.closing.Load() {
			c.closing = true
			return buf[start:], ends[i:]
		}
		cmd, err := l.parser.Parse(buf[start:end])
		start = end
		if err != nil {
			// The guard accepts only what redcon parses; if they ever
			// disagree, the stream cannot be trusted any further.
			c.perr = &protocolError{err.Error()}
			return buf[len(buf):], nil
		}
		if len(cmd.Args) == 0 {
			continue // a blank inline line
		}
		sess := c.cl.sess
		s.disp.DispatchNoWait(l.ctx, &l.rw, sess, cmd.Args)
		if sess.Deferred() {
			c.busy = true
			c.deferred = ownArgs(cmd.Args)
		} else if sess.Closing() { // QUIT, SHUTDOWN
			c.closing = true
		}
	}
	return buf[start:], nil
}

// target points the reply writer at c's pending output, or at the loop's
// buffer when nothing of c is pending (send then writes straight from it).
func (l *eventLoop) target(c *loopConn) {
	if len(c.out) > 0 {
		l.rw.b, l.rw.conn = c.out, true
	} else {
		l.rw.b, l.rw.conn = l.wbuf[:0], false
	}
}

// ownArgs copies args, which alias a read buffer.
func ownArgs(args [][]byte) [][]byte {
	n := 0
	for _, a := range args {
		n += len(a)
	}
	data := make([]byte, 0, n)
	own := make([][]byte, len(args))
	for i, a := range args {
		data = append(data, a...)
		own[i] = data[len(data)-len(a):]
	}
	return own
}

// startDeferred hands c's deferred command to a goroutine that may block.
// It is called once c.in holds what follows the command, because that
// goroutine then runs those commands too: while c is busy the loop leaves
// c.in, c.ends and the session alone, and a pipeline of misses pays one
// hand-over per batch, not one per miss.
func (l *eventLoop) startDeferred(c *loopConn) {
	args := c.deferred
	c.deferred = nil
	l.s.deferred.run(deferredCmd{l: l, c: c, args: args})
}

// deferredCmd is a command that runs off its loop.
type deferredCmd struct {
	l    *eventLoop
	c    *loopConn
	args [][]byte
}

// deferPool runs deferred commands on goroutines that wait for more work
// a while before they end, so a steady stream of cache misses reuses
// goroutines whose stacks have grown to the store's depth (a fresh
// goroutine per miss spent a quarter of the CPU growing its stack). Each
// connection has at most one deferred command, so there are never more
// goroutines than connections.
type deferPool struct {
	s    *Server
	jobs chan deferredCmd // unbuffered: a send succeeds if a worker waits
	stop chan struct{}    // closed by Serve once no connection is left
	wg   sync.WaitGroup
}

// deferIdle is how long a worker waits for another deferred command.
const deferIdle = 10 * time.Second

func (p *deferPool) run(j deferredCmd) {
	select {
	case p.jobs <- j:
	default:
		p.wg.Go(func() { p.work(j) })
	}
}

func (p *deferPool) work(j deferredCmd) {
	idle := time.NewTimer(deferIdle)
	defer idle.Stop()
	var parser redcon.CommandParser
	for {
		f := p.runDeferred(j, &parser)
		l := j.l
		l.mu.Lock()
		l.mu.finished = append(l.mu.finished, f)
		l.mu.Unlock()
		l.wake()
		idle.Reset(deferIdle)
		select {
		case j = <-p.jobs:
		case <-idle.C:
			return
		case <-p.stop:
			return
		}
	}
}

// runDeferred runs j's command, then the whole commands its client sent
// after it, until one asks to close or the server is closing.
func (p *deferPool) runDeferred(j deferredCmd, parser *redcon.CommandParser) finished {
	s, c := p.s, j.c
	sess := c.cl.sess
	var w loopWriter
	s.disp.Dispatch(s.ctx, &w, sess, j.args)
	f := finished{c: c}
	start, i := 0, 0
	for ; i < len(c.ends) && !sess.Closing() && !s.closing.Load(); i++ {
		end := c.ends[i]
		cmd, err := parser.Parse(c.in[start:end])
		if err != nil {
			break // the loop finds it again, and answers it
		}
		start = end
		if len(cmd.Args) > 0 {
			s.disp.Dispatch(s.ctx, &w, sess, cmd.Args)
		}
	}
	f.reply, f.ran, f.ranEnds = w.b, start, i
	return f
}

// deferredDone sends the replies of a deferred command (and of those its
// goroutine ran after it) and runs what is left.
func (l *eventLoop) deferredDone(f finished) {
	c := f.c
	c.busy = false
	if c.closed {
		l.s.forget(c.cl, nil) // its socket was closed while it ran
		return
	}
	l.keepRest(c, c.in[f.ran:], c.ends[f.ranEnds:])
	if c.cl.sess.Closing() || l.s.closing.Load() {
		c.closing = true
	}
	l.target(c)
	l.rw.b = append(l.rw.b, f.reply...)
	l.runPending(c)
	l.send(c)
}

// send writes the replies gathered in the reply writer; what the socket
// does not take waits in c.out.
func (l *eventLoop) send(c *loopConn) {
	if c.deferred != nil {
		l.startDeferred(c)
	}
	b, pending := l.rw.b, l.rw.conn
	l.rw = loopWriter{}
	if pending {
		c.out = b
		l.flush(c, true)
		return
	}
	wrote := false
	if l.overLimit(c, len(b)) {
		return
	}
	if len(b) > 0 {
		n, err := unix.Write(c.fd, b)
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			l.closeConn(c, err)
			return
		}
		if n > 0 {
			c.stallSince = time.Time{} // the client took some
		}
		if n < len(b) {
			c.out = append(c.out, b[max(n, 0):]...)
		}
		wrote = true
	}
	if cap(b) <= 4*readChunk {
		l.wbuf = b[:0] // a huge batch does not stay
	}
	l.flush(c, !wrote)
}

// flush writes c.out (if write), then settles what c waits for: its
// protocol error answered, a close, reading paused or resumed.
func (l *eventLoop) flush(c *loopConn, write bool) {
	if c.closed {
		return
	}
	if !c.busy && len(c.ends) == 0 && c.perr != nil && !c.closing {
		c.out = append(c.out, "-ERR "...)
		c.out = append(c.out, c.perr.Error()...)
		c.out = append(c.out, "\r\n"...)
		c.closing, c.linger = true, true
		c.deadline = l.now.Add(time.Second)
		write = true
	}
	if l.overLimit(c, 0) {
		return
	}
	if write && len(c.out) > 0 {
		n, err := unix.Write(c.fd, c.out)
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			l.closeConn(c, err)
			return
		}
		if n > 0 {
			c.stallSince = time.Time{}
			c.out = c.out[:copy(c.out, c.out[n:])]
		}
	}
	if len(c.out) == 0 {
		c.stallSince = time.Time{}
		if cap(c.out) > maxHeldKept {
			c.out = nil
		}
	} else if c.stallSince.IsZero() {
		c.stallSince = l.now
	}
	if c.closing && len(c.out) == 0 && !c.busy && !c.lingering {
		if !c.linger {
			l.closeConn(c, nil)
			return
		}
		// Send FIN after the error reply, and read what the client already
		// sent for a while: closing with unread input resets the
		// connection, and the client's kernel may then drop the reply.
		_ = unix.Shutdown(c.fd, unix.SHUT_WR)
		c.lingering, c.lingerLeft = true, lingerBytes
		c.deadline = l.now.Add(lingerTime)
	}
	l.interest(c)
}

// overLimit closes c if its replies pending, and more bytes about to be
// sent, pass Config.OutputLimit: as Redis's hard
// client-output-buffer-limit, this counts replies before the socket takes
// them, so one reply too large closes the connection too.
func (l *eventLoop) overLimit(c *loopConn, more int) bool {
	lim := l.s.cfg.OutputLimit
	if n := len(c.out) + more; lim > 0 && n > lim {
		l.closeConn(c, &clientLimitError{msg: fmt.Sprintf("output limit: %d bytes of replies at once, more than the limit of %d", n, lim)})
		return true
	}
	return false
}

// interest registers what c waits for: input unless it is busy, closing,
// or has too many replies pending; output while replies are pending.
func (l *eventLoop) interest(c *loopConn) {
	var want uint32
	if c.lingering || (!c.busy && !c.closing && len(c.out) < outPause) {
		want |= unix.EPOLLIN
	}
	if len(c.out) > 0 {
		want |= unix.EPOLLOUT
	}
	if want == c.events {
		return
	}
	resumed := want&unix.EPOLLIN != 0 && c.events&unix.EPOLLIN == 0
	c.events = want
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: want, Fd: int32(c.fd)}); err != nil {
		l.closeConn(c, fmt.Errorf("epoll_ctl: %w", err))
		return
	}
	if resumed && len(c.ends) > 0 && !c.lingering {
		// Whole commands were read before the pause: no event will come
		// for them.
		l.target(c)
		l.runPending(c)
		l.send(c)
	}
}

// drain reads and drops a lingering connection's input.
func (l *eventLoop) drain(c *loopConn) {
	n, err := unix.Read(c.fd, l.rbuf[:min(len(l.rbuf), c.lingerLeft)])
	if err == unix.EAGAIN || err == unix.EINTR {
		return
	}
	c.lingerLeft -= max(n, 0)
	if n <= 0 || c.lingerLeft <= 0 {
		l.closeConn(c, c.perr)
	}
}

// sweep closes the connections whose time is up: idle, not taking their
// replies, or closing for too long.
func (l *eventLoop) sweep() {
	l.swept = l.now
	s := l.s
	idle, wt := s.cfg.IdleTimeout, s.cfg.WriteTimeout
	for _, c := range l.conns {
		switch {
		case c.busy:
		case (c.closing || c.lingering) && !c.deadline.IsZero() && l.now.After(c.deadline):
			l.closeConn(c, c.perr)
		case wt > 0 && !c.stallSince.IsZero() && l.now.Sub(c.stallSince) > wt:
			l.closeConn(c, &clientLimitError{msg: fmt.Sprintf("write timeout: the client took no replies for %v", wt)})
		case idle > 0 && len(c.out) == 0 && !c.closing && l.now.Sub(c.lastIn) > idle:
			l.closeConn(c, errIdle)
		}
	}
}

var errIdle = errors.New("idle timeout")

// closeConn closes c's socket. The server forgets c now, or when its
// deferred command is done.
func (l *eventLoop) closeConn(c *loopConn, err error) {
	if c.closed {
		return
	}
	c.closed = true
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	unix.Close(c.fd)
	delete(l.conns, c.fd)
	c.out = nil
	if !c.busy {
		c.in, c.ends = nil, nil // a busy connection's goroutine still reads them
		l.s.forget(c.cl, err)
	}
}

// closeAll closes every connection at once (a forced close).
func (l *eventLoop) closeAll(err error) {
	for _, c := range l.conns {
		l.closeConn(c, err)
	}
}

// loopWriter is commands.Writer over a byte slice, with redcon's encoders.
type loopWriter struct {
	b    []byte
	conn bool // b is the pending output of the connection being served
}

func (w *loopWriter) WriteError(msg string)       { w.b = redcon.AppendError(w.b, msg) }
func (w *loopWriter) WriteString(str string)      { w.b = redcon.AppendString(w.b, str) }
func (w *loopWriter) WriteBulk(bulk []byte)       { w.b = redcon.AppendBulk(w.b, bulk) }
func (w *loopWriter) WriteBulkString(bulk string) { w.b = redcon.AppendBulkString(w.b, bulk) }
func (w *loopWriter) WriteInt64(num int64)        { w.b = redcon.AppendInt(w.b, num) }
func (w *loopWriter) WriteArray(count int)        { w.b = redcon.AppendArray(w.b, count) }
func (w *loopWriter) WriteNull()                  { w.b = redcon.AppendNull(w.b) }
func (w *loopWriter) WriteRaw(data []byte)        { w.b = append(w.b, data...) }
