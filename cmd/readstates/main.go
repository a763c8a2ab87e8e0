// Command readstates serves Discord-style read states over the Redis
// protocol: flags -> store -> engine -> server; SIGINT, SIGTERM or the
// SHUTDOWN command stop it gracefully (every change is written first).
// Run it with --help for the flags.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/readstates/readstates/cluster"
	"github.com/readstates/readstates/internal/slowtrace"
	"github.com/readstates/readstates/internal/tailwatch"
	"github.com/readstates/readstates/persist"
	"github.com/readstates/readstates/persist/cassandrastore"
	"github.com/readstates/readstates/persist/journal"
	"github.com/readstates/readstates/persist/pebblestore"
	"github.com/readstates/readstates/server"
)

func main() {
	os.Exit(run(os.Args[1:], os.LookupEnv, os.Stderr))
}

// run is main with its inputs passed in; it returns the exit code.
func run(args []string, lookupEnv func(string) (string, bool), stderr io.Writer) int {
	o, err := parseFlags(args, lookupEnv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return 2
	}
	log, err := newLogger(o, stderr)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	// The signals stay caught until run returns, so that no SIGTERM can
	// kill the process while the final flush writes acknowledged changes.
	sd := catchShutdown(log)
	defer sd.close()
	if err := serve(sd.ctx, sd.request, o, log); err != nil {
		log.Error("exit", "err", err)
		return 1
	}
	log.Info("exit")
	return 0
}

// shutdownTrigger turns SIGINT, SIGTERM and the SHUTDOWN command into one
// shutdown request. signal.NotifyContext does not fit: its stop both
// requests the shutdown and unregisters the handler, so a SIGTERM sent
// after SHUTDOWN (systemd and Kubernetes send one) took the default action
// and killed the process in the middle of its final flush.
type shutdownTrigger struct {
	// ctx is done once a shutdown is requested; its cause says by what.
	ctx    context.Context
	cancel context.CancelCauseFunc
	// started is set by the first request, signal or command: it alone
	// decides which one starts the shutdown, so the log names it.
	started atomic.Bool
	sigs    chan os.Signal
	quit    chan struct{} // closed by close: the watcher returns
	done    chan struct{} // closed when the watcher has returned
}

// catchShutdown catches SIGINT and SIGTERM until close: the first one
// requests the shutdown, every later one is logged and ignored, so that
// only SIGKILL can cut the final flush short.
func catchShutdown(log *slog.Logger) *shutdownTrigger {
	ctx, cancel := context.WithCancelCause(context.Background())
	t := &shutdownTrigger{
		ctx:    ctx,
		cancel: cancel,
		// One slot is enough: the watcher never blocks for long, and a
		// signal dropped while it is full is one it would ignore anyway.
		sigs: make(chan os.Signal, 1),
		quit: make(chan struct{}),
		done: make(chan struct{}),
	}
	signal.Notify(t.sigs, syscall.SIGINT, syscall.SIGTERM)
	go t.watch(log)
	return t
}

func (t *shutdownTrigger) watch(log *slog.Logger) {
	defer close(t.done)
	for {
		select {
		case sig := <-t.sigs:
			if !t.started.CompareAndSwap(false, true) {
				log.Warn("signal ignored: shutdown in progress", "signal", sig)
				continue
			}
			log.Info("signal received: shutting down", "signal", sig)
			t.cancel(fmt.Errorf("signal %v", sig))
		case <-t.quit:
			return
		}
	}
}

// request is the SHUTDOWN command's hook: it starts the same path as a
// signal, without blocking, and any number of times (only the first
// counts).
func (t *shutdownTrigger) request() {
	if t.started.CompareAndSwap(false, true) {
		t.cancel(errors.New("SHUTDOWN command"))
	}
}

// close restores the signals' default action and stops the watcher. Call
// it once, when the data is written (or will not be).
func (t *shutdownTrigger) close() {
	signal.Stop(t.sigs)
	close(t.quit)
	<-t.done
	t.cancel(context.Canceled)
}

// serve runs the server until ctx is done, then shuts down in order:
// connections (the commands in flight finish, within --drain-timeout), the
// engine's write-behind, the final flush (within --shutdown-timeout), the
// store. requestShutdown is the SHUTDOWN command's hook: it must make ctx
// done.
func serve(ctx context.Context, requestShutdown func(), o *options, log *slog.Logger) (err error) {
	// Before the store opens: a bad certificate should stop the start
	// at once.
	tlsConfig, err := o.tls.config()
	if err != nil {
		return err
	}
	store, err := openStore(ctx, o, log)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := store.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
	}()

	if o.pprofAddr != "" {
		pctx, stopPprof := context.WithCancel(context.Background())
		done, err := servePprof(pctx, o.pprofAddr, log)
		if err != nil {
			stopPprof()
			return err
		}
		defer func() { stopPprof(); <-done }()
	}

	var observeRun func(time.Duration)
	if o.traceSlow > 0 {
		dir := filepath.Join(o.dataDir, "traces")
		rec, err := slowtrace.Start(slowtrace.Config{Dir: dir, Threshold: o.traceSlow, Logger: log})
		if err != nil {
			return err
		}
		defer rec.Close() // the server has stopped by then: nothing observes
		observeRun = rec.Observe
		log.Info("tracing slow commands", "threshold", o.traceSlow, "dir", dir)
	}

	var metrics *server.Metrics
	var observeLoad func(d time.Duration)
	if o.server.MetricsAddr != "" {
		metrics = server.NewMetrics()
		observeLoad = metrics.ObserveLoad
	}
	ecfg := persist.EngineConfig{
		Store:         store,
		CacheEntries:  o.cacheEntries,
		FlushInterval: o.flushInterval,
		UserPage:      o.userPage,
		MaxPending:    o.maxPending,
		ObserveLoad:   observeLoad,
		Logger:        log,
	}
	if o.clockOffset != 0 {
		log.Warn("the wall clock is offset (--clock-offset)", "offset", o.clockOffset)
		ecfg.Now = func() time.Time { return time.Now().Add(o.clockOffset) }
	}
	if o.cluster {
		ecfg.LogicalStamps = true // see package cluster: fencing
	}
	if o.journal {
		ecfg.Journal = &journal.Options{Dir: filepath.Join(o.dataDir, "journal"), Policy: o.journalPolicy, Repair: o.journalRepair}
	}
	if cs, ok := store.(*cassandrastore.Store); ok {
		// A Cassandra write is a round trip per user. One user a Write,
		// --cassandra-concurrency writers: that many requests always in
		// flight, none waiting for another's, and the rest in the queue,
		// where a user's rows gather into one request while it waits
		// (BENCHMARKS.md, Cassandra flush throughput). Pebble keeps the
		// engine's defaults: one writer of 1,024 records, a commit each.
		ecfg.WriteBatch, ecfg.WriteUsers, ecfg.Writers = cassandrastore.MaxBatchRows, 1, cs.Concurrency()
	}
	engine, err := persist.NewEngine(ecfg)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- engine.Run(runCtx) }()

	if o.slowSeconds > 0 {
		watch, err := tailwatch.New(tailwatch.Config{
			Threshold: o.slowSeconds,
			Sources:   slowSecondSources(engine),
			Logger:    log,
		})
		if err != nil {
			stopRun()
			<-runDone
			return err
		}
		wctx, stopWatch := context.WithCancel(context.Background())
		watchDone := make(chan struct{})
		go func() { defer close(watchDone); watch.Run(wctx) }()
		defer func() { stopWatch(); <-watchDone }()
		observeRun = chainObservers(observeRun, watch.Observe)
		log.Info("watching for slow seconds", "threshold", o.slowSeconds)
	}

	var node *cluster.Node
	if o.cluster {
		if node, err = newNode(o, store, engine, log); err == nil {
			engine.SetServes(node.Serves)
		} else {
			stopRun()
			<-runDone
			cctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
			defer cancel()
			return errors.Join(err, closeEngine(cctx, engine, log))
		}
	}
	nodeCtx, stopNode := context.WithCancel(context.Background())
	defer stopNode()
	nodeDone := make(chan error, 1)
	if node != nil {
		go func() {
			if err := node.Run(nodeCtx); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("cluster", "err", err)
			}
			close(nodeDone) // received once or twice (see below)
		}()
	} else {
		close(nodeDone)
	}

	cfg := o.server
	cfg.EventLoops = loopProcs(cfg.EventLoops, tlsConfig != nil, os.Getenv("GOMAXPROCS") != "", log)
	if node != nil {
		cfg.Cluster = node
	}
	cfg.ObserveRun = observeRun
	cfg.TLS = tlsConfig
	cfg.Metrics = metrics
	cfg.OnShutdown = requestShutdown
	cfg.Logger = log
	cfg.Version = version()
	srv, err := server.New(cfg, engine)
	if err != nil {
		stopRun()
		<-runDone
		cctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
		defer cancel()
		return errors.Join(err, closeEngine(cctx, engine, log))
	}
	serveDone := make(chan error, 1)
	go func() { serveDone <- srv.ListenAndServe(context.Background()) }()
	warmCtx, stopWarm := context.WithCancel(context.Background())
	warmDone := startWarm(warmCtx, o, engine, log)

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "cause", context.Cause(ctx),
			"drain_timeout", o.drainTimeout, "shutdown_timeout", o.shutdownTimeout)
	case serveErr = <-serveDone: // could not listen
	}
	if node != nil {
		// The node hands its slots over while it still serves: a client
		// of a slot that moved is redirected to its new owner.
		lctx, cancelLeave := context.WithTimeout(context.Background(), o.shutdownTimeout)
		if err := node.Leave(lctx); err != nil {
			// It keeps renewing its lease until the final flush is done,
			// so that no node takes its slots (and reads their rows)
			// before its last writes land.
			log.Warn("cluster: slots not handed over: the other nodes take them when this node's lease runs out, after its final flush", "err", err)
		} else {
			stopNode()
			<-nodeDone
		}
		cancelLeave()
	}
	// The drain and the final flush have budgets of their own: a client
	// that does not read its replies can hold the drain to its end, and
	// must not take the time the acknowledged changes need to be written.
	// When the drain's budget ends, Shutdown closes the connections left.
	dctx, cancelDrain := context.WithTimeout(context.Background(), o.drainTimeout)
	if err := srv.Shutdown(dctx); err != nil {
		log.Warn("drain timed out: connections closed before their replies were taken",
			"drain_timeout", o.drainTimeout, "err", err)
	}
	cancelDrain()
	if serveErr == nil {
		if serveErr = <-serveDone; errors.Is(serveErr, server.ErrServerClosed) {
			serveErr = nil
		}
	}
	stopWarm()
	<-warmDone
	saveWarmList(o, engine, log)
	stopRun()
	if err := <-runDone; err != nil {
		log.Error("write-behind", "err", err)
	}
	fctx, cancelFlush := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancelFlush()
	err = errors.Join(serveErr, closeEngine(fctx, engine, log))
	stopNode() // a node whose Leave failed renewed its lease until now
	<-nodeDone
	return err
}

// newNode makes this process a cluster node over the Cassandra store.
func newNode(o *options, store persist.Store, engine *persist.Engine, log *slog.Logger) (*cluster.Node, error) {
	cs, ok := store.(*cassandrastore.Store)
	if !ok {
		return nil, errors.New("--cluster needs the Cassandra store")
	}
	addr := cmp.Or(o.clusterAnnounce, o.server.Addr)
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port == "" || host == "" || net.ParseIP(host).IsUnspecified() {
		return nil, fmt.Errorf("cluster: %q is not an address clients can connect to: set --cluster-announce-addr host:port", addr)
	}
	id, err := cluster.NodeID(o.dataDir)
	if err != nil {
		return nil, err
	}
	log.Info("cluster: node", "id", id, "announce", addr, "lease", o.clusterLease)
	return cluster.NewNode(cluster.Config{
		ID: id, Addr: addr, Lease: o.clusterLease, WarmRate: o.warmRate,
		Store: cs.Coordinator(), Host: engine, Logger: log,
	})
}

// slowSecondSources are the delays --slow-seconds weighs, in the order
// it tries them as a slow second's cause: the specific first (a GC pause
// or a held lock also makes goroutines wait for a P, and threads for a
// CPU).
func slowSecondSources(engine *persist.Engine) []tailwatch.Source {
	return []tailwatch.Source{
		tailwatch.GCPauses(),
		{Name: "flush_shard_lock", Worst: func() (time.Duration, bool) { return engine.TakeFlushHold(), true }},
		{Name: "journal_lock", Worst: engine.TakeJournalWait},
		tailwatch.SchedLatency(),
		tailwatch.ThreadRunDelay(),
	}
}

// loopProcs resolves --event-loops (0: one per core, at most 4) and gives
// the Go runtime one more P for each loop, unless GOMAXPROCS is set. An
// event loop keeps its P while it blocks in epoll_wait and never parks
// in the runtime, so with one P per core and a loop per core every
// goroutine the loops make ready (a miss's worker, the engine's writers)
// waits until the runtime's monitor takes a P back from a blocked loop:
// up to milliseconds (BENCHMARKS.md, section 9c). It returns the loops to
// serve with: the count the server would resolve before the change.
func loopProcs(loops int, tls, procsSet bool, log *slog.Logger) int {
	procs := runtime.GOMAXPROCS(0)
	if loops == 0 {
		loops = min(procs, 4)
	}
	if loops < 0 || tls || runtime.GOOS != "linux" || procsSet {
		return loops // no loops (or the operator chose the Ps)
	}
	runtime.GOMAXPROCS(procs + loops)
	log.Info("a P for each event loop", "event_loops", loops, "gomaxprocs", procs+loops)
	return loops
}

// chainObservers returns an observer that calls both (either may be nil).
func chainObservers(a, b func(time.Duration)) func(time.Duration) {
	switch {
	case a == nil:
		return b
	case b == nil:
		return a
	}
	return func(d time.Duration) { a(d); b(d) }
}

// warmListFile is the list of users a graceful shutdown leaves in
// --data-dir for the next start to read back (see persist.Warm).
const warmListFile = "warm-users"

// startWarm reads back, in the background, the users the last graceful
// shutdown listed; the returned channel is closed when it is done or ctx
// ends.
func startWarm(ctx context.Context, o *options, engine *persist.Engine, log *slog.Logger) <-chan struct{} {
	done := make(chan struct{})
	if o.warmRate <= 0 || o.cluster {
		close(done)
		return done
	}
	users, err := persist.ReadUserList(filepath.Join(o.dataDir, warmListFile))
	if err != nil {
		log.Warn("warm restart: the user list is unreadable; starting cold", "err", err)
	}
	if len(users) == 0 {
		close(done)
		return done
	}
	log.Info("warm restart: reading back the users of the last shutdown", "users", len(users), "rate", o.warmRate)
	go func() {
		defer close(done)
		start := time.Now()
		read, failed := engine.Warm(ctx, users, o.warmRate, nil)
		log.Info("warm restart done", "users_read", read, "failed", failed, "listed", len(users),
			"took", time.Since(start).Round(time.Millisecond), "stopped", ctx.Err() != nil)
	}()
	return done
}

// saveWarmList lists the cached users in --data-dir for the next start.
func saveWarmList(o *options, engine *persist.Engine, log *slog.Logger) {
	if o.warmRate <= 0 || o.cluster {
		return
	}
	users := engine.CachedUsers(nil)
	if err := os.MkdirAll(o.dataDir, 0o755); err != nil {
		log.Warn("warm restart: users not listed", "err", err)
		return
	}
	if err := persist.WriteUserList(filepath.Join(o.dataDir, warmListFile), users); err != nil {
		log.Warn("warm restart: users not listed", "err", err)
		return
	}
	log.Info("warm restart: users listed for the next start", "users", len(users))
}

// closeEngine writes every change left and releases the cache.
// REQUIRES: the engine's Run has returned and no command runs.
func closeEngine(ctx context.Context, engine *persist.Engine, log *slog.Logger) error {
	st := engine.Stats()
	log.Info("final flush", "dirty", st.Dirty, "pending", st.Pending)
	if err := engine.Close(ctx); err != nil {
		return fmt.Errorf("final flush: %w", err)
	}
	log.Info("final flush done", "written", engine.Stats().Writes)
	return nil
}

// openStore opens Cassandra when hosts are given, else the embedded store.
func openStore(ctx context.Context, o *options, log *slog.Logger) (persist.Store, error) {
	if len(o.cassandra.Hosts) > 0 {
		log.Info("opening Cassandra", "hosts", o.cassandra.Hosts, "keyspace", o.cassandra.Keyspace)
		st, err := cassandrastore.Open(ctx, o.cassandra, log)
		if err != nil {
			return nil, fmt.Errorf("open Cassandra: %w", err)
		}
		return st, nil
	}
	log.Info("opening the embedded store", "dir", o.dataDir)
	st, err := pebblestore.Open(o.dataDir, log)
	if err != nil {
		return nil, fmt.Errorf("open embedded store: %w", err)
	}
	return st, nil
}

// version is the module version and VCS revision the binary was built
// from, as far as the build recorded them.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	v := bi.Main.Version
	for _, s := range bi.Settings {
		if s.Key == "vcs.revision" && len(s.Value) >= 12 {
			v += "+" + s.Value[:12]
		}
	}
	return v
}
