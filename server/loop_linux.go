//go:build linux

package server

import (
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// The event loops: Linux's epoll driving the connection pipeline
// (conn.go), as Redis's event loop does; the goroutine driver
// (stream.go) serves TLS and other systems.
//
// Why: with a goroutine per connection, every request that is not
// pipelined parks its goroutine and wakes it through the runtime's
// netpoller, and the scheduler wakes idle threads to look for the work
// and puts them back to sleep: more CPU per request than one loop (the
// figures: BENCHMARKS.md, section 2). A loop reads every ready socket
// from one epoll_wait, runs the commands and writes the replies.
//
// Invariants:
//   - A loopConn belongs to one loop; only that loop's goroutine touches
//     it, except while busy: a deferred command's goroutine then owns the
//     pipeline (conn), and the loop reads none of its fields.
//   - Commands run in order, one at a time per connection. A command that
//     would wait for the database (a cache miss, persist.ErrWouldBlock)
//     runs again on a goroutine of its own, with the whole requests that
//     followed it, and the connection reads and runs nothing more until
//     that is done: the loop never blocks on the store, and a slow
//     read-through delays only its own client.
//   - A client costs what it sends: input is read 64 KiB at a time and
//     run in whole requests; replies that the client does not take wait
//     while the loop goes on reading and running its requests (a client
//     may write a whole pipeline before it reads, as client libraries
//     do), up to Config.OutputLimit, and past it, or after
//     Config.WriteTimeout without progress, the connection is closed.
//     Idle connections hold no buffers.
//   - A connection is forgotten by the server (Server.forget) only once
//     its socket is closed and no command of it runs, so when the server
//     is drained no command runs.

// sweepEvery is how often a loop checks its connections' timeouts.
const sweepEvery = 100 * time.Millisecond

type eventLoop struct {
	s      *Server
	epfd   int
	wakefd int // eventfd: connections added, commands finished, close
	conns  map[int]*loopConn
	events []unix.EpollEvent
	rbuf   []byte // socket reads land here when a connection holds no input
	wbuf   []byte // replies of connections with nothing pending
	rw     replyWriter
	sc     scratch
	// deliver is setReplies as a func value made once (a method value
	// made per call would allocate).
	deliver func([]byte) error
	now     time.Time
	swept   time.Time

	woken atomic.Bool // wakefd has been written since the loop last read it
	mu    struct {
		sync.Mutex
		added    []*loopConn
		finished []finished
		pushed   []*loopConn // connections with invalidations to send
		killed   []*loopConn // CLIENT KILL
		stop     bool
	}
}

// finished is a deferred command's outcome: the replies to it and to the
// requests after it that ran too, which took the first used bytes of c.in.
type finished struct {
	c     *loopConn
	reply []byte
	used  int
}

type loopConn struct {
	conn
	fd     int
	cl     *client
	out    []byte // replies not yet sent
	pend   bool   // the loop's reply writer holds out (see target)
	events uint32 // epoll interest registered
	closed bool   // the socket is closed
	linger bool   // after out is sent: shut down writes, drain input, close
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

// startLoops starts the event loops; serveLoop hands them connections and
// stopLoops ends them.
func (s *Server) startLoops() error {
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
	return nil
}

// serveLoop admits nc and hands its socket to the next loop. It runs on
// the accept loop.
func (s *Server) serveLoop(nc net.Conn) {
	cl, full := s.admit(nc, nil)
	if cl == nil {
		if full {
			s.refuse(nc) // a fresh socket takes a short reply at once
		} else {
			nc.Close()
		}
		return
	}
	fd, err := dupSocket(nc)
	nc.Close() // the loop has its own descriptor of the socket
	if err != nil {
		s.log.Warn("connection dropped: cannot take over its socket", "remote", nc.RemoteAddr(), "err", err)
		s.forget(cl, err)
		return
	}
	s.mu.Lock()
	loops := s.mu.loops
	s.mu.Unlock()
	l := loops[s.nextLoop%len(loops)]
	s.nextLoop++
	c := &loopConn{conn: newConn(s, cl.sess), fd: fd, cl: cl}
	s.mu.Lock()
	cl.kill = func() {
		l.mu.Lock()
		l.mu.killed = append(l.mu.killed, c)
		l.mu.Unlock()
		l.wake()
	}
	s.mu.Unlock()
	l.mu.Lock()
	l.mu.added = append(l.mu.added, c)
	l.mu.Unlock()
	l.wake()
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
		events: make([]unix.EpollEvent, 256),
		rbuf:   make([]byte, readChunk),
	}
	l.deliver = l.setReplies
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
		// Under load there is usually something ready again after a
		// batch: look without waiting first (a raw call, see
		// sys_linux.go), and block only when nothing is. A blocking
		// epoll_wait, not the runtime's poller: parking the goroutine
		// there (on the epoll descriptor) cost more CPU per request, in
		// wake-ups (BENCHMARKS.md, section 2).
		n, err := pollNow(l.epfd, l.events)
		if n == 0 && err == nil {
			n, err = unix.EpollWait(l.epfd, l.events, timeout)
		}
		if err != nil && err != unix.EINTR {
			// Only a bug gets here (a bad descriptor or argument).
			l.s.log.Error("epoll_wait failed", "err", err)
			time.Sleep(10 * time.Millisecond)
		}
		l.now = time.Now()
		for _, ev := range l.events[:max(n, 0)] {
			fd := int(ev.Fd)
			if fd == l.wakefd {
				// Always drained: a wake's write can land after the loop
				// took the wake-up it belongs to (woken is false by then),
				// and a readable eventfd left unread would make every
				// epoll_wait return at once.
				var buf [8]byte
				_, _ = unix.Read(l.wakefd, buf[:])
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
	l.woken.Store(false) // before taking the queues: see wake
	l.mu.Lock()
	added, done, pushed, killed, stop := l.mu.added, l.mu.finished, l.mu.pushed, l.mu.killed, l.mu.stop
	l.mu.added, l.mu.finished, l.mu.pushed, l.mu.killed = nil, nil, nil, nil
	l.mu.Unlock()
	for _, c := range added {
		l.add(c)
	}
	for _, c := range killed {
		l.closeConn(c, errKilled)
	}
	for _, f := range done {
		l.deferredDone(f)
	}
	for _, c := range pushed {
		if !c.closed && !c.busy {
			l.target(c)
			l.rw.b = c.sess.TakePushes(l.rw.b)
			l.send(c)
		}
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
	if c.closed {
		return // killed before it was added (CLIENT KILL)
	}
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
	// Client-side caching: an invalidation queued between batches comes
	// to the loop (pushed), which sends it.
	c.sess.SetPusher(func(func([]byte) []byte) {
		l.mu.Lock()
		l.mu.pushed = append(l.mu.pushed, c)
		l.mu.Unlock()
		l.wake()
	})
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
			l.closeConn(c, io.EOF) // busy or closing, and the peer is gone
		}
		return
	}
	// Input lands in the loop's buffer and is run from there; only what
	// is left of it (a request cut short) is kept by the connection, and
	// put back in front of the next read, unless it is large: then the
	// connection's buffer grows to hold the request, and is read into.
	buf, pre := l.rbuf, 0
	large := len(c.in) > len(l.rbuf)/2
	if large {
		c.in = slices.Grow(c.in, readChunk)
		buf = c.in[len(c.in) : len(c.in)+readChunk]
	} else {
		pre = copy(buf, c.in)
	}
	n, err := sysRead(c.fd, buf[pre:])
	if n <= 0 {
		switch {
		case err == unix.EAGAIN || err == unix.EINTR:
		case err == nil:
			// The client is done sending (it may only have shut down its
			// side): its replies are still sent, then the connection
			// closes.
			c.closing = true
			l.flush(c, true)
		default:
			l.closeConn(c, err)
		}
		return
	}
	c.lastIn = l.now
	l.target(c)
	if c.sess.Tracking() {
		c.sess.BeginBatch()
	}
	if large {
		c.in = c.in[:len(c.in)+n]
		c.in = keep(c.in, c.run(c.in, &l.sc, &l.rw, false))
	} else {
		data := buf[:pre+n]
		used := c.run(data, &l.sc, &l.rw, false)
		c.in = append(c.in[:0], data[used:]...)
		if len(c.in) == 0 && cap(c.in) > maxHeldKept {
			c.in = nil
		}
	}
	l.send(c)
}

// setReplies is EndBatch's deliver: the replies stay in the reply writer
// for send.
func (l *eventLoop) setReplies(b []byte) error {
	l.rw.b = b
	return nil
}

// runPending runs the whole requests held in c.in, after target.
func (l *eventLoop) runPending(c *loopConn) {
	c.in = keep(c.in, c.run(c.in, &l.sc, &l.rw, false))
}

// target points the reply writer at c's pending replies, or at the loop's
// buffer when nothing of c is pending (send then writes straight from it).
func (l *eventLoop) target(c *loopConn) {
	if len(c.out) > 0 {
		l.rw.b, c.pend = c.out, true
	} else {
		l.rw.b, c.pend = l.wbuf[:0], false
	}
}

// startDeferred hands c's deferred command to a goroutine that may block.
// It is called once c.in holds what follows the command, because that
// goroutine then runs those requests too: a pipeline of misses pays one
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
	var sc scratch
	for {
		f := p.runDeferred(j, &sc)
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

// runDeferred runs j's command, then the whole requests its client sent
// after it, waiting for the database where they must.
func (p *deferPool) runDeferred(j deferredCmd, sc *scratch) finished {
	s, c := p.s, j.c
	var w replyWriter
	c.prefetch(j.args, c.in)
	s.disp.Dispatch(s.ctx, &w, c.sess, j.args)
	if c.sess.Closing() {
		c.closing = true
	}
	used := c.run(c.in, sc, &w, true)
	return finished{c: c, reply: w.b, used: used}
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
	c.in = keep(c.in, f.used)
	if l.s.closing.Load() {
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
	if !c.busy && c.sess.Tracking() {
		_ = c.sess.EndBatch(l.rw.b, l.deliver)
	}
	b := l.rw.b
	l.rw.b = nil
	if c.pend {
		c.pend = false
		c.out = b
		l.flush(c, true)
		return
	}
	wrote := false
	if l.overLimit(c, len(b)) {
		return
	}
	if len(b) > 0 {
		n, err := sysWrite(c.fd, b)
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
// protocol error answered, a close, its epoll interest.
func (l *eventLoop) flush(c *loopConn, write bool) {
	if c.closed {
		return
	}
	if !c.busy && c.perr != nil && !c.linger {
		c.out = c.appendProtocolError(c.out)
		c.closing, c.linger = true, true
		c.deadline = l.now.Add(time.Second)
		write = true
	}
	if l.overLimit(c, 0) {
		return
	}
	if write && len(c.out) > 0 {
		n, err := sysWrite(c.fd, c.out)
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
	if !c.busy && c.closing && len(c.out) == 0 && !c.lingering {
		if !c.linger {
			l.closeConn(c, nil)
			return
		}
		// Send FIN after the error reply, and read what the client already
		// sent for a while before closing (see lingerTime).
		_ = unix.Shutdown(c.fd, unix.SHUT_WR)
		c.lingering, c.lingerLeft = true, lingerBytes
		c.deadline = l.now.Add(lingerTime)
	}
	l.interest(c)
}

// overLimit closes c if its replies waiting, and more bytes about to be
// sent, pass Config.OutputLimit: as Redis's hard
// client-output-buffer-limit, this counts replies before the socket takes
// them, so one reply too large closes the connection too.
func (l *eventLoop) overLimit(c *loopConn, more int) bool {
	lim := l.s.cfg.OutputLimit
	if n := len(c.out) + more; lim > 0 && n > lim {
		l.closeConn(c, outputLimitError(n, lim))
		return true
	}
	return false
}

// interest registers what c waits for: input unless it is busy or
// closing, output while replies wait.
func (l *eventLoop) interest(c *loopConn) {
	var want uint32
	if c.lingering || (!c.busy && !c.closing) {
		want |= unix.EPOLLIN
	}
	if len(c.out) > 0 {
		want |= unix.EPOLLOUT
	}
	if want == c.events {
		return
	}
	c.events = want
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: want, Fd: int32(c.fd)}); err != nil {
		l.closeConn(c, fmt.Errorf("epoll_ctl: %w", err))
	}
}

// drain reads and drops a lingering connection's input.
func (l *eventLoop) drain(c *loopConn) {
	n, err := sysRead(c.fd, l.rbuf[:min(len(l.rbuf), c.lingerLeft)])
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
			l.closeConn(c, writeTimeoutError(wt, nil))
		case idle > 0 && len(c.out) == 0 && !c.closing && l.now.Sub(c.lastIn) > idle:
			l.closeConn(c, errIdle)
		}
	}
}

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
		c.in = nil // a busy connection's goroutine still reads it
		l.s.forget(c.cl, err)
	}
}

// closeAll closes every connection at once (a forced close).
func (l *eventLoop) closeAll(err error) {
	for _, c := range l.conns {
		l.closeConn(c, err)
	}
}
