package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/readstates/readstates/persist"
	"github.com/readstates/readstates/persist/cassandrastore"
	"github.com/readstates/readstates/persist/journal"
	"github.com/readstates/readstates/server"
)

// options is everything the flags set.
type options struct {
	server          server.Config
	dataDir         string
	cacheEntries    int
	flushInterval   time.Duration
	userPage        int
	warmRate        float64
	maxPending      int
	shutdownTimeout time.Duration
	drainTimeout    time.Duration
	journal         bool
	journalFsync    string
	journalPolicy   journal.Policy
	journalRepair   bool
	clockOffset     time.Duration
	cluster         bool
	clusterAnnounce string
	clusterLease    time.Duration
	logLevel        string
	logFormat       string
	pprofAddr       string
	traceSlow       time.Duration
	slowSeconds     time.Duration
	cassandraHosts  string
	cassandra       cassandrastore.Config
	tls             tlsOptions
}

// envPrefix names the environment variable of each flag:
// --cassandra-password is READSTATES_CASSANDRA_PASSWORD.
const envPrefix = "READSTATES_"

func envName(flagName string) string {
	return envPrefix + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags parses args over defaults taken from the environment (a flag
// on the command line wins over its variable).
func parseFlags(args []string, lookupEnv func(string) (string, bool), out io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("readstates", flag.ContinueOnError)
	fs.SetOutput(out)
	s := &o.server
	fs.StringVar(&s.Addr, "addr", server.DefaultAddr, "address to serve the Redis protocol on")
	fs.StringVar(&s.RequirePass, "requirepass", "", "password clients must AUTH with (prefer the environment variable: flags show in ps)")
	fs.IntVar(&s.MaxClients, "maxclients", server.DefaultMaxClients, "most connected clients")
	fs.DurationVar(&s.IdleTimeout, "idle-timeout", 0, "close connections idle this long (0: never)")
	fs.IntVar(&s.MaxChannels, "max-channels", 10000, "most channel_ids in one RSMGET")
	fs.IntVar(&s.EventLoops, "event-loops", 0, "epoll event loops serving the clients, on Linux without TLS (0: one per core, at most 4; -1: goroutines per connection instead, as with TLS); unless GOMAXPROCS is set, the Go runtime gets a P per loop on top of one per core")
	addClientFlags(fs, o)
	fs.StringVar(&s.MetricsAddr, "metrics-addr", "", `serve Prometheus metrics at /metrics on this address, e.g. ":9121" (default off)`)
	fs.StringVar(&o.pprofAddr, "pprof-addr", "", `serve Go profiles at /debug/pprof/ on this address, e.g. "127.0.0.1:6060" (default off)`)
	fs.DurationVar(&o.traceSlow, "trace-slow", 0, "keep the last 2s of the Go execution trace in memory, and write it to <data-dir>/traces (the newest 10, one per 10s at most) when a command that did not wait for the database runs at least this long, e.g. 1ms (default 0: off; costs a few percent of CPU)")
	fs.DurationVar(&o.slowSeconds, "slow-seconds", 0, "log every second whose slowest command that did not wait for the database ran at least this long, e.g. 1ms, with the worst delay of each kind in that second (GC pause, flush's shard lock, journal lock, wait for a P, thread off its CPU) and the one that explains it (default 0: off)")
	fs.StringVar(&o.dataDir, "data-dir", "data", "directory of the embedded (Pebble) store, and of the journal (in journal/) with either store")
	fs.IntVar(&o.cacheEntries, "cache-entries", 1_000_000, "capacity of the cache, in read states")
	fs.DurationVar(&o.flushInterval, "flush-interval", 30*time.Second, "longest time a change waits before it is written")
	fs.IntVar(&o.userPage, "user-page", persist.DefaultUserPage, "most read states a cache miss reads from its user's partition in one query, to bring the user's others into the cache (a user with more has the rest read on demand)")
	fs.Float64Var(&o.warmRate, "warm-rate", 1000, "warm restarts: at shutdown the users in the cache are listed in --data-dir, and at start their partitions are read back in the background, at most this many users (one query each) a second, the most recently used first; in --cluster mode, a node that hands slots over records their users in Cassandra and the new owner reads them back so (0: off)")
	fs.IntVar(&o.maxPending, "max-pending", 0, "evicted or flushed read states held unwritten before changes are refused (0: the engine's default)")
	fs.DurationVar(&o.shutdownTimeout, "shutdown-timeout", time.Minute, "time to write every change to the store at shutdown, after the clients are drained (what is not written by then stays in the journal)")
	fs.DurationVar(&o.drainTimeout, "drain-timeout", 10*time.Second, "time for clients to take their last replies at shutdown before their connections are closed (does not shorten --shutdown-timeout)")
	fs.BoolVar(&o.journal, "journal", true, "append every change to a journal in --data-dir before it is acknowledged, so that a crash or an unreachable database loses at most --journal-fsync of them")
	fs.StringVar(&o.journalFsync, "journal-fsync", "1s", "how often the journal is fsynced: a duration (as Redis's appendfsync everysec), always (before every reply) or no (when the OS writes it)")
	fs.BoolVar(&o.journalRepair, "journal-repair", false, "start even if a journal record in the middle is corrupt, skipping it (the corrupt records are lost)")
	fs.DurationVar(&o.clockOffset, "clock-offset", 0, "add this to the wall clock the server reads (testing: rehearse a clock step; stamps stay correct whatever the clock says)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.BoolVar(&o.cluster, "cluster", false, "run as a node of a cluster over one Cassandra cluster, routed by the Redis Cluster protocol (needs --cassandra-hosts; the node id is kept in --data-dir)")
	fs.StringVar(&o.clusterAnnounce, "cluster-announce-addr", "", "host:port clients are told to connect to for this node's slots (default: --addr)")
	fs.DurationVar(&o.clusterLease, "cluster-lease", 10*time.Second, "how long a node serves its slots after a renewal of its lease in Cassandra; a dead node's slots are taken over this long (plus a fifth of it) after its last renewal")
	c := &o.cassandra
	fs.StringVar(&o.cassandraHosts, "cassandra-hosts", "", "comma-separated Cassandra contact points (host or host:port); set to use Cassandra instead of the embedded store")
	fs.StringVar(&c.Keyspace, "cassandra-keyspace", "readstates", "keyspace, created if missing")
	fs.StringVar(&c.Replication, "cassandra-replication", "{'class': 'SimpleStrategy', 'replication_factor': 1}", "replication of a keyspace created here")
	fs.StringVar(&c.Consistency, "cassandra-consistency", "LOCAL_QUORUM", "consistency of reads and writes; a level whose reads and writes need not share a replica (ONE with a replication factor of 2 or more) is refused")
	fs.BoolVar(&c.AllowStaleReads, "cassandra-allow-stale-reads", false, "run with a --cassandra-consistency whose reads may miss the newest write (read-through may then serve, and later store, an old read state)")
	fs.StringVar(&c.LocalDC, "cassandra-local-dc", "", "keep requests in this data center")
	fs.DurationVar(&c.Timeout, "cassandra-timeout", 2*time.Second, "timeout of one query")
	fs.DurationVar(&c.ConnectTimeout, "cassandra-connect-timeout", 5*time.Second, "timeout of connection set-up")
	fs.DurationVar(&c.StartupWait, "cassandra-startup-wait", 2*time.Minute, "how long to keep trying while Cassandra is not up at start")
	fs.IntVar(&c.Concurrency, "cassandra-concurrency", 16, "most writes in flight")
	fs.StringVar(&c.Username, "cassandra-username", "", "user for PasswordAuthenticator")
	fs.StringVar(&c.Password, "cassandra-password", "", "password for PasswordAuthenticator (prefer the environment variable)")
	fs.StringVar(&c.TLSCAFile, "cassandra-tls-ca", "", "CA certificate file; any TLS flag turns TLS on")
	fs.StringVar(&c.TLSCertFile, "cassandra-tls-cert", "", "client certificate file")
	fs.StringVar(&c.TLSKeyFile, "cassandra-tls-key", "", "client key file")
	fs.BoolVar(&c.TLSInsecureSkipVerify, "cassandra-tls-insecure", false, "do not verify the server's certificate")

	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		name := envName(f.Name)
		f.Usage += " [$" + name + "]"
		if v, ok := lookupEnv(name); ok {
			if err := f.Value.Set(v); err != nil {
				errs = append(errs, fmt.Errorf("$%s: %w", name, err))
			}
		}
	})
	fs.Usage = func() {
		fmt.Fprintf(out, "Usage: readstates [flags]\n\n"+
			"Serves Discord-style read states over the Redis protocol (RSINCR, RSRESET,\n"+
			"RSGET, RSMGET), cached in memory and written behind to Pebble or Cassandra.\n"+
			"Every flag can also be set by the environment variable shown; a flag wins.\n\n")
		fs.PrintDefaults()
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(out, err)
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(out, "unexpected arguments: %q\n", fs.Args())
		return nil, errors.New("unexpected arguments")
	}
	for _, h := range strings.Split(o.cassandraHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			c.Hosts = append(c.Hosts, h)
		}
	}
	if err := checkClientFlags(o); err != nil {
		fmt.Fprintln(out, err)
		return nil, err
	}
	switch {
	case o.cluster && len(c.Hosts) == 0:
		err := errors.New("--cluster needs --cassandra-hosts: the nodes share one Cassandra cluster, where they claim their slots (the embedded store is one machine's)")
		fmt.Fprintln(out, err)
		return nil, err
	case o.cluster && !quorum(c.Consistency):
		err := fmt.Errorf("--cluster needs a quorum consistency (LOCAL_QUORUM, QUORUM, EACH_QUORUM or ALL), not %s: a node that takes users over must read what the one before wrote", c.Consistency)
		fmt.Fprintln(out, err)
		return nil, err
	case o.cluster && o.clusterLease < time.Second:
		err := fmt.Errorf("--cluster-lease: %v is under 1s: a lease must outlast a few Cassandra round trips", o.clusterLease)
		fmt.Fprintln(out, err)
		return nil, err
	case o.shutdownTimeout <= 0:
		err := fmt.Errorf("--shutdown-timeout: %v is not positive: the final write needs time", o.shutdownTimeout)
		fmt.Fprintln(out, err)
		return nil, err
	case o.userPage < 1 || o.userPage > 100_000:
		err := fmt.Errorf("--user-page: %d is not between 1 and 100000", o.userPage)
		fmt.Fprintln(out, err)
		return nil, err
	case o.traceSlow < 0:
		err := fmt.Errorf("--trace-slow: %v is negative (0 turns it off)", o.traceSlow)
		fmt.Fprintln(out, err)
		return nil, err
	case o.slowSeconds < 0:
		err := fmt.Errorf("--slow-seconds: %v is negative (0 turns it off)", o.slowSeconds)
		fmt.Fprintln(out, err)
		return nil, err
	case o.warmRate < 0:
		err := fmt.Errorf("--warm-rate: %v is negative (0 turns warm restarts off)", o.warmRate)
		fmt.Fprintln(out, err)
		return nil, err
	case o.drainTimeout < 0:
		err := fmt.Errorf("--drain-timeout: %v is negative (0 closes the connections at once)", o.drainTimeout)
		fmt.Fprintln(out, err)
		return nil, err
	}
	p, err := journal.ParsePolicy(o.journalFsync)
	if err != nil {
		err = fmt.Errorf("--journal-fsync: %w", err)
		fmt.Fprintln(out, err)
		return nil, err
	}
	o.journalPolicy = p
	return o, nil
}

// quorum reports whether a consistency level makes a read see every
// acknowledged write (with a write at the same level).
func quorum(c string) bool {
	switch strings.ToUpper(c) {
	case "LOCAL_QUORUM", "QUORUM", "EACH_QUORUM", "ALL":
		return true
	}
	return false
}

// newLogger builds the process's logger.
func newLogger(o *options, w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: level}
	switch o.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format: %q is not text or json", o.logFormat)
}
