package server

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/commands"
	"github.com/readstates/readstates/persist"
	"github.com/redis/go-redis/v9"
)

// fakeBackend is an in-memory Backend. If block is set, every Incr waits
// for it to be closed (or for its context), to hold a command in flight.
type fakeBackend struct {
	mu      sync.Mutex
	txMu    sync.Mutex // held by Atomically
	m       map[cache.Key]cache.State
	calls   int
	block   chan struct{}
	started chan struct{} // gets a value when a blocked Incr starts
}

func newFakeBackend() *fakeBackend {
	return &fakeBackend{m: map[cache.Key]cache.State{}, started: make(chan struct{}, 16)}
}

// NoWait is the view that never waits: a blocked Incr fails with
// persist.ErrWouldBlock on it, as the engine's does on a miss.
func (b *fakeBackend) NoWait() persist.ReadStates { return fakeNoWait{b} }

// Rerun: the fake counts no lookups, so its view is itself.
func (b *fakeBackend) Rerun() persist.ReadStates { return b }

type fakeNoWait struct{ *fakeBackend }

func (n fakeNoWait) Incr(ctx context.Context, k cache.Key, delta int64) (int32, error) {
	n.mu.Lock()
	block := n.block
	n.mu.Unlock()
	if block != nil {
		return 0, persist.ErrWouldBlock // run me where I may block
	}
	return n.fakeBackend.Incr(ctx, k, delta)
}

func (b *fakeBackend) Incr(ctx context.Context, k cache.Key, delta int64) (int32, error) {
	b.mu.Lock()
	block := b.block
	b.mu.Unlock()
	if block != nil {
		b.started <- struct{}{}
		select {
		case <-block:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	st := b.m[k]
	n := int64(st.MentionCount) + delta
	if n > math.MaxInt32 {
		return 0, cache.ErrOverflow
	}
	st.MentionCount = int32(max(n, 0))
	b.m[k] = st
	return st.MentionCount, nil
}

func (b *fakeBackend) state(k cache.Key) cache.State {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.m[k]
}

func (b *fakeBackend) Reset(_ context.Context, k cache.Key, msgID int64, setMsg bool) (int32, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	st := b.m[k]
	prev := st.MentionCount
	st.MentionCount = 0
	if setMsg {
		st.LastMessageID = msgID
	}
	b.m[k] = st
	return prev, nil
}

func (b *fakeBackend) Get(_ context.Context, k cache.Key) (cache.State, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls++
	return b.m[k], nil
}

func (b *fakeBackend) GetMany(ctx context.Context, user int64, channels []int64, out []cache.State) error {
	for i, c := range channels {
		out[i], _ = b.Get(ctx, cache.Key{User: user, Channel: c})
	}
	return nil
}

// Atomically runs fn on b: atomic among transactions only (the engine's
// atomicity is tested on the engine).
func (b *fakeBackend) Atomically(_ context.Context, _ []cache.Key, fn func(persist.ReadStates)) error {
	b.txMu.Lock()
	defer b.txMu.Unlock()
	fn(b)
	return nil
}

func (b *fakeBackend) Stats() commands.EngineStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return commands.EngineStats{Entries: int64(len(b.m)), Capacity: 100}
}

func (b *fakeBackend) callCount() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.calls
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// testServer is a server on 127.0.0.1:0, serving until the test ends.
type testServer struct {
	*Server
	backend *fakeBackend
	addr    string
	errc    chan error // Serve's result
}

// testEventLoops is Config.EventLoops for the tests: from
// READSTATES_TEST_EVENT_LOOPS (-1: a goroutine per connection), else the
// default. scripts/test.sh runs the tests with both connection layers.
func testEventLoops(t testing.TB) int {
	v := os.Getenv("READSTATES_TEST_EVENT_LOOPS")
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		t.Fatalf("READSTATES_TEST_EVENT_LOOPS=%q: %v", v, err)
	}
	return n
}

func startServer(t *testing.T, mod func(*Config)) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startOn(t, ln, mod)
}

func (ts *testServer) client(t *testing.T, opt *redis.Options) *redis.Client {
	t.Helper()
	if opt == nil {
		opt = &redis.Options{}
	}
	opt.Addr = ts.addr
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	return c
}

// rawConn is a plain TCP connection for byte-level tests.
type rawConn struct {
	t *testing.T
	net.Conn
	r *bufio.Reader
}

func (ts *testServer) raw(t *testing.T) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, Conn: c, r: bufio.NewReader(c)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.Conn, s); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads exactly len(want) bytes and compares.
func (c *rawConn) expect(want string) {
	c.t.Helper()
	buf := make([]byte, len(want))
	if _, err := io.ReadFull(c.r, buf); err != nil {
		c.t.Fatalf("reading %q: got %q, %v", want, buf, err)
	}
	if string(buf) != want {
		c.t.Fatalf("got %q, want %q", buf, want)
	}
}

// expectEOF checks that the server closes the connection with nothing more.
func (c *rawConn) expectEOF() {
	c.t.Helper()
	rest, err := io.ReadAll(c.r)
	if len(rest) > 0 || (err != nil && !errors.Is(err, net.ErrClosed) && !isReset(err)) {
		c.t.Fatalf("want close; got %q, %v", rest, err)
	}
}

func isReset(err error) bool {
	return err != nil && strings.Contains(err.Error(), "connection reset")
}

func TestCommandsOverGoRedis(t *testing.T) {
	ts := startServer(t, nil)
	ctx := context.Background()
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprint("RESP", proto), func(t *testing.T) {
			c := ts.client(t, &redis.Options{Protocol: proto})
			user := int64(proto)
			if n, err := c.Do(ctx, "RSINCR", user, 7).Int64(); err != nil || n != 1 {
				t.Fatalf("RSINCR = %d, %v; want 1", n, err)
			}
			if n, err := c.Do(ctx, "RSINCR", user, 7, 4).Int64(); err != nil || n != 5 {
				t.Fatalf("RSINCR 4 = %d, %v; want 5", n, err)
			}
			if n, err := c.Do(ctx, "RSRESET", user, 7, 1100).Int64(); err != nil || n != 5 {
				t.Fatalf("RSRESET = %d, %v; want 5", n, err)
			}
			v, err := c.Do(ctx, "RSMGET", user, 7, 8).Slice()
			if err != nil || fmt.Sprint(v) != "[[0 1100] [0 0]]" {
				t.Fatalf("RSMGET = %v, %v", v, err)
			}
			_, err = c.Do(ctx, "RSINCR", user, "abc").Result()
			if err == nil || err.Error() != "ERR invalid channel_id 'abc': expected an integer from 0 to 9223372036854775807" {
				t.Fatalf("RSINCR abc: %v", err)
			}
			if err := c.Ping(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			id, err := c.ClientID(ctx).Result()
			if err != nil || id <= 0 {
				t.Fatalf("CLIENT ID = %d, %v", id, err)
			}
			info, err := c.Info(ctx, "clients").Result()
			if err != nil || !strings.Contains(info, "connected_clients:") {
				t.Fatalf("INFO = %q, %v", info, err)
			}
			cfg, err := c.ConfigGet(ctx, "save").Result()
			if err != nil || len(cfg) != 1 || cfg["save"] != "" {
				t.Fatalf("CONFIG GET save = %v, %v", cfg, err)
			}
		})
	}
}

func TestPipelining(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.raw(t)
	var req, want strings.Builder
	for i := 1; i <= 100; i++ {
		req.WriteString("*3\r\n$6\r\nRSINCR\r\n$1\r\n1\r\n$1\r\n2\r\n")
		fmt.Fprintf(&want, ":%d\r\n", i)
	}
	req.WriteString("RSGET 1 2\r\n") // inline
	want.WriteString("*2\r\n:100\r\n:0\r\n")
	c.send(req.String())
	c.expect(want.String())
}

// TestProtocolErrors: a request that breaks the protocol gets Redis's
// error and the connection is closed; the commands before it in the same
// write are answered first; other connections are unaffected.
func TestProtocolErrors(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxArgs = 100; c.MaxBulkBytes = 1000; c.MaxRequestBytes = 4000 })
	other := ts.raw(t)
	other.send("PING\r\n")
	other.expect("+PONG\r\n")
	for _, tc := range []struct{ name, req, reply string }{
		{"negative bulk length", "*1\r\n$-5\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		// In redcon alone this one overflows an index and panics the process.
		{"absurd bulk length", "*1\r\n$9223372036854775807\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"bulk over the limit", "*1\r\n$1001\r\n", "-ERR Protocol error: invalid bulk length\r\n"},
		{"absurd multibulk count", "*1000000000\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"zero multibulk count", "*0\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"bad multibulk count", "*x\r\n", "-ERR Protocol error: invalid multibulk length\r\n"},
		{"no dollar", "*1\r\n:1\r\n", "-ERR Protocol error: expected '$', got ':'\r\n"},
		{"bad bulk terminator", "*1\r\n$4\r\nPINGxx", "-ERR Protocol error: invalid bulk length\r\n"},
		{"inline too long", strings.Repeat("x", 70000), "-ERR Protocol error: too big inline request\r\n"},
		{"request too long", "*5\r\n" + strings.Repeat("$1000\r\n"+strings.Repeat("x", 1000)+"\r\n", 5), "-ERR Protocol error: too big request\r\n"},
		// redcon's own check, passed through.
		{"unbalanced quotes", "ECHO \"abc\r\n", "-ERR Protocol error: unbalanced quotes in request\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ts.raw(t)
			c.send("PING\r\n" + tc.req)
			c.expect("+PONG\r\n" + tc.reply)
			c.expectEOF()
			other.send("PING\r\n")
			other.expect("+PONG\r\n")
		})
	}
	// Each was an error reply, as Redis counts them.
	other.send("INFO errorstats\r\n")
	head, err := other.r.ReadString('\n')
	n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(head, "$")))
	body := make([]byte, n+2)
	if _, rerr := io.ReadFull(other.r, body); err != nil || rerr != nil {
		t.Fatalf("INFO errorstats: %q, %v, %v", head, err, rerr)
	}
	if want := "errorstat_ERR:count=11\r\n"; !strings.Contains(string(body), want) {
		t.Errorf("INFO errorstats = %q, want %q in it", body, want)
	}
}

func TestQuitStopsPipeline(t *testing.T) {
	ts := startServer(t, nil)
	c := ts.raw(t)
	c.send("RSINCR 1 1\r\nQUIT\r\nRSINCR 1 1\r\n")
	c.expect(":1\r\n+OK\r\n")
	c.expectEOF()
	if got := ts.backend.state(cache.Key{User: 1, Channel: 1}).MentionCount; got != 1 {
		t.Fatalf("mention_count = %d: a command after QUIT ran", got)
	}
}

func TestMaxClients(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MaxClients = 2 })
	a, b := ts.raw(t), ts.raw(t)
	a.send("PING\r\n")
	a.expect("+PONG\r\n")
	b.send("PING\r\n")
	b.expect("+PONG\r\n")
	c := ts.raw(t)
	c.expect("-ERR max number of clients reached\r\n")
	c.expectEOF()
	// A freed slot can be taken again.
	a.send("QUIT\r\n")
	a.expect("+OK\r\n")
	a.expectEOF()
	waitFor(t, func() bool { return (*host)(ts.Server).HostStats().ConnectedClients == 1 })
	d := ts.raw(t)
	d.send("PING\r\n")
	d.expect("+PONG\r\n")
	if got := (*host)(ts.Server).HostStats().RejectedConnections; got != 1 {
		t.Errorf("rejected = %d, want 1", got)
	}
}

// waitFor polls cond: for states the server reaches on its own goroutines.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestAuth(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.RequirePass = "s3cret" })
	ctx := context.Background()
	bad := ts.client(t, &redis.Options{MaxRetries: -1})
	if err := bad.Ping(ctx).Err(); err == nil || !strings.HasPrefix(err.Error(), "NOAUTH") {
		t.Fatalf("PING without password: %v", err)
	}
	wrong := ts.client(t, &redis.Options{Password: "nope", MaxRetries: -1})
	if err := wrong.Ping(ctx).Err(); err == nil || !strings.Contains(err.Error(), "WRONGPASS") {
		t.Fatalf("PING with a wrong password: %v", err)
	}
	for _, proto := range []int{2, 3} {
		good := ts.client(t, &redis.Options{Password: "s3cret", Protocol: proto})
		if err := good.Do(ctx, "RSGET", 1, 2).Err(); err != nil {
			t.Fatalf("RESP%d with the password: %v", proto, err)
		}
	}
}

func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.IdleTimeout = 50 * time.Millisecond })
	c := ts.raw(t)
	c.send("PING\r\n")
	c.expect("+PONG\r\n")
	c.expectEOF() // the deadline of rawConn (10s) would fail the read first
}

func TestInfoAndClientList(t *testing.T) {
	ts := startServer(t, nil)
	a, b := ts.raw(t), ts.raw(t)
	a.send("CLIENT SETNAME alpha\r\n")
	a.expect("+OK\r\n")
	b.send("PING\r\n")
	b.expect("+PONG\r\n")
	ctx := context.Background()
	c := ts.client(t, nil)
	list, err := c.ClientList(ctx).Result()
	if err != nil || strings.Count(list, "\n") != 3 || !strings.Contains(list, "name=alpha") {
		t.Fatalf("CLIENT LIST = %q, %v", list, err)
	}
	info, err := c.Info(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(ts.addr)
	for _, want := range []string{"connected_clients:3", "tcp_port:" + port, "total_commands_processed:", "db0:keys=0"} {
		if !strings.Contains(info, want) {
			t.Errorf("INFO lacks %q", want)
		}
	}
}

// TestShutdownGraceful: a command in flight finishes and is answered; idle
// connections are closed; new connections are refused; pipelined commands
// behind the running one do not run; Serve returns ErrServerClosed.
func TestShutdownGraceful(t *testing.T) {
	ts := startServer(t, nil)
	idle := ts.raw(t)
	idle.send("PING\r\n")
	idle.expect("+PONG\r\n")

	busy := ts.raw(t)
	block := make(chan struct{})
	ts.backend.mu.Lock()
	ts.backend.block = block
	ts.backend.mu.Unlock()
	busy.send("RSINCR 1 1\r\nRSINCR 1 1\r\n")
	<-ts.backend.started // the first RSINCR is running

	done := make(chan error, 1)
	go func() { done <- ts.Shutdown(context.Background()) }()
	idle.expectEOF()
	select {
	case err := <-done:
		t.Fatalf("Shutdown returned %v with a command in flight", err)
	default:
	}
	if c, err := net.Dial("tcp", ts.addr); err == nil {
		// The socket is closed; a dial that gets through is closed at once.
		c.SetDeadline(time.Now().Add(5 * time.Second))
		n, _ := c.Read(make([]byte, 1))
		c.Close()
		if n != 0 {
			t.Fatal("a new connection was served during shutdown")
		}
	}
	close(block)
	busy.expect(":1\r\n")
	busy.expectEOF()
	if err := <-done; err != nil {
		t.Fatalf("Shutdown = %v", err)
	}
	if err := <-ts.errc; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v, want ErrServerClosed", err)
	}
	if got := ts.backend.state(cache.Key{User: 1, Channel: 1}).MentionCount; got != 1 {
		t.Fatalf("mention_count = %d, want 1: the pipelined RSINCR ran after shutdown began", got)
	}
	calls := ts.backend.callCount()
	if err := ts.Serve(context.Background(), mustListen(t)); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown = %v", err)
	}
	if ts.backend.callCount() != calls {
		t.Fatal("backend called after Shutdown returned")
	}
}

func mustListen(t *testing.T) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// TestShutdownForced: when ctx ends first, connections are closed and the
// command's context is canceled; Shutdown returns ctx's error only once no
// command runs.
func TestShutdownForced(t *testing.T) {
	ts := startServer(t, nil)
	busy := ts.raw(t)
	ts.backend.mu.Lock()
	ts.backend.block = make(chan struct{}) // never closed
	ts.backend.mu.Unlock()
	busy.send("RSINCR 1 1\r\n")
	<-ts.backend.started
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want DeadlineExceeded", err)
	}
	// The canceled command may or may not get its reply out before the
	// connection closes.
	rest, _ := io.ReadAll(busy.r)
	if len(rest) > 0 && !strings.HasPrefix(string(rest), "-TRYAGAIN server shutting down") {
		t.Fatalf("got %q, want a TRYAGAIN error or nothing", rest)
	}
	if err := <-ts.errc; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve = %v", err)
	}
}

func TestServeContextCanceled(t *testing.T) {
	s, err := New(Config{Logger: testLogger(t)}, newFakeBackend())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, mustListen(t)) }()
	<-s.Ready()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve = %v, want context.Canceled", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open after Serve returned")
	}
}

func TestShutdownCommand(t *testing.T) {
	requested := make(chan struct{}, 1)
	ts := startServer(t, func(c *Config) { c.OnShutdown = func() { requested <- struct{}{} } })
	c := ts.raw(t)
	c.send("SHUTDOWN NOSAVE\r\nPING\r\n")
	c.expectEOF()
	<-requested
	// Without a hook, SHUTDOWN is refused.
	ts2 := startServer(t, nil)
	c2 := ts2.raw(t)
	c2.send("SHUTDOWN\r\n")
	c2.expect("-ERR Errors trying to SHUTDOWN. Check logs.\r\n")
}

func TestMetrics(t *testing.T) {
	ts := startServer(t, func(c *Config) { c.MetricsAddr = "127.0.0.1:0" })
	c := ts.raw(t)
	c.send("RSINCR 1 1\r\nRSINCR 1 x\r\nRSGET 1 1\r\nNOSUCH\r\n")
	c.expect(":1\r\n")
	line, _ := c.r.ReadString('\n')
	if !strings.HasPrefix(line, "-ERR invalid") {
		t.Fatalf("got %q", line)
	}
	c.expect("*2\r\n:1\r\n:0\r\n")
	line, _ = c.r.ReadString('\n')
	if !strings.HasPrefix(line, "-ERR unknown command") {
		t.Fatalf("got %q", line)
	}
	resp, err := http.Get("http://" + ts.MetricsAddr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`readstates_command_duration_seconds_count{command="rsincr"} 2`,
		`readstates_command_duration_seconds_count{command="rsget"} 1`,
		`readstates_command_errors_total{command="rsincr"} 1`,
		`readstates_command_errors_total{command="unknown"} 1`,
		`readstates_connected_clients 1`,
		`readstates_cache_entries 1`,
		`readstates_commands_total 4`,
		`go_gc_pauses_seconds_bucket`,
		`go_goroutines`,
		`process_resident_memory_bytes`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestMetricsNoAlloc: recording a command allocates nothing.
func TestMetricsNoAlloc(t *testing.T) {
	s, err := New(Config{Logger: testLogger(t), Metrics: NewMetrics()}, newFakeBackend())
	if err != nil {
		t.Fatal(err)
	}
	cmd := s.disp.Commands()[0]
	if n := testing.AllocsPerRun(1000, func() { s.metrics.observe(cmd, true, time.Microsecond) }); n != 0 {
		t.Fatalf("%v allocations per observe", n)
	}
}
