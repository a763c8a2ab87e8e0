//go:build cassandra

// These tests need a real Cassandra node at $READSTATES_CASSANDRA_HOSTS
// (comma-separated, default 127.0.0.1:9042), e.g. the one started by
// scripts/cassandra/cassandra.sh start. Every test works in a keyspace of
// its own, dropped at the end.

package cassandrastore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/persist"
	"github.com/readstates/readstates/persist/storetest"
)

func cassandraTestHosts() []string {
	if h := os.Getenv("READSTATES_CASSANDRA_HOSTS"); h != "" {
		return strings.Split(h, ",")
	}
	return []string{"127.0.0.1:9042"}
}

// cassandraTestConfig returns a config for a fresh random keyspace.
func cassandraTestConfig() Config {
	return Config{
		Hosts:       cassandraTestHosts(),
		Keyspace:    fmt.Sprintf("readstates_test_%016x", rand.Uint64()),
		StartupWait: 30 * time.Second,
		// A slow CI machine can take more than the 2s default on schema
		// changes.
		Timeout: 10 * time.Second,
	}
}

// openTestCassandra opens a store in its own keyspace and drops the
// keyspace and closes the store when t ends.
func openTestCassandra(tb testing.TB, cfg Config, tweak func(*gocql.ClusterConfig)) *Store {
	tb.Helper()
	logger := cassandraTestLogger(tb)
	c, err := openCassandra(tb.Context(), cfg, logger, tweak)
	if err != nil {
		tb.Fatalf("Open(%v): %v", cfg.Hosts, err)
	}
	tb.Cleanup(func() {
		defer c.Close()
		// tb.Context is already canceled here.
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		// A drop on a loaded node can outlast the query timeout and still
		// go through; IF EXISTS makes sending it again harmless.
		for attempt := 1; ; attempt++ {
			err := c.session.Query("DROP KEYSPACE IF EXISTS " + cfg.Keyspace).WithContext(ctx).Exec()
			if err == nil {
				return
			}
			if attempt == 3 || ctx.Err() != nil {
				tb.Logf("drop keyspace %s: %v", cfg.Keyspace, err)
				return
			}
		}
	})
	return c
}

func cassandraTestLogger(tb testing.TB) *slog.Logger {
	level := slog.LevelInfo
	if _, ok := tb.(*testing.B); ok {
		level = slog.LevelWarn // keep benchmark output to the numbers
	}
	return slog.New(slog.NewTextHandler(tb.Output(), &slog.HandlerOptions{Level: level}))
}

func TestCassandraStore(t *testing.T) {
	// One keyspace for the whole suite: creating one takes a second or
	// more, and the suite keeps its subtests apart by user id.
	c := openTestCassandra(t, cassandraTestConfig(), nil)
	storetest.Run(t, func(t *testing.T) persist.Store { return c })
}

func TestCassandraSmallBatchesAndConcurrencyOne(t *testing.T) {
	cfg := cassandraTestConfig()
	cfg.Concurrency = 1
	c := openTestCassandra(t, cfg, nil)
	// Several users with more rows than a batch holds, so batches of one
	// user are written in parallel but through a single slot.
	var recs []persist.Record
	for u := range int64(5) {
		for ch := range int64(2*MaxBatchRows + 7) {
			recs = append(recs, persist.Record{
				Key:   cache.Key{User: u, Channel: ch},
				State: cache.State{MentionCount: int32(u), LastMessageID: ch},
				Stamp: 10,
			})
		}
	}
	storetest.Write(t, c, recs...)
	storetest.LoadAll(t, c, recs)
}

func TestCassandraReopenKeepsData(t *testing.T) {
	cfg := cassandraTestConfig()
	c := openTestCassandra(t, cfg, nil)
	k := cache.Key{User: 99, Channel: 100}
	want := cache.State{MentionCount: 3, LastMessageID: 12345}
	storetest.Write(t, c, persist.Record{Key: k, State: want, Stamp: 1})

	// Open again on the existing keyspace and table.
	c2, err := Open(t.Context(), cfg, cassandraTestLogger(t))
	if err != nil {
		t.Fatalf("second Open: %v", err)
	}
	defer c2.Close()
	storetest.WantState(t, c2, k, want)
}

func TestCassandraBadConfig(t *testing.T) {
	for name, mut := range map[string]func(*Config){
		"consistency": func(c *Config) { c.Consistency = "MOSTLY" },
		"keyspace":    func(c *Config) { c.Keyspace = "ks; DROP TABLE x" },
		"no hosts":    func(c *Config) { c.Hosts = nil },
		"tls ca":      func(c *Config) { c.TLSCAFile = "/nonexistent/ca.pem" },
		"tls pair":    func(c *Config) { c.TLSCertFile = "/nonexistent/cert.pem" },
	} {
		t.Run(name, func(t *testing.T) {
			cfg := cassandraTestConfig()
			mut(&cfg)
			start := time.Now()
			c, err := Open(t.Context(), cfg, cassandraTestLogger(t))
			if err == nil {
				c.Close()
				t.Fatal("Open: got nil error")
			}
			if errors.Is(err, persist.ErrUnavailable) {
				t.Errorf("Open: got %v, want a config error, not persist.ErrUnavailable", err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("Open took %v: a config error must not be retried", d)
			}
		})
	}
}

func TestCassandraBadReplicationFailsFast(t *testing.T) {
	cfg := cassandraTestConfig()
	cfg.Replication = "{'class': 'NoSuchStrategy'}"
	start := time.Now()
	c, err := Open(t.Context(), cfg, cassandraTestLogger(t))
	if err == nil {
		c.Close()
		t.Fatal("Open: got nil error")
	}
	if errors.Is(err, persist.ErrUnavailable) || time.Since(start) > 10*time.Second {
		t.Errorf("Open: got %v after %v, want a prompt schema error", err, time.Since(start))
	}
}

func TestCassandraUnreachableAtOpen(t *testing.T) {
	cfg := cassandraTestConfig()
	cfg.Hosts = []string{"127.0.0.1:1"}
	cfg.StartupWait = 1500 * time.Millisecond
	cfg.ConnectTimeout = 500 * time.Millisecond
	start := time.Now()
	c, err := Open(t.Context(), cfg, cassandraTestLogger(t))
	if err == nil {
		c.Close()
		t.Fatal("Open: got nil error")
	}
	if !errors.Is(err, persist.ErrUnavailable) {
		t.Errorf("Open: got %v, want persist.ErrUnavailable", err)
	}
	if d := time.Since(start); d < cfg.StartupWait || d > cfg.StartupWait+5*time.Second {
		t.Errorf("Open gave up after %v, want about StartupWait %v", d, cfg.StartupWait)
	}

	// A canceled context ends the wait early.
	cfg.StartupWait = time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	start = time.Now()
	if _, err := Open(ctx, cfg, cassandraTestLogger(t)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Open with a short context: got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Open ignored its context for %v", d)
	}
}

// TestCassandraOutage puts a TCP proxy between the store and Cassandra and
// breaks it both ways a network does: connections reset (a restart), and
// connections open but silent (a hung node or a partition). Load and Write
// must fail with persist.ErrUnavailable, and work again once the proxy is back.
func TestCassandraOutage(t *testing.T) {
	hosts := cassandraTestHosts()
	p := startCassandraTestProxy(t, hosts[0])
	cfg := cassandraTestConfig()
	cfg.Hosts = []string{p.addr}
	cfg.Timeout = 3 * time.Second
	proxyAddr, err := net.ResolveTCPAddr("tcp", p.addr)
	if err != nil {
		t.Fatal(err)
	}
	c := openTestCassandra(t, cfg, func(cl *gocql.ClusterConfig) {
		// The node advertises its real address: send that to the proxy
		// too, or gocql would connect around it.
		cl.AddressTranslator = gocql.AddressTranslatorFunc(func(net.IP, int) (net.IP, int) {
			return proxyAddr.IP, proxyAddr.Port
		})
	})
	k := cache.Key{User: 1, Channel: 2}
	rec := persist.Record{Key: k, State: cache.State{MentionCount: 1, LastMessageID: 10}, Stamp: 100}
	storetest.Write(t, c, rec)

	wantUnavailable := func(what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		if _, _, err := c.Load(ctx, k); !errors.Is(err, persist.ErrUnavailable) {
			t.Errorf("%s: Load: got %v, want persist.ErrUnavailable", what, err)
		}
		if err := c.Write(ctx, []persist.Record{rec}); !errors.Is(err, persist.ErrUnavailable) {
			t.Errorf("%s: Write: got %v, want persist.ErrUnavailable", what, err)
		}
	}
	wantBack := func(what string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			rec.Stamp++
			err := c.Write(ctx, []persist.Record{rec})
			if err == nil {
				_, _, err = c.Load(ctx, k)
			}
			cancel()
			if err == nil {
				return
			}
			if !errors.Is(err, persist.ErrUnavailable) {
				t.Fatalf("%s: got %v, want nil or persist.ErrUnavailable while reconnecting", what, err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: store still failing after 60s: %v", what, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	p.blackhole(true)
	wantUnavailable("blackholed")
	p.blackhole(false)
	wantBack("after blackhole")

	p.down()
	wantUnavailable("proxy down")
	p.up(t)
	wantBack("after proxy restart")
	storetest.WantState(t, c, k, rec.State)
}

// cassandraTestProxy forwards TCP to Cassandra and can drop every
// connection (down/up) or swallow traffic silently (blackhole).
type cassandraTestProxy struct {
	addr   string
	target string
	silent atomic.Bool

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

func startCassandraTestProxy(t *testing.T, target string) *cassandraTestProxy {
	p := &cassandraTestProxy{target: target, conns: map[net.Conn]struct{}{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p.addr = ln.Addr().String()
	p.serve(ln)
	t.Cleanup(p.down)
	return p
}

func (p *cassandraTestProxy) serve(ln net.Listener) {
	p.mu.Lock()
	p.ln = ln
	p.mu.Unlock()
	go func() {
		for {
			client, err := ln.Accept()
			if err != nil {
				return
			}
			server, err := net.Dial("tcp", p.target)
			if err != nil {
				client.Close()
				continue
			}
			if !p.track(client, server) {
				return
			}
			go p.pipe(client, server)
			go p.pipe(server, client)
		}
	}()
}

func (p *cassandraTestProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *cassandraTestProxy) pipe(dst, src net.Conn) {
	defer dst.Close()
	defer src.Close()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !p.silent.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (p *cassandraTestProxy) blackhole(on bool) { p.silent.Store(on) }

// down closes the listener and every connection, like a node restart.
func (p *cassandraTestProxy) down() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
}

func (p *cassandraTestProxy) up(t *testing.T) {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		t.Fatalf("proxy listen again on %s: %v", p.addr, err)
	}
	p.serve(ln)
}

// TestCassandraUnavailableClassification checks the errors gocql returns
// that do not need a broken cluster to produce.
func TestCassandraUnavailableClassification(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{gocql.ErrTimeoutNoResponse, true},
		{gocql.ErrNoConnections, true},
		{gocql.ErrConnectionClosed, true},
		{fmt.Errorf("x: %w", context.DeadlineExceeded), true},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, true},
		{context.Canceled, false},
		{gocql.ErrSessionClosed, false},
		{errors.New("syntax error"), false},
	} {
		if got := cassandraUnavailable(tc.err); got != tc.want {
			t.Errorf("cassandraUnavailable(%T %v): got %v, want %v", tc.err, tc.err, got, tc.want)
		}
	}
}

func TestCassandraBatches(t *testing.T) {
	var recs []persist.Record
	for i := range 250 {
		recs = append(recs, persist.Record{Key: cache.Key{User: int64(i % 3), Channel: int64(i)}})
	}
	recs = append(recs, persist.Record{Key: cache.Key{User: 7, Channel: 1}})
	orig := append([]persist.Record(nil), recs...)
	batches := cassandraBatches(recs)
	total := 0
	for _, b := range batches {
		if len(b) == 0 || len(b) > MaxBatchRows {
			t.Errorf("batch of %d rows, want 1..%d", len(b), MaxBatchRows)
		}
		for _, r := range b {
			if r.Key.User != b[0].Key.User {
				t.Errorf("batch mixes users %d and %d", b[0].Key.User, r.Key.User)
			}
		}
		total += len(b)
	}
	if total != len(recs) {
		t.Errorf("batches hold %d records, want %d", total, len(recs))
	}
	// 3 users with 84, 83, 83 rows, plus user 7.
	if len(batches) != 4 {
		t.Errorf("got %d batches, want 4", len(batches))
	}
	for i := range recs {
		if recs[i] != orig[i] {
			t.Fatal("cassandraBatches modified its input")
		}
	}
}

// BenchmarkCassandraWrite writes b.N Writes of 10,000 records each, in
// the shapes a flush produces: many channels of few users, and one
// channel each of many users.
func BenchmarkCassandraWrite(b *testing.B) {
	for _, shape := range []struct{ users, channels int }{{100, 100}, {1000, 10}, {10000, 1}} {
		b.Run(fmt.Sprintf("users=%d/channels=%d", shape.users, shape.channels), func(b *testing.B) {
			c := openTestCassandra(b, cassandraTestConfig(), nil)
			n := shape.users * shape.channels
			recs := make([]persist.Record, 0, n)
			for u := range shape.users {
				for ch := range shape.channels {
					recs = append(recs, persist.Record{Key: cache.Key{User: int64(u) * 7919, Channel: int64(ch)}})
				}
			}
			ctx := b.Context()
			stamp := int64(0)
			for b.Loop() {
				stamp++
				for i := range recs {
					recs[i].Stamp = stamp
					recs[i].State = cache.State{MentionCount: int32(stamp), LastMessageID: stamp}
				}
				if err := c.Write(ctx, recs); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n)*float64(stamp)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// The clock scenario on a real node: WRITETIME comes back with each load,
// so a run on a clock behind the stored stamps still writes above them.
func TestCassandraEngineClockStepBack(t *testing.T) {
	cfg := cassandraTestConfig()
	c := openTestCassandra(t, cfg, nil) // creates the keyspace, drops it at the end
	_ = c
	storetest.EngineClockStepBack(t, func(t *testing.T) (persist.Store, func()) {
		s, err := Open(t.Context(), cfg, cassandraTestLogger(t))
		if err != nil {
			t.Fatal(err)
		}
		return s, func() { s.Close() }
	})
}
