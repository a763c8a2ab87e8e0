package cassandrastore

import (
	"cmp"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/gocql/gocql"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/persist"
)

// Cassandra is the Store kept in an Apache Cassandra (or compatible)
// cluster, in the table <keyspace>.read_states, one row per read state,
// partitioned by user_id.
//
// Invariants:
//   - Every row is written with USING TIMESTAMP persist.Record.Stamp, so Cassandra's
//     own cell reconciliation keeps the highest Stamp whatever order writes
//     arrive or are retried in. That is what makes Write idempotent and a
//     partial or repeated Write harmless.
//   - A Write never sends more than cfg.Concurrency batches at once, counted
//     over all concurrent Write calls, and never starts more goroutines
//     than that.
//
// A Cassandra is safe for concurrent use. Errors that mean "try again later"
// (timeouts, unavailable replicas, no connection) wrap persist.ErrUnavailable.
type Store struct {
	session  *gocql.Session
	keyspace string
	// insertCQL and loadCQL are fixed at Open: gocql prepares each distinct
	// query string once and caches it.
	insertCQL   string
	loadCQL     string
	loadUserCQL string
	// inflight is a semaphore of cfg.Concurrency slots, one per batch in
	// flight.
	inflight  chan struct{}
	closeOnce sync.Once
}

const (
	// MaxBatchRows bounds one single-partition batch, so that a user with
	// many dirty channels stays under Cassandra's batch size warning
	// (5 KiB) and does not hold one replica for long: a Write of at most
	// MaxBatchRows records of one user is one request.
	MaxBatchRows = 100
	// cassandraNumConns is per host. Protocol v4 multiplexes up to 32768
	// requests on one connection; the second one is for redundancy (the
	// host keeps a working connection while a broken one is replaced).
	// More would mostly add reader goroutines competing for 2 cores.
	cassandraNumConns = 2
	// cassandraReconnectInterval is how often gocql retries a host it
	// marked down (its default is 60s, a minute of refused writes after a
	// short outage).
	cassandraReconnectInterval = 5 * time.Second
)

// cassandraValidKeyspace reports whether name is what CQL accepts as an
// unquoted keyspace name. The name is spliced into CQL text, so nothing
// else may pass.
func cassandraValidKeyspace(name string) bool {
	if len(name) == 0 || len(name) > 48 {
		return false
	}
	for _, r := range name {
		if !(r == '_' || '0' <= r && r <= '9' || 'a' <= r && r <= 'z' || 'A' <= r && r <= 'Z') {
			return false
		}
	}
	return true
}

// withDefaults returns cfg with the documented defaults applied, or an error
// for a config that cannot work.
func (cfg Config) withDefaults() (Config, error) {
	if len(cfg.Hosts) == 0 {
		return cfg, errors.New("no hosts")
	}
	cfg.Keyspace = cmp.Or(cfg.Keyspace, "readstates")
	if !cassandraValidKeyspace(cfg.Keyspace) {
		return cfg, fmt.Errorf("invalid keyspace name %q: want 1 to 48 letters, digits or underscores", cfg.Keyspace)
	}
	cfg.Replication = cmp.Or(cfg.Replication, "{'class': 'SimpleStrategy', 'replication_factor': 1}")
	cfg.Consistency = cmp.Or(cfg.Consistency, "LOCAL_QUORUM")
	cfg.ConnectTimeout = cmp.Or(cfg.ConnectTimeout, 5*time.Second)
	cfg.Timeout = cmp.Or(cfg.Timeout, 2*time.Second)
	cfg.StartupWait = cmp.Or(cfg.StartupWait, 2*time.Minute)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 16)
	if cfg.ConnectTimeout < 0 || cfg.Timeout < 0 || cfg.StartupWait < 0 || cfg.Concurrency < 0 {
		return cfg, errors.New("negative timeout or concurrency")
	}
	return cfg, nil
}

// Open connects to the cluster, creating the keyspace and the
// read_states table if they are missing. While Cassandra does not answer it
// keeps trying for cfg.StartupWait, logging each failure; the error it then
// returns wraps persist.ErrUnavailable. A bad config fails at once. ctx bounds the
// whole start-up; the returned store does not keep it.
func Open(ctx context.Context, cfg Config, logger *slog.Logger) (*Store, error) {
	return openCassandra(ctx, cfg, logger, nil)
}

// openCassandra is Open with a hook that may adjust the gocql
// config, for tests that put a proxy between the store and Cassandra.
func openCassandra(ctx context.Context, cfg Config, logger *slog.Logger, tweak func(*gocql.ClusterConfig)) (*Store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	gocqlLogger := logger.With("component", "gocql")
	logger = logger.With("component", "cassandra")
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("cassandra: config: %w", err)
	}
	cons, err := gocql.ParseConsistencyWrapper(cfg.Consistency)
	if err != nil {
		return nil, fmt.Errorf("cassandra: config: consistency: %w", err)
	}
	if cons == gocql.Any {
		// Cassandra refuses reads at ANY: every Load would fail.
		return nil, errors.New("cassandra: config: consistency ANY cannot be used for reads")
	}
	tlsCfg, err := cassandraTLSConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("cassandra: config: tls: %w", err)
	}
	session, err := cassandraStartup(ctx, cfg, func() *gocql.ClusterConfig {
		cl := newCassandraCluster(cfg, cons, tlsCfg, gocqlLogger)
		if tweak != nil {
			tweak(cl)
		}
		return cl
	}, logger)
	if err != nil {
		return nil, err
	}
	if !cfg.AllowStaleReads {
		if err := cassandraCheckOverlap(ctx, session, cfg.Keyspace, cfg.LocalDC, cons); err != nil {
			session.Close()
			return nil, fmt.Errorf("cassandra: config: %w", err)
		}
	}
	ks := cfg.Keyspace
	c := &Store{
		session:  session,
		keyspace: ks,
		insertCQL: "INSERT INTO " + ks + ".read_states (user_id, channel_id, mention_count, last_message_id)" +
			" VALUES (?, ?, ?, ?) USING TIMESTAMP ?",
		loadCQL: "SELECT mention_count, last_message_id, WRITETIME(mention_count), WRITETIME(last_message_id)" +
			" FROM " + ks + ".read_states WHERE user_id = ? AND channel_id = ?",
		loadUserCQL: "SELECT channel_id, mention_count, last_message_id, WRITETIME(mention_count), WRITETIME(last_message_id)" +
			" FROM " + ks + ".read_states WHERE user_id = ? LIMIT ?",
		inflight: make(chan struct{}, cfg.Concurrency),
	}
	logger.Info("cassandra store ready", "hosts", cfg.Hosts, "keyspace", ks, "consistency", cons.String())
	return c, nil
}

// newCassandraCluster builds a fresh gocql config: each session needs its
// own host selection policy.
func newCassandraCluster(cfg Config, cons gocql.Consistency, tlsCfg *tls.Config, gocqlLogger *slog.Logger) *gocql.ClusterConfig {
	cl := gocql.NewCluster(cfg.Hosts...)
	// Every node we support speaks v4; naming it skips a discovery dial.
	cl.ProtoVersion = 4
	cl.Consistency = cons
	cl.ConnectTimeout = cfg.ConnectTimeout
	cl.Timeout = cfg.Timeout
	cl.WriteTimeout = cfg.Timeout
	cl.NumConns = cassandraNumConns
	cl.ReconnectInterval = cassandraReconnectInterval
	cl.SocketKeepalive = 30 * time.Second
	// No driver retries: they would sleep inside a Write that the engine
	// already retries with its own backoff, and hide the failure from it.
	cl.RetryPolicy = nil
	cl.DefaultIdempotence = true
	var fallback gocql.HostSelectionPolicy = gocql.RoundRobinHostPolicy()
	if cfg.LocalDC != "" {
		fallback = gocql.DCAwareRoundRobinPolicy(cfg.LocalDC)
	}
	cl.PoolConfig.HostSelectionPolicy = gocql.TokenAwareHostPolicy(fallback)
	if cfg.Username != "" {
		cl.Authenticator = gocql.PasswordAuthenticator{Username: cfg.Username, Password: cfg.Password}
	}
	if tlsCfg != nil {
		// With Config set, gocql verifies the host unless InsecureSkipVerify.
		cl.SslOpts = &gocql.SslOptions{Config: tlsCfg, EnableHostVerification: !tlsCfg.InsecureSkipVerify}
	}
	cl.Logger = cassandraSlogLogger{gocqlLogger}
	return cl
}

// cassandraTLSConfig loads the TLS files itself, so that a missing file is
// a config error at once rather than a connection failure retried for
// StartupWait.
func cassandraTLSConfig(cfg Config) (*tls.Config, error) {
	if cfg.TLSCAFile == "" && cfg.TLSCertFile == "" && cfg.TLSKeyFile == "" && !cfg.TLSInsecureSkipVerify {
		return nil, nil
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: cfg.TLSInsecureSkipVerify}
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", cfg.TLSCAFile)
		}
	}
	if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
		if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
			return nil, errors.New("a client certificate needs both TLSCertFile and TLSKeyFile")
		}
		cert, err := tls.LoadX509KeyPair(cfg.TLSCertFile, cfg.TLSKeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// cassandraStartup connects and creates the schema, retrying until
// cfg.StartupWait has passed, but only what may go away by waiting: a
// login or certificate the nodes refuse (cassandraRefused) and a schema
// error other than "unavailable" (no permission, bad keyspace options) stop
// it at once.
func cassandraStartup(ctx context.Context, cfg Config, cluster func() *gocql.ClusterConfig, logger *slog.Logger) (*gocql.Session, error) {
	deadline := time.Now().Add(cfg.StartupWait)
	backoff := 250 * time.Millisecond
	var session *gocql.Session
	for attempt := 1; ; attempt++ {
		var err error
		if session == nil {
			session, err = cassandraNewSession(ctx, cluster())
			if err != nil {
				if hint, ok := cassandraRefused(err); ok {
					return nil, fmt.Errorf("cassandra: connect: %w (%s; not retried: it does not go away by waiting)", err, hint)
				}
				err = fmt.Errorf("connect: %w", err)
			}
		}
		if err == nil {
			err = cassandraCreateSchema(ctx, session, cfg)
			if err == nil {
				return session, nil
			}
			if !cassandraUnavailable(err) || ctx.Err() != nil {
				session.Close()
				return nil, fmt.Errorf("cassandra: create schema: %w", err)
			}
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("cassandra: start-up: %w", err)
		}
		wait := min(backoff, time.Until(deadline))
		if wait <= 0 {
			if session != nil {
				session.Close()
			}
			return nil, fmt.Errorf("cassandra: start-up: gave up after %d attempts in %v: %w: %w", attempt, cfg.StartupWait, persist.ErrUnavailable, err)
		}
		logger.Info("cassandra not ready, retrying", "hosts", cfg.Hosts, "attempt", attempt, "retry_in", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			if session != nil {
				session.Close()
			}
			return nil, fmt.Errorf("cassandra: start-up: %w (last error: %v)", ctx.Err(), err)
		case <-t.C:
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// cassandraRefused reports whether a session error is a refusal that
// waiting cannot cure, and what to check. gocql flattens the causes of a
// session error into text, so the text is all there is to go by; an error
// not recognized is retried, as unavailability.
func cassandraRefused(err error) (hint string, ok bool) {
	msg := strings.ToLower(err.Error())
	switch {
	case strings.Contains(msg, "password are incorrect"), strings.Contains(msg, "provided username"),
		strings.Contains(msg, "bad credentials"):
		return "the nodes refused the login: check --cassandra-username and --cassandra-password", true
	case strings.Contains(msg, "authentication required"):
		return "the nodes require a login: set --cassandra-username and --cassandra-password", true
	case strings.Contains(msg, "unexpected authenticator"):
		return "the nodes use an authenticator this server does not know", true
	case strings.Contains(msg, "x509:"):
		return "the nodes' certificate did not verify: check --cassandra-tls-ca and the host names", true
	}
	return "", false
}

// cassandraNewSession is gocql.NewSession, which takes no context, made to
// return when ctx is done; a session that comes up after that is closed.
func cassandraNewSession(ctx context.Context, cl *gocql.ClusterConfig) (*gocql.Session, error) {
	type result struct {
		s   *gocql.Session
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := cl.CreateSession()
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		return r.s, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.s != nil {
				r.s.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

func cassandraCreateSchema(ctx context.Context, s *gocql.Session, cfg Config) error {
	stmts := []string{
		"CREATE KEYSPACE IF NOT EXISTS " + cfg.Keyspace + " WITH replication = " + cfg.Replication,
		// Plain columns, not counters: counter updates are not idempotent
		// and cannot carry our timestamps.
		"CREATE TABLE IF NOT EXISTS " + cfg.Keyspace + ".read_states (" +
			"user_id bigint, channel_id bigint, mention_count int, last_message_id bigint, " +
			"PRIMARY KEY ((user_id), channel_id))",
	}
	for _, stmt := range stmts {
		// Schema changes are idempotent (IF NOT EXISTS), so a timed-out
		// one is simply sent again.
		if err := s.Query(stmt).WithContext(ctx).Consistency(gocql.One).Idempotent(true).Exec(); err != nil {
			return fmt.Errorf("%s: %w", stmt, err)
		}
	}
	if err := s.AwaitSchemaAgreement(ctx); err != nil {
		return fmt.Errorf("await schema agreement: %w", err)
	}
	return nil
}

// Load returns the State stored for k and its stamp (the cells' write
// time, which every Write sets to persist.Record.Stamp), or the zero State and 0 if
// k was never written. It reads at the configured consistency, so with
// R + W > RF it sees every Write that returned nil.
func (c *Store) Load(ctx context.Context, k cache.Key) (cache.State, int64, error) {
	var s cache.State
	var countStamp, msgStamp int64 // 0 for a null cell
	q := c.session.Query(c.loadCQL, k.User, k.Channel).WithContext(ctx).Idempotent(true)
	err := q.Scan(&s.MentionCount, &s.LastMessageID, &countStamp, &msgStamp)
	q.Release()
	if errors.Is(err, gocql.ErrNotFound) {
		return cache.State{}, 0, nil
	}
	if err != nil {
		return cache.State{}, 0, cassandraError(err, "load read state %d/%d", k.User, k.Channel)
	}
	// Both cells are written together; a row written by hand, or partly
	// deleted, may differ: the higher one bounds the next write.
	return s, max(countStamp, msgStamp), nil
}

// LoadUser returns the first limit read states of user's partition, in
// channel order: one single-partition query, one page.
func (c *Store) LoadUser(ctx context.Context, user int64, limit int) ([]persist.Record, error) {
	q := c.session.Query(c.loadUserCQL, user, limit).WithContext(ctx).Idempotent(true).PageSize(limit)
	defer q.Release()
	it := q.Iter()
	var (
		recs                 []persist.Record
		r                    persist.Record
		countStamp, msgStamp int64
	)
	r.Key.User = user
	for it.Scan(&r.Key.Channel, &r.State.MentionCount, &r.State.LastMessageID, &countStamp, &msgStamp) {
		r.Stamp = max(countStamp, msgStamp)
		recs = append(recs, r)
		countStamp, msgStamp = 0, 0
	}
	if err := it.Close(); err != nil {
		return nil, cassandraError(err, "load the read states of user %d", user)
	}
	return recs, nil
}

// Write stores recs: one single-partition UNLOGGED batch per user (split
// every MaxBatchRows rows), sent concurrently within the store's
// Concurrency bound. recs is not modified or kept. An empty recs is a no-op.
//
// A Write that returns an error may have applied some of its batches, or
// all of them. That is safe: every row carries its Stamp as its write
// timestamp, so the retry the caller makes (or an older write arriving
// late) can never replace a newer value, and writing a row again is
// idempotent.
func (c *Store) Write(ctx context.Context, recs []persist.Record) error {
	if len(recs) == 0 {
		return nil
	}
	batches := cassandraBatches(recs)
	if len(batches) == 1 {
		// The common small flush: no goroutine.
		if err := c.acquire(ctx); err != nil {
			return cassandraError(err, "write %d read states", len(recs))
		}
		defer c.release()
		return c.writeBatch(ctx, batches[0])
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	fail := func(err error) {
		once.Do(func() {
			firstErr = err
			// The whole Write fails anyway and will be retried: stop
			// sending to a cluster that is probably in trouble.
			cancel()
		})
	}
	for _, b := range batches {
		if err := c.acquire(ctx); err != nil {
			fail(cassandraError(err, "write %d read states", len(recs)))
			break
		}
		wg.Go(func() {
			defer c.release()
			if err := c.writeBatch(ctx, b); err != nil {
				fail(err)
			}
		})
	}
	wg.Wait()
	return firstErr
}

// Concurrency is the most batches the store has in flight at once.
func (c *Store) Concurrency() int { return cap(c.inflight) }

func (c *Store) acquire(ctx context.Context) error {
	select {
	case c.inflight <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Store) release() { <-c.inflight }

// cassandraBatches groups recs by user into batches of at most
// MaxBatchRows rows. The batches share one sorted copy of recs, or recs
// itself when it is one batch already.
func cassandraBatches(recs []persist.Record) [][]persist.Record {
	if len(recs) == 0 {
		return nil
	}
	if len(recs) <= MaxBatchRows && !slices.ContainsFunc(recs, func(r persist.Record) bool { return r.Key.User != recs[0].Key.User }) {
		return [][]persist.Record{recs}
	}
	sorted := slices.Clone(recs)
	slices.SortFunc(sorted, func(a, b persist.Record) int { return cmp.Compare(a.Key.User, b.Key.User) })
	var batches [][]persist.Record
	for start := 0; start < len(sorted); {
		end := start + 1
		for end < len(sorted) && end-start < MaxBatchRows && sorted[end].Key.User == sorted[start].Key.User {
			end++
		}
		batches = append(batches, sorted[start:end:end])
		start = end
	}
	return batches
}

// writeBatch writes the records of one user.
func (c *Store) writeBatch(ctx context.Context, recs []persist.Record) error {
	var err error
	if len(recs) == 1 {
		r := &recs[0]
		q := c.session.Query(c.insertCQL, r.Key.User, r.Key.Channel, r.State.MentionCount, r.State.LastMessageID, r.Stamp).
			WithContext(ctx).Idempotent(true)
		err = q.Exec()
		q.Release()
	} else {
		b := c.session.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
		b.Entries = make([]gocql.BatchEntry, len(recs))
		for i := range recs {
			r := &recs[i]
			b.Entries[i] = gocql.BatchEntry{
				Stmt:       c.insertCQL,
				Args:       []any{r.Key.User, r.Key.Channel, r.State.MentionCount, r.State.LastMessageID, r.Stamp},
				Idempotent: true,
			}
		}
		err = c.session.ExecuteBatch(b)
	}
	if err != nil {
		return cassandraError(err, "write %d read states of user %d", len(recs), recs[0].Key.User)
	}
	return nil
}

// Close closes the session; Loads and Writes after it fail. It is safe to
// call more than once.
func (c *Store) Close() error {
	c.closeOnce.Do(c.session.Close)
	return nil
}

// cassandraError wraps err with context, and with persist.ErrUnavailable when
// err means "try again later".
func cassandraError(err error, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	if cassandraUnavailable(err) {
		return fmt.Errorf("cassandra: %s: %w: %w", what, persist.ErrUnavailable, err)
	}
	return fmt.Errorf("cassandra: %s: %w", what, err)
}

// cassandraUnavailable reports whether err is transient: the cluster could
// not be reached or did not answer in time. When in doubt it says yes,
// because a caller that gives up on a Write drops read states, and one that
// retries only waits.
func cassandraUnavailable(err error) bool {
	// A deadline is the caller's bound on "in time"; a cancellation is the
	// caller giving up, which is not the store's failure.
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, gocql.ErrSessionClosed) {
		return false
	}
	for _, target := range []error{
		gocql.ErrTimeoutNoResponse, gocql.ErrTooManyTimeouts, gocql.ErrConnectionClosed,
		gocql.ErrNoStreams, gocql.ErrNoConnections, gocql.ErrNoConnectionsStarted,
		gocql.ErrHostQueryFailed, gocql.ErrUnavailable,
		io.EOF, io.ErrUnexpectedEOF, syscall.ECONNREFUSED, syscall.ECONNRESET, syscall.EPIPE,
	} {
		if errors.Is(err, target) {
			return true
		}
	}
	if _, ok := errors.AsType[net.Error](err); ok {
		return true
	}
	if re, ok := errors.AsType[gocql.RequestError](err); ok {
		switch re.Code() {
		case gocql.ErrCodeUnavailable, gocql.ErrCodeOverloaded, gocql.ErrCodeBootstrapping,
			gocql.ErrCodeWriteTimeout, gocql.ErrCodeReadTimeout,
			// A replica failed mid-request (e.g. shutting down); the next
			// attempt may well succeed.
			gocql.ErrCodeWriteFailure, gocql.ErrCodeReadFailure,
			// "Unexpected server error": as likely a node in trouble as a
			// permanent fault, and retrying loses nothing.
			gocql.ErrCodeServer:
			return true
		}
	}
	return false
}

// cassandraSlogLogger routes gocql's messages into slog. While a node is
// down gocql reports each failed reconnect, about five lines a second: those
// go to DEBUG, since the store's own persist.ErrUnavailable errors already tell the
// caller. Everything else gocql prints (bad peers, auth or TLS failures,
// ring refresh errors) is rare and worth a WARN.
type cassandraSlogLogger struct{ l *slog.Logger }

func (cl cassandraSlogLogger) log(msg string) {
	msg = strings.TrimSpace(msg)
	level := slog.LevelWarn
	for _, routine := range []string{
		"unable to dial", "unable to reconnect control connection",
		"unable to connect to any ring node", "falling back to initial contact points",
	} {
		if strings.Contains(msg, routine) {
			level = slog.LevelDebug
			break
		}
	}
	cl.l.Log(context.Background(), level, msg)
}

func (cl cassandraSlogLogger) Print(v ...any)                 { cl.log(fmt.Sprint(v...)) }
func (cl cassandraSlogLogger) Printf(format string, v ...any) { cl.log(fmt.Sprintf(format, v...)) }
func (cl cassandraSlogLogger) Println(v ...any)               { cl.log(fmt.Sprintln(v...)) }
