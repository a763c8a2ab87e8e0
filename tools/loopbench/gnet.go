package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/panjf2000/gnet/v2/pkg/logging"

	"github.com/readstates/readstates/commands"
)

// The "gnet" driver: gnet v2, multicore, one event loop per core. OnTraffic
// runs on the connection's loop: it parses the whole commands in what
// gnet has read (Peek, then Discard), dispatches them, and writes the
// replies with c.Write, which writes to the socket at once and keeps what
// it does not take in gnet's outbound buffer (and waits for EPOLLOUT).
// AsyncWrite is for other goroutines only; nothing here runs off the
// loop, so it is not needed.
//
// gnet has no way to stop reading from one connection: a client that
// sends without reading its replies grows the outbound buffer (and the
// inbound one, if OnTraffic leaves input unconsumed) without bound. The
// handler can only close it (see outPause).

type gnetServer struct {
	gnet.BuiltinEventEngine
	d   *commands.Dispatcher
	id  atomic.Int64
	eng gnet.Engine
}

// gnetConn is a connection's state (gnet.Conn.Context): its session and
// its own proc, since OnTraffic does not say which loop it runs on.
type gnetConn struct {
	sess *commands.Session
	p    *proc
}

func serveGnet(addr string, n int, d *commands.Dispatcher) (func(), error) {
	s := &gnetServer{d: d}
	errc := make(chan error, 1)
	go func() {
		errc <- gnet.Run(s, "tcp://"+addr,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(n),
			gnet.WithReadBufferCap(readChunk),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogLevel(logging.ErrorLevel),
		)
	}()
	// Run returns only on failure or Stop; give it a moment to fail.
	select {
	case err := <-errc:
		return nil, err
	case <-time.After(200 * time.Millisecond):
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.eng.Stop(ctx)
	}, nil
}

func (s *gnetServer) OnBoot(eng gnet.Engine) gnet.Action {
	s.eng = eng
	return gnet.None
}

func (s *gnetServer) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	c.SetContext(&gnetConn{
		sess: commands.NewSession(s.id.Add(1), c.RemoteAddr().String(), c.LocalAddr().String(), time.Now()),
		p:    newProc(s.d),
	})
	return nil, gnet.None
}

func (s *gnetServer) OnTraffic(c gnet.Conn) gnet.Action {
	gc := c.Context().(*gnetConn)
	in, _ := c.Peek(-1) // all that is buffered, usually gnet's read buffer itself
	p := gc.p
	p.w.b = p.w.b[:0]
	used, closeConn := p.run(gc.sess, in)
	_, _ = c.Discard(used)
	if len(p.w.b) > 0 {
		if _, err := c.Write(p.w.b); err != nil {
			return gnet.Close
		}
	}
	if cap(p.w.b) > 4*readChunk {
		p.w.b = nil
	}
	if closeConn || c.OutboundBuffered() > 64*outPause {
		return gnet.Close
	}
	return gnet.None
}
