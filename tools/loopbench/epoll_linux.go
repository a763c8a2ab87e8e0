//go:build linux

package main

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/readstates/readstates/commands"
)

// The "epoll" driver: a minimal event loop in the style of
// server/loop_linux.go, without its guard, limits, timeouts and deferred
// commands. One loop per core, each with a blocking epoll_wait; input is
// read 64 KiB at a time and the whole commands in it run at once; the
// replies are written straight away, what the socket does not take waits
// in the connection's out with EPOLLOUT, and past outPause bytes of it the
// loop stops reading from the connection.

const (
	readChunk = 64 << 10
	outPause  = 1 << 20
)

type epLoop struct {
	epfd, wakefd int
	conns        map[int]*epConn
	events       []unix.EpollEvent
	rbuf, wbuf   []byte
	p            *proc
	woken        atomic.Bool
	mu           sync.Mutex
	added        []*epConn
	stop         bool
}

type epConn struct {
	fd     int
	sess   *commands.Session
	in     []byte // the start of a command not yet whole
	out    []byte // replies the socket did not take yet
	events uint32
	close  bool // close once out is sent
}

func serveEpoll(addr string, n int, d *commands.Dispatcher) (func(), error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	loops := make([]*epLoop, n)
	var wg sync.WaitGroup
	for i := range loops {
		l, err := newEpLoop(d)
		if err != nil {
			ln.Close()
			return nil, err
		}
		loops[i] = l
		wg.Go(l.run)
	}
	var id atomic.Int64
	go func() {
		for next := 0; ; next++ {
			nc, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
			fd, err := dupSocket(nc)
			sess := commands.NewSession(id.Add(1), nc.RemoteAddr().String(), nc.LocalAddr().String(), time.Now())
			nc.Close() // the loop has its own descriptor of the socket
			if err != nil {
				continue
			}
			l := loops[next%len(loops)]
			l.mu.Lock()
			l.added = append(l.added, &epConn{fd: fd, sess: sess})
			l.mu.Unlock()
			l.wake()
		}
	}()
	return func() {
		ln.Close()
		for _, l := range loops {
			l.mu.Lock()
			l.stop = true
			l.mu.Unlock()
			l.wake()
		}
		wg.Wait()
	}, nil
}

// dupSocket returns a non-blocking, close-on-exec duplicate of nc's socket.
func dupSocket(nc net.Conn) (int, error) {
	rc, err := nc.(syscall.Conn).SyscallConn()
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

func newEpLoop(d *commands.Dispatcher) (*epLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wakefd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakefd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wakefd)}); err != nil {
		unix.Close(epfd)
		unix.Close(wakefd)
		return nil, err
	}
	return &epLoop{
		epfd: epfd, wakefd: wakefd,
		conns:  make(map[int]*epConn),
		events: make([]unix.EpollEvent, 256),
		rbuf:   make([]byte, readChunk),
		p:      newProc(d),
	}, nil
}

func (l *epLoop) wake() {
	if l.woken.CompareAndSwap(false, true) {
		one := [8]byte{1}
		_, _ = unix.Write(l.wakefd, one[:])
	}
}

func (l *epLoop) run() {
	defer func() {
		for _, c := range l.conns {
			l.closeConn(c)
		}
		unix.Close(l.wakefd)
		unix.Close(l.epfd)
	}()
	for {
		// A blocking epoll_wait, as server/loop_linux.go.
		n, err := unix.EpollWait(l.epfd, l.events, -1)
		if err != nil && err != unix.EINTR {
			time.Sleep(10 * time.Millisecond)
		}
		for _, ev := range l.events[:max(n, 0)] {
			if c := l.conns[int(ev.Fd)]; c != nil {
				l.ready(c, ev.Events)
			}
		}
		if l.woken.Load() {
			var buf [8]byte
			_, _ = unix.Read(l.wakefd, buf[:])
			l.woken.Store(false)
			l.mu.Lock()
			added, stop := l.added, l.stop
			l.added = nil
			l.mu.Unlock()
			for _, c := range added {
				c.events = unix.EPOLLIN
				if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &unix.EpollEvent{Events: c.events, Fd: int32(c.fd)}); err != nil {
					unix.Close(c.fd)
					continue
				}
				l.conns[c.fd] = c
			}
			if stop {
				return
			}
		}
	}
}

func (l *epLoop) ready(c *epConn, ev uint32) {
	if ev&unix.EPOLLOUT != 0 && len(c.out) > 0 {
		if !l.flush(c) {
			return
		}
	}
	if ev&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) == 0 || c.events&unix.EPOLLIN == 0 {
		if ev&(unix.EPOLLHUP|unix.EPOLLERR) != 0 {
			l.closeConn(c)
		}
		return
	}
	n, err := unix.Read(c.fd, l.rbuf)
	if n <= 0 {
		if err == unix.EAGAIN || err == unix.EINTR {
			return
		}
		l.closeConn(c)
		return
	}
	data := l.rbuf[:n]
	if len(c.in) > 0 {
		c.in = append(c.in, data...)
		data = c.in
	}
	// The replies go behind those pending, or into the loop's buffer.
	if len(c.out) > 0 {
		l.p.w.b = c.out
	} else {
		l.p.w.b = l.wbuf[:0]
	}
	used, closeConn := l.p.run(c.sess, data)
	rest := data[used:]
	if len(c.in) > 0 {
		c.in = c.in[:copy(c.in, rest)]
	} else if len(rest) > 0 {
		c.in = append(c.in, rest...)
	}
	c.close = closeConn
	out := l.p.w.b
	l.p.w.b = nil
	if len(c.out) > 0 {
		c.out = out
		l.flush(c)
		return
	}
	if len(out) > 0 {
		n, err := unix.Write(c.fd, out)
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			l.closeConn(c)
			return
		}
		if n < len(out) {
			c.out = append(c.out, out[max(n, 0):]...)
		}
	}
	if cap(out) <= 4*readChunk {
		l.wbuf = out[:0]
	}
	l.settle(c)
}

// flush writes c's pending replies; it reports whether c is still open.
func (l *epLoop) flush(c *epConn) bool {
	n, err := unix.Write(c.fd, c.out)
	if err != nil && err != unix.EAGAIN && err != unix.EINTR {
		l.closeConn(c)
		return false
	}
	if n > 0 {
		c.out = c.out[:copy(c.out, c.out[n:])]
	}
	return l.settle(c)
}

// settle closes c if it is done, or registers what it waits for: input
// unless too many replies are pending, output while any are.
func (l *epLoop) settle(c *epConn) bool {
	if len(c.out) == 0 && cap(c.out) > 4*readChunk {
		c.out = nil
	}
	if c.close && len(c.out) == 0 {
		l.closeConn(c)
		return false
	}
	var want uint32
	if !c.close && len(c.out) < outPause {
		want |= unix.EPOLLIN
	}
	if len(c.out) > 0 {
		want |= unix.EPOLLOUT
	}
	if want != c.events {
		c.events = want
		if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, c.fd, &unix.EpollEvent{Events: want, Fd: int32(c.fd)}); err != nil {
			l.closeConn(c)
			return false
		}
	}
	return true
}

func (l *epLoop) closeConn(c *epConn) {
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	unix.Close(c.fd)
	delete(l.conns, c.fd)
	c.in, c.out = nil, nil
}
