// Command readstates serves Discord-style read states over the Redis
// protocol: flags -> store -> engine -> server; SIGINT, SIGTERM or the
// SHUTDOWN command stop it gracefully (every change is written first).
// Run it with --help for the flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/readstates/readstates/persist"
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
	// stop is also the SHUTDOWN command's hook: both take the same path.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := serve(ctx, stop, o, log); err != nil {
		log.Error("exit", "err", err)
		return 1
	}
	log.Info("exit")
	return 0
}

// The write-behind's shape for Cassandra (for Pebble, the engine's
// defaults: one writer of 1,024 records, a local commit each).
const (
	cassandraWriteBatch = 32768
	cassandraWriters    = 4
)

// serve runs the server until ctx is done, then shuts down in order:
// connections (the commands in flight finish), the engine's write-behind,
// the final flush, the store.
func serve(ctx context.Context, stop func(), o *options, log *slog.Logger) (err error) {
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
		MaxPending:    o.maxPending,
		ObserveLoad:   observeLoad,
		Logger:        log,
	}
	if len(o.cassandra.Hosts) > 0 {
		// A Cassandra write is round trips: a larger one groups more of a
		// user's rows into one batch, and several at once keep
		// --cassandra-concurrency requests in flight while one waits for
		// its slowest (BENCHMARKS.md, Cassandra flush throughput).
		ecfg.WriteBatch, ecfg.Writers = cassandraWriteBatch, cassandraWriters
	}
	engine, err := persist.NewEngine(ecfg)
	if err != nil {
		return fmt.Errorf("engine: %w", err)
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	runDone := make(chan error, 1)
	go func() { runDone <- engine.Run(runCtx) }()

	cfg := o.server
	cfg.TLS = tlsConfig
	cfg.Metrics = metrics
	cfg.OnShutdown = stop
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

	var serveErr error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", o.shutdownTimeout)
	case serveErr = <-serveDone: // could not listen
	}
	sctx, cancel := context.WithTimeout(context.Background(), o.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("connections closed before their commands finished", "err", err)
	}
	if serveErr == nil {
		if serveErr = <-serveDone; errors.Is(serveErr, server.ErrServerClosed) {
			serveErr = nil
		}
	}
	stopRun()
	if err := <-runDone; err != nil {
		log.Error("write-behind", "err", err)
	}
	return errors.Join(serveErr, closeEngine(sctx, engine, log))
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
		st, err := persist.OpenCassandra(ctx, o.cassandra, log)
		if err != nil {
			return nil, fmt.Errorf("open Cassandra: %w", err)
		}
		return st, nil
	}
	log.Info("opening the embedded store", "dir", o.dataDir)
	st, err := persist.OpenPebble(o.dataDir, log)
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
