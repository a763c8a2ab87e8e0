//go:build linux || darwin || freebsd || netbsd || openbsd || dragonfly

package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/cloudwego/netpoll"

	"github.com/readstates/readstates/commands"
)

// The "netpoll" driver: cloudwego/netpoll's EventLoop. Its pollers (one
// per core here, as the other drivers' loops) read every ready socket into
// the connection's LinkBuffer; OnRequest then runs on a goroutine of
// netpoll's pool (gopool), not on the poller: it parses the whole
// commands buffered (Peek), dispatches them, releases the input, and
// writes the replies with Writer().WriteBinary + Flush. Flush blocks that
// goroutine until the socket has taken everything (or the write timeout),
// which is netpoll's backpressure: while it blocks, the connection's
// input is still read into its buffer by the poller, but no more commands
// of it run.

type netpollConn struct {
	sess *commands.Session
	p    *proc
}

type netpollKey struct{}

func serveNetpoll(addr string, n int, d *commands.Dispatcher) (func(), error) {
	if err := netpoll.Configure(netpoll.Config{PollerNum: n}); err != nil {
		return nil, err
	}
	ln, err := netpoll.CreateListener("tcp", addr)
	if err != nil {
		return nil, err
	}
	var id atomic.Int64
	onPrepare := func(c netpoll.Connection) context.Context {
		st := &netpollConn{
			sess: commands.NewSession(id.Add(1), c.RemoteAddr().String(), c.LocalAddr().String(), time.Now()),
			p:    newProc(d),
		}
		return context.WithValue(context.Background(), netpollKey{}, st)
	}
	onRequest := func(ctx context.Context, c netpoll.Connection) error {
		st := ctx.Value(netpollKey{}).(*netpollConn)
		r, w, p := c.Reader(), c.Writer(), st.p
		defer func() {
			_ = r.Release()
			if cap(p.w.b) > 4*readChunk {
				p.w.b = nil
			}
		}()
		for {
			in, err := r.Peek(r.Len())
			if err != nil {
				return err
			}
			p.w.b = p.w.b[:0]
			used, closeConn := p.run(st.sess, in)
			_ = r.Skip(used)
			if len(p.w.b) > 0 {
				if _, err := w.WriteBinary(p.w.b); err != nil {
					return err
				}
				if err := w.Flush(); err != nil {
					return err
				}
			}
			if closeConn {
				return c.Close()
			}
			if used == len(in) {
				if r.Len() == 0 {
					return nil
				}
				continue // more came in meanwhile
			}
			// The start of a command: netpoll calls OnRequest again at
			// once while input is left, so wait here for more of it, as
			// netpoll's codecs do (Peek blocks until it has n bytes).
			if _, err := r.Peek(len(in) - used + 1); err != nil {
				return err
			}
		}
	}
	el, err := netpoll.NewEventLoop(onRequest, netpoll.WithOnPrepare(onPrepare))
	if err != nil {
		ln.Close()
		return nil, err
	}
	go func() { _ = el.Serve(ln) }()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = el.Shutdown(ctx)
	}, nil
}
