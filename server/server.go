package server

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/readstates/readstates/commands"
	"github.com/readstates/readstates/persist"
)

// Config configures a Server. Zero values take the defaults given.
type Config struct {
	// Addr is the TCP address ListenAndServe listens on (default
	// "127.0.0.1:6380").
	Addr string
	// RequirePass, if set, is the password clients must AUTH with.
	RequirePass string
	// MaxClients caps the connected clients (default 10000); the next is
	// answered "-ERR max number of clients reached" and closed, as in Redis.
	MaxClients int
	// IdleTimeout closes a connection that sends nothing for this long
	// (0: never, Redis's default).
	IdleTimeout time.Duration
	// MaxArgs caps the arguments of one request (default 65536; RSMGET
	// takes at most MaxChannels channel_ids anyway).
	MaxArgs int
	// MaxBulkBytes caps one argument (default 1 MiB; Redis's
	// proto-max-bulk-len is 512 MiB, but no readstates argument needs more
	// than a few bytes).
	MaxBulkBytes int
	// MaxRequestBytes caps one whole request (default 16 MiB): redcon
	// buffers a request entirely before it runs it.
	MaxRequestBytes int
	// MaxChannels caps the channel_ids of one RSMGET (default
	// commands.DefaultMaxChannels).
	MaxChannels int
	// WriteTimeout closes a connection whose client takes none of its
	// replies for this long while some are waiting to be sent: a client
	// that pipelines and never reads would otherwise hold its replies (and
	// with a goroutine per connection, the goroutine) forever (default
	// DefaultWriteTimeout; negative: never).
	WriteTimeout time.Duration
	// OutputLimit closes a connection that has more than this many bytes of
	// replies waiting, counted before the socket takes them, as Redis's
	// hard client-output-buffer-limit does (default DefaultOutputLimit;
	// negative: none). A client may write a whole pipeline before it reads
	// a reply: the server keeps reading and running its requests while
	// the replies wait, up to this limit. So a client costs at most this
	// much in replies, plus MaxRequestBytes of input.
	OutputLimit int
	// TrackingTableMaxKeys bounds the users the client-side caching table
	// remembers (default commands.DefaultTrackingTableMaxKeys).
	TrackingTableMaxKeys int
	// Cluster, if set, makes the server a node of a cluster (see
	// commands.Config.Cluster and package cluster).
	Cluster commands.Cluster
	// TLS, if set, makes the server speak TLS only (on Addr, or the
	// listener given to Serve). It is cloned; its MinVersion is raised to
	// TLS 1.2. The protocol limits and deadlines apply to the decrypted
	// stream.
	TLS *tls.Config
	// TLSHandshakeTimeout bounds a client's TLS handshake (default
	// DefaultTLSHandshakeTimeout), which holds one of MaxClients while it
	// runs.
	TLSHandshakeTimeout time.Duration
	// EventLoops is how many epoll event loops serve plaintext
	// connections on Linux (default: GOMAXPROCS, at most 4; negative:
	// goroutines per connection, the driver that also serves TLS and
	// other systems). See loop_linux.go and stream.go.
	EventLoops int
	// MetricsAddr, if set, serves Prometheus metrics at /metrics on this
	// address (e.g. ":9121").
	MetricsAddr string
	// Metrics, if set, is the metrics registry to use (see NewMetrics);
	// otherwise one is made when MetricsAddr is set.
	Metrics *Metrics
	// ObserveRun, if set, is given the run time of every command that ran
	// without waiting for the database (commands.Config.ObserveRun). It
	// must not block.
	ObserveRun func(time.Duration)
	// OnShutdown is called by the SHUTDOWN command. It must not block; it
	// should start the same path as SIGTERM (which calls Shutdown). If nil,
	// SHUTDOWN is refused.
	OnShutdown func()
	// Version is the build reported by INFO.
	Version string
	// Logger receives the server's logs; connection errors are at debug
	// level (default slog.Default()).
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultAddr            = "127.0.0.1:6380"
	DefaultMaxClients      = 10000
	DefaultMaxArgs         = 1 << 16
	DefaultMaxBulkBytes    = 1 << 20
	DefaultMaxRequestBytes = 16 << 20
	// A client that leaves megabytes of replies unread for 10 s has given
	// up on them: client libraries time their reads out sooner.
	DefaultWriteTimeout = 10 * time.Second
	DefaultOutputLimit  = 64 << 20
	// Long enough for a handshake across the world, short enough that
	// idle connections cannot pile up.
	DefaultTLSHandshakeTimeout = 10 * time.Second
)

// maxLimit bounds the configurable limits, so the parser's arithmetic
// cannot overflow.
const maxLimit = 1 << 40

// Backend is what the server serves: the read states and their counters
// (persist.Engine).
type Backend interface {
	commands.ReadStates
	commands.StatsSource
	// NoWait is the view of the read states that never waits: where the
	// backend would wait for its database it fails with
	// persist.ErrWouldBlock, changing nothing. The event loops run
	// commands on it, and those that fail on a goroutine that may wait.
	NoWait() persist.ReadStates
	// Rerun is the view those commands then run on: it waits, and counts
	// none of the cache lookups their NoWait try counted.
	Rerun() persist.ReadStates
}

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown
// or Close.
var ErrServerClosed = errors.New("server: closed")

// Server is a readstates server. Create it with New, run it with Serve or
// ListenAndServe, stop it with Shutdown.
//
// Its life is two one-way steps, each set once under mu and mirrored in an
// atomic for the hot path: closing (Shutdown, Close, or Serve's context:
// no new connections, each connection closes after the command it runs),
// then released (the drain is over or abandoned: every connection is
// closed now, the commands' context is canceled, Serve returns once the
// last is gone). s.mu is never held while doing anything that can block
// on the network.
type Server struct {
	cfg     Config
	log     *slog.Logger
	disp    *commands.Dispatcher
	metrics *Metrics // nil: no metrics
	backend Backend
	limits  limits

	closing  atomic.Bool // mirrors mu.closed
	forced   atomic.Bool // mirrors mu.released
	nextID   atomic.Int64
	accepted atomic.Uint64
	rejected atomic.Uint64
	// ctx is the parent of every command's context (a net/http-style base
	// context), set by Serve before the first connection.
	ctx      context.Context
	ready    chan struct{} // closed when Serve is listening
	done     chan struct{} // closed when Serve has returned
	released chan struct{} // closed by release

	loopsWG  sync.WaitGroup // the event loops' goroutines
	deferred *deferPool     // runs the event loops' deferred commands
	nextLoop int            // the loop for the next connection (accept loop only)
	streams  sync.WaitGroup // the goroutine driver's connections
	// replyBufs holds the goroutine driver's reply buffers (*replyBuf).
	replyBufs sync.Pool

	mu struct {
		sync.Mutex
		started    bool
		closed     bool // closing: see Server
		released   bool // released: see Server
		explicit   bool // Shutdown or Close was called (not ctx)
		ln         net.Listener
		metricsSrv *http.Server
		metricsLn  net.Listener
		cancel     context.CancelFunc // of ctx
		clients    map[*client]struct{}
		closedCmds uint64        // commands run on connections now closed
		drained    chan struct{} // closed when closed and no clients are left
		loops      []*eventLoop
	}
}

// New returns a server for backend.
func New(cfg Config, backend Backend) (*Server, error) {
	if backend == nil {
		return nil, errors.New("server: nil backend")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.MaxClients <= 0 {
		cfg.MaxClients = DefaultMaxClients
	}
	cfg.MaxArgs = clampLimit(cfg.MaxArgs, DefaultMaxArgs)
	cfg.MaxBulkBytes = clampLimit(cfg.MaxBulkBytes, DefaultMaxBulkBytes)
	cfg.MaxRequestBytes = clampLimit(cfg.MaxRequestBytes, DefaultMaxRequestBytes)
	switch {
	case cfg.WriteTimeout == 0:
		cfg.WriteTimeout = DefaultWriteTimeout
	case cfg.WriteTimeout < 0:
		cfg.WriteTimeout = 0
	}
	switch {
	case cfg.OutputLimit == 0:
		cfg.OutputLimit = DefaultOutputLimit
	case cfg.OutputLimit < 0:
		cfg.OutputLimit = 0
	}
	switch {
	case cfg.EventLoops == 0:
		cfg.EventLoops = min(runtime.GOMAXPROCS(0), 4)
	case cfg.EventLoops < 0:
		cfg.EventLoops = 0
	}
	if cfg.TLSHandshakeTimeout <= 0 {
		cfg.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	if cfg.TLS != nil {
		if len(cfg.TLS.Certificates) == 0 && cfg.TLS.GetCertificate == nil && cfg.TLS.GetConfigForClient == nil {
			return nil, errors.New("server: Config.TLS has no certificate")
		}
		cfg.TLS = cfg.TLS.Clone()
		cfg.TLS.MinVersion = max(cfg.TLS.MinVersion, tls.VersionTLS12)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Metrics == nil && cfg.MetricsAddr != "" {
		cfg.Metrics = NewMetrics()
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		metrics: cfg.Metrics,
		backend: backend,
		limits: limits{
			maxArgs:    int64(cfg.MaxArgs),
			maxBulk:    int64(cfg.MaxBulkBytes),
			maxRequest: int64(cfg.MaxRequestBytes),
			maxInline:  min(maxInline, int64(cfg.MaxRequestBytes)),
		},
		ready:    make(chan struct{}),
		done:     make(chan struct{}),
		released: make(chan struct{}),
	}
	s.mu.clients = make(map[*client]struct{})
	s.mu.drained = make(chan struct{})
	var observe func(*commands.Command, bool, time.Duration)
	if s.metrics != nil {
		observe = s.metrics.observe
	}
	changes, _ := backend.(commands.ChangeSource) // client-side caching
	disp, err := commands.New(commands.Config{
		Changes:              changes,
		TrackingTableMaxKeys: cfg.TrackingTableMaxKeys,
		Cluster:              cfg.Cluster,
		Observe:              observe,
		ObserveRun:           cfg.ObserveRun,
		Backend:              backend,
		NoWait:               backend.NoWait(),
		Rerun:                backend.Rerun(),
		Stats:                backend,
		Host:                 (*host)(s),
		RequirePass:          cfg.RequirePass,
		MaxChannels:          cfg.MaxChannels,
		Version:              cfg.Version,
		Params: []commands.Param{
			{Name: "maxclients", Value: strconv.Itoa(cfg.MaxClients)},
			{Name: "timeout", Value: strconv.Itoa(int(cfg.IdleTimeout / time.Second))},
			{Name: "bind", Value: hostOf(cfg.Addr)},
			{Name: "port", Value: portOf(cfg.Addr)},
			{Name: "proto-max-bulk-len", Value: strconv.Itoa(cfg.MaxBulkBytes)},
			{Name: "proto-max-multibulk-len", Value: strconv.Itoa(cfg.MaxArgs)},
			{Name: "client-query-buffer-limit", Value: strconv.Itoa(cfg.MaxRequestBytes)},
			{Name: "client-output-limit", Value: strconv.Itoa(cfg.OutputLimit)},
			{Name: "client-write-timeout", Value: strconv.Itoa(int(cfg.WriteTimeout / time.Second))},
			{Name: "maxmemory-policy", Value: "allkeys-lru"},
			{Name: "tracking-table-max-keys", Value: strconv.Itoa(cmp.Or(cfg.TrackingTableMaxKeys, commands.DefaultTrackingTableMaxKeys))},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	s.disp = disp
	if s.metrics != nil {
		if err := s.metrics.bind(s, disp.Commands(), backend); err != nil {
			return nil, fmt.Errorf("server: metrics: %w", err)
		}
	}
	return s, nil
}

func clampLimit(v, def int) int {
	if v <= 0 {
		return def
	}
	return min(v, maxLimit)
}

func hostOf(addr string) string {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return h
}

func portOf(addr string) string {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return ""
	}
	return p
}

// ListenAndServe listens on Config.Addr and serves; see Serve.
func (s *Server) ListenAndServe(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("server: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve serves connections on ln (and metrics on Config.MetricsAddr) until
// Shutdown or Close, then returns ErrServerClosed; ln is closed. ctx is the
// parent of every command's context; if it is canceled, Serve stops as
// Close does (without waiting for commands) and returns ctx's error.
// When Serve returns, no connection is open and no command is running.
//
// Serve may be called once.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.mu.Lock()
	if started, closed := s.mu.started, s.mu.closed; started || closed {
		s.mu.Unlock()
		ln.Close()
		if closed {
			return ErrServerClosed
		}
		return errors.New("server: Serve called twice")
	}
	s.mu.started = true
	cctx, cancel := context.WithCancel(ctx)
	s.ctx, s.mu.cancel = cctx, cancel
	s.mu.ln = ln
	s.mu.Unlock()
	defer close(s.done)
	defer cancel()

	var bg sync.WaitGroup // goroutines Serve owns; it waits for them
	if s.cfg.MetricsAddr != "" {
		mln, err := net.Listen("tcp", s.cfg.MetricsAddr)
		if err != nil {
			s.beginClose()
			s.release()
			return fmt.Errorf("server: metrics listen: %w", err)
		}
		srv := &http.Server{Handler: s.metrics.Handler(), ReadHeaderTimeout: 10 * time.Second}
		s.mu.Lock()
		s.mu.metricsSrv, s.mu.metricsLn = srv, mln
		s.mu.Unlock()
		bg.Add(1)
		go func() {
			defer bg.Done()
			if err := srv.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				s.log.Error("metrics server", "err", err)
			}
		}()
	}
	// The watcher makes cancellation of ctx stop the server; Serve cancels
	// cctx on its way out, which ends the watcher.
	bg.Add(1)
	go func() {
		defer bg.Done()
		<-cctx.Done()
		s.beginClose()
		s.release()
	}()

	loops := s.useLoops(ln)
	serve := func(nc net.Conn) {
		s.streams.Add(1)
		go func() {
			defer s.streams.Done()
			s.serveStream(nc)
		}()
	}
	if loops {
		if err := s.startLoops(); err != nil {
			s.beginClose()
			s.release()
			return fmt.Errorf("server: %w", err)
		}
		serve = s.serveLoop
	}
	attrs := []any{"addr", ln.Addr().String(), "tls", s.cfg.TLS != nil}
	if loops {
		attrs = append(attrs, "event_loops", s.cfg.EventLoops)
	}
	s.mu.Lock()
	if s.mu.metricsLn != nil {
		attrs = append(attrs, "metrics_addr", s.mu.metricsLn.Addr().String())
	}
	s.mu.Unlock()
	s.log.Info("ready", attrs...)
	close(s.ready)

	s.acceptLoop(ln, serve)
	// The listener is closed: wait until every connection is gone (they
	// finish their commands, or Shutdown's deadline or Close releases
	// them), so no command runs after Serve returns.
	s.beginClose()
	s.mu.Lock()
	drained, msrv, explicit := s.mu.drained, s.mu.metricsSrv, s.mu.explicit
	s.mu.Unlock()
	<-drained
	s.streams.Wait()
	if loops {
		s.stopLoops()
	}
	if msrv != nil {
		msrv.Close()
	}
	cancel()
	bg.Wait()
	if !explicit && ctx.Err() != nil {
		return ctx.Err()
	}
	return ErrServerClosed
}

// acceptLoop accepts connections and hands each to serve, until the
// listener is closed. Failures back off, as in net/http (running out of
// file descriptors must not spin a core).
func (s *Server) acceptLoop(ln net.Listener, serve func(net.Conn)) {
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err == nil {
			delay = 0
			serve(nc)
			continue
		}
		if errors.Is(err, net.ErrClosed) || s.closing.Load() {
			return
		}
		delay = min(max(2*delay, 5*time.Millisecond), time.Second)
		s.log.Warn("accept failed; retrying", "err", err, "retry_in", delay)
		t := time.NewTimer(delay)
		select {
		case <-t.C:
		case <-s.released:
			t.Stop()
			return
		}
	}
}

// Ready is closed once Serve is accepting connections (never, if Serve
// fails to start: wait for its result too).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr returns the address Serve listens on, nil before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.ln == nil {
		return nil
	}
	return s.mu.ln.Addr()
}

// MetricsAddr returns the address of the metrics endpoint, nil if none.
func (s *Server) MetricsAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.metricsLn == nil {
		return nil
	}
	return s.mu.metricsLn.Addr()
}

// Shutdown stops the server gracefully: it closes the listener (new
// connections are refused), lets every connection finish the command it
// is running and flush its replies, closes the connections, and waits
// until Serve has returned. Commands that a client pipelined behind the
// running one are not run; the client sees the connection close.
//
// If ctx ends first, the remaining connections are closed at once, the
// commands' context is canceled, and Shutdown still waits for their
// goroutines (which then end promptly) before it returns ctx's error. So
// when Shutdown returns, no command is running or will run.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.mu.explicit = true
	s.mu.Unlock()
	s.beginClose()
	s.mu.Lock()
	drained := s.mu.drained
	s.mu.Unlock()
	var err error
	select {
	case <-drained:
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.release()
	s.waitServe()
	return err
}

// Close stops the server at once: the listener and every connection are
// closed without waiting, and the commands' context is canceled. It waits
// until Serve has returned.
func (s *Server) Close() error {
	s.mu.Lock()
	s.mu.explicit = true
	s.mu.Unlock()
	s.beginClose()
	s.release()
	s.waitServe()
	return nil
}

func (s *Server) waitServe() {
	s.mu.Lock()
	started := s.mu.started
	s.mu.Unlock()
	if started {
		<-s.done
	}
}

// beginClose starts a shutdown, once: no new connections; idle
// connections are woken so they close; busy ones close after their
// current command (see handle and guardConn.Read).
func (s *Server) beginClose() {
	s.mu.Lock()
	if s.mu.closed {
		s.mu.Unlock()
		return
	}
	s.mu.closed = true
	s.closing.Store(true)
	if s.mu.ln != nil {
		s.mu.ln.Close()
	}
	if len(s.mu.clients) == 0 {
		close(s.mu.drained)
	}
	conns := make([]net.Conn, 0, len(s.mu.clients))
	for cl := range s.mu.clients {
		if cl.nc != nil {
			conns = append(conns, cl.nc)
		}
	}
	s.mu.Unlock()
	s.wakeLoops() // they close their connections as they finish
	// A goroutine blocked reading returns at once, sees closing, and
	// closes its connection once its replies are sent (see readLoop).
	now := time.Now()
	for _, c := range conns {
		_ = c.SetReadDeadline(now)
	}
}

// release closes every connection left, at once, and cancels the
// commands' context.
func (s *Server) release() {
	s.mu.Lock()
	if s.mu.released {
		s.mu.Unlock()
		return
	}
	s.mu.released = true
	s.forced.Store(true)
	close(s.released)
	if s.mu.cancel != nil {
		s.mu.cancel()
	}
	conns := make([]net.Conn, 0, len(s.mu.clients))
	for cl := range s.mu.clients {
		if cl.nc != nil {
			conns = append(conns, cl.nc)
		}
	}
	s.mu.Unlock()
	s.wakeLoops()
	for _, c := range conns {
		c.Close() // its goroutines see the error and end
	}
}

// host is the Server as the commands see it (commands.Host).
type host Server

func (h *host) HostStats() commands.HostStats {
	s := (*Server)(h)
	st := commands.HostStats{
		MaxClients:          s.cfg.MaxClients,
		TotalConnections:    s.accepted.Load(),
		RejectedConnections: s.rejected.Load(),
	}
	if a := s.Addr(); a != nil {
		if ta, ok := a.(*net.TCPAddr); ok {
			st.Port = ta.Port
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st.ConnectedClients = len(s.mu.clients)
	st.TotalCommands = s.mu.closedCmds
	for cl := range s.mu.clients {
		st.TotalCommands += cl.sess.Commands()
	}
	return st
}

func (h *host) EachSession(fn func(*commands.Session)) {
	s := (*Server)(h)
	s.mu.Lock()
	sessions := make([]*commands.Session, 0, len(s.mu.clients))
	for cl := range s.mu.clients {
		if !cl.killed {
			sessions = append(sessions, cl.sess)
		}
	}
	s.mu.Unlock()
	slices.SortFunc(sessions, func(a, b *commands.Session) int { return cmp.Compare(a.ID(), b.ID()) })
	for _, sess := range sessions {
		fn(sess)
	}
}

func (h *host) Kill(match func(*commands.Session) bool) int {
	s := (*Server)(h)
	s.mu.Lock()
	var kills []func()
	for cl := range s.mu.clients {
		if cl.kill != nil && !cl.killed && match(cl.sess) {
			cl.killed = true
			kills = append(kills, cl.kill)
		}
	}
	s.mu.Unlock()
	for _, k := range kills {
		k()
	}
	return len(kills)
}

func (h *host) Shutdown() error {
	s := (*Server)(h)
	if s.cfg.OnShutdown == nil {
		s.log.Warn("SHUTDOWN refused: no shutdown hook configured")
		return errors.New("no shutdown hook")
	}
	s.log.Info("SHUTDOWN requested by a client")
	s.cfg.OnShutdown()
	return nil
}
