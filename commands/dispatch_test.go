package commands

import (
	"bytes"
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
	"github.com/readstates/readstates/cluster"
	"github.com/readstates/readstates/persist"
)

func args(s ...string) [][]byte {
	out := make([][]byte, len(s))
	for i, a := range s {
		out[i] = []byte(a)
	}
	return out
}

// FuzzDispatch sends arbitrary commands (the input split at NUL bytes) and
// checks that Dispatch never panics and always writes exactly one
// well-formed reply, in RESP2 and RESP3, authenticated or not.
func FuzzDispatch(f *testing.F) {
	for _, s := range []string{
		"RSINCR\x0042\x007", "RSINCR\x0042\x007\x00-5", "RSRESET\x001\x002\x003",
		"RSGET\x001\x002", "RSMGET\x001\x002\x003\x002", "rsmget\x009001\x001",
		"HELLO\x003", "HELLO\x003\x00AUTH\x00default\x00pw\x00SETNAME\x00x",
		"AUTH\x00pw", "AUTH\x00default\x00pw", "CLIENT\x00SETNAME\x00x",
		"CLIENT\x00LIST\x00ID\x001", "CLIENT\x00SETINFO\x00lib-name\x00x",
		"CONFIG\x00GET\x00*", "CONFIG\x00SET\x00save\x00", "COMMAND", "COMMAND\x00DOCS",
		"COMMAND\x00INFO\x00client|id", "COMMAND\x00LIST\x00FILTERBY\x00PATTERN\x00*",
		"INFO", "INFO\x00keyspace", "SELECT\x000", "PING", "ECHO\x00x", "DBSIZE",
		"SHUTDOWN\x00NOSAVE", "QUIT", "", "\x00", "foo\x00bar",
	} {
		f.Add(s, false, false)
		f.Add(s, true, true)
	}
	d, _ := newTestDispatcher(f, func(c *Config) { c.Host = &fakeHost{} })
	dAuth, _ := newTestDispatcher(f, func(c *Config) { c.RequirePass = "pw"; c.MaxChannels = 5 })
	f.Fuzz(func(t *testing.T, line string, resp3, withPass bool) {
		dd := d
		if withPass {
			dd = dAuth
		}
		s := NewSession(1, "127.0.0.1:50000", "b", time.Time{})
		if resp3 {
			s.proto.Store(RESP3)
		}
		w := &bufWriter{}
		dd.Dispatch(context.Background(), w, s, bytes.Split([]byte(line), []byte{0}))
		n, err := respValues(w.b)
		if err != nil {
			t.Fatalf("%q: malformed reply %q: %v", line, w.b, err)
		}
		// SHUTDOWN succeeds without a reply, as in Redis.
		if n != 1 && !(n == 0 && s.Closing()) {
			t.Fatalf("%q: %d replies %q, want 1", line, n, w.b)
		}
		// A closing session takes no more commands.
		if s.Closing() {
			w.b = w.b[:0]
			dd.Dispatch(context.Background(), w, s, args("PING"))
			if len(w.b) != 0 {
				t.Fatalf("reply %q after the session closed", w.b)
			}
		}
	})
}

// TestDispatchAllocs checks that the read-state hot path does not
// allocate: RSINCR, RSRESET, RSGET and a small RSMGET on cached read
// states, with a backend and writer that do not allocate either.
func TestDispatchAllocs(t *testing.T) {
	d, b := newTestDispatcher(t, nil)
	b.failUsers = nil
	s := NewSession(1, "a", "b", time.Time{})
	w := &bufWriter{b: make([]byte, 0, 1024)}
	ctx := context.Background()
	for _, cmd := range [][][]byte{
		args("RSINCR", "000000000042", "000000000007"),
		args("rsincr", "42", "7", "-1"),
		args("RSGET", "42", "7"),
		args("RSRESET", "42", "7", "1100"),
		args("RSMGET", "42", "7", "7", "7"),
		args("PING"),
	} {
		d.Dispatch(ctx, w, s, cmd) // warm up: the first call inserts the key, grows buffers
		allocs := testing.AllocsPerRun(1000, func() {
			w.b = w.b[:0]
			d.Dispatch(ctx, w, s, cmd)
		})
		if allocs != 0 {
			t.Errorf("%q: %v allocations per command, want 0", cmd, allocs)
		}
		if bytes.HasPrefix(w.b, []byte("-")) {
			t.Errorf("%q: error reply %q", cmd, w.b)
		}
	}
}

// TestErrorCountAllocs: counting an error reply by its code (INFO
// errorstats) allocates nothing once the code is known: a node answering
// MOVED to a client with an old slot map does so at full rate.
func TestErrorCountAllocs(t *testing.T) {
	var e errorStats
	msg := "MOVED 3300 127.0.0.1:7002"
	e.count(msg)
	if allocs := testing.AllocsPerRun(1000, func() { e.count(msg) }); allocs != 0 {
		t.Errorf("%v allocations per count, want 0", allocs)
	}
	if got := string(e.appendErrorStats(nil)); got != "errorstat_MOVED:count=1002\r\n" {
		t.Errorf("errorstats = %q", got)
	}
	// The table is bounded, as Redis's: other codes count in the total.
	for i := range 2 * maxErrorCodes {
		e.count("E" + strconv.Itoa(i) + " x")
	}
	if n, total := strings.Count(string(e.appendErrorStats(nil)), "errorstat_"), e.total.Load(); n != maxErrorCodes || total != 1002+2*maxErrorCodes {
		t.Errorf("%d codes listed, %d replies counted; want %d, %d", n, total, maxErrorCodes, 1002+2*maxErrorCodes)
	}
}

func BenchmarkDispatchRSINCR(b *testing.B) {
	d, mb := newTestDispatcher(b, nil)
	mb.failUsers = nil
	s := NewSession(1, "a", "b", time.Time{})
	w := &bufWriter{b: make([]byte, 0, 1024)}
	cmd := args("RSINCR", "000000000042", "000000000007", "0")
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		w.b = w.b[:0]
		d.Dispatch(ctx, w, s, cmd)
	}
}

func TestDispatchReturnsCommand(t *testing.T) {
	d, _ := newTestDispatcher(t, nil)
	s := NewSession(1, "a", "b", time.Time{})
	w := &bufWriter{}
	cmd, failed := d.Dispatch(context.Background(), w, s, args("rsget", "1", "2"))
	if cmd == nil || cmd.Name != "rsget" || failed {
		t.Errorf("got %v, %v; want rsget, false", cmd, failed)
	}
	if d.Commands()[cmd.Index] != cmd {
		t.Errorf("Commands()[%d] is not the command run", cmd.Index)
	}
	cmd, failed = d.Dispatch(context.Background(), w, s, args("rsget", "x", "2"))
	if cmd == nil || !failed {
		t.Errorf("got %v, %v; want rsget, true", cmd, failed)
	}
	cmd, failed = d.Dispatch(context.Background(), w, s, args("nosuch"))
	if cmd != nil || !failed {
		t.Errorf("got %v, %v; want nil, true", cmd, failed)
	}
	if got := s.Commands(); got != 3 {
		t.Errorf("Commands() = %d, want 3", got)
	}
}

// TestUnknownCommandLimits checks the 128-byte limits of Redis's unknown
// command error.
func TestUnknownCommandLimits(t *testing.T) {
	long := strings.Repeat("x", 200)
	got := unknownCommand(args(long, long, "b"))
	want := "ERR unknown command '" + strings.Repeat("x", 128) + "', with args beginning with: '" +
		strings.Repeat("x", 128) + "' "
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// Arguments are added while the list is under 128 bytes, each cut to
	// what is left.
	got = unknownCommand(args("foo", strings.Repeat("a", 100), strings.Repeat("b", 100), "c"))
	want = "ERR unknown command 'foo', with args beginning with: '" + strings.Repeat("a", 100) + "' '" +
		strings.Repeat("b", 25) + "' "
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestShutdownCallsHost(t *testing.T) {
	h := &fakeHost{}
	d, _ := newTestDispatcher(t, func(c *Config) { c.Host = h })
	s := NewSession(1, "127.0.0.1:50000", "b", time.Time{})
	w := &bufWriter{}
	d.Dispatch(context.Background(), w, s, args("shutdown"))
	if h.shutdowns != 1 || !s.Closing() || len(w.b) != 0 {
		t.Errorf("shutdowns %d, closing %v, reply %q; want 1, true, none", h.shutdowns, s.Closing(), w.b)
	}
	// Without a host, SHUTDOWN fails.
	d, _ = newTestDispatcher(t, nil)
	s = NewSession(1, "127.0.0.1:50000", "b", time.Time{})
	w.b = nil
	d.Dispatch(context.Background(), w, s, args("shutdown"))
	if s.Closing() || !bytes.HasPrefix(w.b, []byte("-ERR Errors trying to SHUTDOWN")) {
		t.Errorf("closing %v, reply %q", s.Closing(), w.b)
	}
}

// TestAdminFromOtherHosts: without a password, SHUTDOWN and CONFIG SET
// are refused (DENIED) to clients not on the loopback interface, and
// nothing happens; everything else works for them. With a password they
// need AUTH, and then work from anywhere.
func TestAdminFromOtherHosts(t *testing.T) {
	h := &fakeHost{}
	d, _ := newTestDispatcher(t, func(c *Config) { c.Host = h })
	for _, addr := range []string{"10.1.2.3:5000", "[2001:db8::1]:5000", "203.0.113.9:1", "@", ""} {
		s := NewSession(1, addr, "b", time.Time{})
		for _, cmd := range [][]string{{"SHUTDOWN"}, {"shutdown", "nosave"}, {"CONFIG", "SET", "save", ""}} {
			w := &bufWriter{}
			d.Dispatch(context.Background(), w, s, args(cmd...))
			want := "-DENIED " + strings.ToUpper(strings.Join(cmd[:min(2, len(cmd))], " "))
			if cmd[0] == "shutdown" || cmd[0] == "SHUTDOWN" {
				want = "-DENIED SHUTDOWN is only accepted from the loopback interface"
			}
			if !strings.HasPrefix(string(w.b), want) || !strings.Contains(string(w.b), "--requirepass") {
				t.Errorf("%s from %q: got %q, want %q...", cmd, addr, w.b, want)
			}
		}
		if h.shutdowns != 0 || s.Closing() {
			t.Fatalf("from %q: shutdowns %d, closing %v after DENIED", addr, h.shutdowns, s.Closing())
		}
		w := &bufWriter{}
		d.Dispatch(context.Background(), w, s, args("CONFIG", "GET", "save"))
		d.Dispatch(context.Background(), w, s, args("RSGET", "1", "2"))
		if string(w.b) != "*2\r\n$4\r\nsave\r\n$0\r\n\r\n*2\r\n:0\r\n:0\r\n" {
			t.Errorf("from %q: CONFIG GET, RSGET: got %q", addr, w.b)
		}
	}
	// Loopback clients, IPv4, IPv6 and IPv4-mapped, may.
	for _, addr := range []string{"127.0.0.1:5000", "127.8.9.10:1", "[::1]:5000", "[::ffff:127.0.0.1]:5000"} {
		s := NewSession(1, addr, "b", time.Time{})
		w := &bufWriter{}
		d.Dispatch(context.Background(), w, s, args("CONFIG", "SET", "save", ""))
		if string(w.b) != "+OK\r\n" {
			t.Errorf("CONFIG SET from %q: got %q", addr, w.b)
		}
	}
	// With a password: NOAUTH first, then allowed from any host.
	h = &fakeHost{}
	d, _ = newTestDispatcher(t, func(c *Config) { c.Host = h; c.RequirePass = "pw" })
	s := NewSession(1, "10.1.2.3:5000", "b", time.Time{})
	w := &bufWriter{}
	d.Dispatch(context.Background(), w, s, args("SHUTDOWN"))
	if !strings.HasPrefix(string(w.b), "-NOAUTH") || h.shutdowns != 0 {
		t.Fatalf("SHUTDOWN before AUTH: got %q, %d shutdowns", w.b, h.shutdowns)
	}
	w.b = nil
	d.Dispatch(context.Background(), w, s, args("AUTH", "pw"))
	d.Dispatch(context.Background(), w, s, args("CONFIG", "SET", "save", ""))
	d.Dispatch(context.Background(), w, s, args("SHUTDOWN"))
	if string(w.b) != "+OK\r\n+OK\r\n" || h.shutdowns != 1 || !s.Closing() {
		t.Errorf("after AUTH from another host: got %q, %d shutdowns, closing %v", w.b, h.shutdowns, s.Closing())
	}
}

func TestInfo(t *testing.T) {
	h := &fakeHost{}
	clock := &testClock{t: time.Unix(1_700_000_000, 0)}
	d, _ := newTestDispatcher(t, func(c *Config) { c.Host = h; c.Now = clock.now })
	clock.t = clock.t.Add(100 * time.Second)
	s := NewSession(1, "a", "b", time.Time{})
	run := func(a ...string) string {
		w := &bufWriter{}
		d.Dispatch(context.Background(), w, s, args(a...))
		if n, err := respValues(w.b); n != 1 || err != nil {
			t.Fatalf("%q: %d values, %v", a, n, err)
		}
		return string(w.b)
	}
	all := run("INFO")
	for _, want := range []string{
		"# Server\r\n", "redis_version:7.4.0\r\n", "readstates_version:test\r\n", "tcp_port:6380\r\n",
		"uptime_in_seconds:100\r\n",
		"# Clients\r\n", "connected_clients:0\r\n", "maxclients:10000\r\n",
		"blocked_clients:0\r\n", // with the others redis-cli --stat reads
		"# Memory\r\n", "used_memory:", "go_heap_objects_bytes:",
		"# Persistence\r\n", "loading:0\r\n", "rdb_bgsave_in_progress:0\r\n", "aof_rewrite_in_progress:0\r\n",
		"dirty_read_states:2\r\n", "pending_read_states:1\r\n",
		"last_flush_time:1700000000\r\n", "flush_lag_seconds:100\r\n", "store_writes:11\r\n",
		"# Stats\r\n", "total_commands_processed:42\r\n", "keyspace_hits:7\r\n", "evicted_keys:1\r\n",
		"# Keyspace\r\n", "db0:keys=0,expires=0,avg_ttl=0\r\n", "cache_capacity:1000\r\n",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("INFO lacks %q:\n%s", want, all)
		}
	}
	ks := run("info", "KEYSPACE", "clients")
	if strings.Contains(ks, "# Server") || !strings.Contains(ks, "# Keyspace") || !strings.Contains(ks, "# Clients") {
		t.Errorf("INFO keyspace clients:\n%s", ks)
	}
	if got := run("INFO", "nosuch"); got != "$0\r\n\r\n" {
		t.Errorf("INFO nosuch = %q, want empty bulk", got)
	}
	// RESP3: a verbatim string.
	s.proto.Store(RESP3)
	if got := run("INFO", "replication"); !strings.HasPrefix(got, "=") || !strings.Contains(got, "txt:# Replication\r\nrole:master") {
		t.Errorf("INFO in RESP3 = %q", got)
	}
}

// TestCommandReplies checks that the large COMMAND replies are well formed
// in both protocols and count what they claim.
func TestCommandReplies(t *testing.T) {
	d, _ := newTestDispatcher(t, nil)
	for _, proto := range []int32{RESP2, RESP3} {
		s := NewSession(1, "a", "b", time.Time{})
		s.proto.Store(proto)
		for _, a := range [][]string{
			{"COMMAND"}, {"COMMAND", "DOCS"}, {"COMMAND", "INFO"}, {"COMMAND", "LIST"},
			{"COMMAND", "HELP"}, {"CONFIG", "GET", "*"}, {"CONFIG", "HELP"},
		} {
			w := &bufWriter{}
			d.Dispatch(context.Background(), w, s, args(a...))
			if n, err := respValues(w.b); n != 1 || err != nil || w.b[0] == '-' {
				t.Errorf("RESP%d %q: %d values, %v: %.80q", proto, a, n, err, w.b)
			}
		}
	}
}

// servingCluster is a Cluster whose node serves every slot.
type servingCluster struct{ entered, exited int }

func (c *servingCluster) Enter(int) (cluster.Verdict, string) { c.entered++; return cluster.Serve, "" }
func (c *servingCluster) Exit(int)                            { c.exited++ }
func (c *servingCluster) LeaseEnd() time.Time                 { return time.Now().Add(time.Hour) }
func (c *servingCluster) View() *cluster.View                 { return nil }

// TestDispatchAllocsCluster: in cluster mode the routing of a read-state
// command (the key's slot, the node's verdict) allocates nothing either,
// and every Enter has its Exit. (cluster's own tests cover Node.Enter.)
func TestDispatchAllocsCluster(t *testing.T) {
	cl := &servingCluster{}
	d, b := newTestDispatcher(t, func(c *Config) { c.Cluster = cl })
	b.failUsers = nil
	s := NewSession(1, "a", "b", time.Time{})
	w := &bufWriter{b: make([]byte, 0, 1024)}
	ctx := context.Background()
	for _, cmd := range [][][]byte{
		args("RSINCR", "42", "7"),
		args("RSGET", "42", "7"),
		args("RSRESET", "42", "7", "1100"),
		args("RSMGET", "42", "7", "7", "7"),
	} {
		d.Dispatch(ctx, w, s, cmd)
		allocs := testing.AllocsPerRun(1000, func() {
			w.b = w.b[:0]
			d.Dispatch(ctx, w, s, cmd)
		})
		if allocs != 0 {
			t.Errorf("cluster mode, %q: %v allocations per command, want 0", cmd, allocs)
		}
		if bytes.HasPrefix(w.b, []byte("-")) {
			t.Errorf("%q: error reply %q", cmd, w.b)
		}
	}
	if cl.entered == 0 || cl.entered != cl.exited {
		t.Fatalf("%d Enter, %d Exit", cl.entered, cl.exited)
	}
}

// BenchmarkDispatchRSINCRCluster is BenchmarkDispatchRSINCR routed as a
// cluster node does: the cost of the slot and the verdict on the hot path.
func BenchmarkDispatchRSINCRCluster(b *testing.B) {
	for _, mode := range []string{"standalone", "cluster"} {
		b.Run(mode, func(b *testing.B) {
			d, mb := newTestDispatcher(b, func(c *Config) {
				if mode == "cluster" {
					c.Cluster = &servingCluster{}
				}
			})
			mb.failUsers = nil
			s := NewSession(1, "a", "b", time.Time{})
			w := &bufWriter{b: make([]byte, 0, 1024)}
			cmd := args("RSINCR", "1234567890", "7", "0")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				w.b = w.b[:0]
				d.Dispatch(ctx, w, s, cmd)
			}
		})
	}
}

// slotCluster serves one slot: the others are another node's, or moving.
type slotCluster struct{ mine, moving int }

func (c *slotCluster) Enter(slot int) (cluster.Verdict, string) {
	switch slot {
	case c.mine:
		return cluster.Serve, ""
	case c.moving:
		return cluster.TryAgain, ""
	}
	return cluster.Moved, "127.0.0.1:7002"
}
func (c *slotCluster) Exit(int)            {}
func (c *slotCluster) View() *cluster.View { return nil }

// TestClusterRouting: the replies of a node for keys it does not serve,
// before anything runs, and the transaction rules of cluster mode.
func TestClusterRouting(t *testing.T) {
	mine, moving := cluster.Slot([]byte("42")), cluster.Slot([]byte("43"))
	other := cluster.Slot([]byte("44"))
	cl := &slotCluster{mine: mine, moving: moving}
	d, _ := newTestDispatcher(t, func(c *Config) { c.Cluster = cl })
	s := NewSession(1, "a", "b", time.Time{})
	run := func(a ...string) string {
		w := &bufWriter{}
		d.Dispatch(context.Background(), w, s, args(a...))
		return string(w.b)
	}
	for _, c := range []struct{ cmd, want string }{
		{"RSINCR 42 7", ":1\r\n"},
		{"RSINCR 44 7", fmt.Sprintf("-MOVED %d 127.0.0.1:7002\r\n", other)},
		{"RSGET 43 7", "-TRYAGAIN"},
		{"RSINCR 042 7", ":2\r\n"}, // the canonical slot, 42's: served here
		{"RSGET 044 7", "-ERR user_id '044' has leading zeros, and this cluster node does not serve that user"},
		{"RSGET 0 7", fmt.Sprintf("-MOVED %d ", cluster.Slot([]byte("0")))},
		{"MULTI", "+OK\r\n"},
		{"RSINCR 42 7", "+QUEUED\r\n"},
		{"RSINCR 44 7", "-MOVED"},
		{"EXEC", "-EXECABORT"},
		{"MULTI", "+OK\r\n"},
		{"RSINCR 42 7", "+QUEUED\r\n"},
		{"RSGET 42 8", "+QUEUED\r\n"},
		{"EXEC", "*2\r\n:3\r\n*2\r\n:0\r\n:0\r\n"},
		{"RSGET 42 7", "*2\r\n:3\r\n:0\r\n"},
	} {
		if got := run(strings.Fields(c.cmd)...); !strings.HasPrefix(got, c.want) {
			t.Errorf("%s: %q, want %q...", c.cmd, got, c.want)
		}
	}
	// The slot moves between MULTI and EXEC: EXEC is redirected.
	run("MULTI")
	run("RSINCR", "42", "7")
	cl.mine = -1
	if got := run("EXEC"); !strings.HasPrefix(got, "-MOVED") {
		t.Errorf("EXEC after the slot moved: %q, want a MOVED", got)
	}
	// A command refused for its slot, by MULTI's queue or at EXEC, is a
	// rejected call, and its reply counts by its code, as in Redis.
	info := run("INFO", "commandstats", "errorstats")
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`cmdstat_rsincr:[^\r]*,rejected_calls=2,failed_calls=0\r\n`),       // 44, and 44 queued
		regexp.MustCompile(`cmdstat_rsget:[^\r]*,rejected_calls=3,failed_calls=0\r\n`),        // 43, 044, 0
		regexp.MustCompile(`cmdstat_exec:calls=2,[^\r]*,rejected_calls=1,failed_calls=1\r\n`), // EXECABORT failed; MOVED rejected
		regexp.MustCompile(`errorstat_ERR:count=1\r\nerrorstat_EXECABORT:count=1\r\nerrorstat_MOVED:count=4\r\nerrorstat_TRYAGAIN:count=1\r\n`),
	} {
		if !want.MatchString(info) {
			t.Errorf("INFO commandstats errorstats = %q, want a match of %v", info, want)
		}
	}
}

// movingCluster answers TryAgain for its first n verdicts, then Moved (a
// slot whose hand-over ends), or Serve if serve is set.
type movingCluster struct {
	n     int
	serve bool
}

func (c *movingCluster) Enter(int) (cluster.Verdict, string) {
	switch {
	case c.n > 0:
		c.n--
		return cluster.TryAgain, ""
	case c.serve:
		return cluster.Serve, ""
	}
	return cluster.Moved, "127.0.0.1:7003"
}
func (c *movingCluster) Exit(int)            {}
func (c *movingCluster) View() *cluster.View { return nil }

// TestClusterHoldsMovingSlot: a command on a slot being handed over is
// deferred by an event loop (it must not wait there), and, where it may
// wait, waits for the hand-over and is redirected, not told TRYAGAIN.
func TestClusterHoldsMovingSlot(t *testing.T) {
	mc := &movingCluster{n: 3}
	d, _ := newTestDispatcher(t, func(c *Config) { c.Cluster = mc })
	s := NewSession(1, "a", "b", time.Time{})
	w := &bufWriter{}
	d.DispatchNoWait(context.Background(), w, s, args("RSINCR", "42", "7"))
	if !s.Deferred() || len(w.b) != 0 {
		t.Fatalf("no-wait dispatch on a moving slot: deferred %v, reply %q; want deferred, no reply", s.Deferred(), w.b)
	}
	d.Dispatch(context.Background(), w, s, args("RSINCR", "42", "7"))
	if want := fmt.Sprintf("-MOVED %d 127.0.0.1:7003\r\n", cluster.Slot([]byte("42"))); string(w.b) != want {
		t.Fatalf("after the hand-over: %q, want %q", w.b, want)
	}
}

// taggedView records the view an Incr ran on; a blocking one fails it
// with persist.ErrWouldBlock, as the engine's NoWait does on a miss.
type taggedView struct {
	ReadStates
	name  string
	block bool
	used  *[]string
}

func (v taggedView) Incr(ctx context.Context, k cache.Key, delta int64) (int32, error) {
	*v.used = append(*v.used, v.name)
	if v.block {
		return 0, persist.ErrWouldBlock
	}
	return v.ReadStates.Incr(ctx, k, delta)
}

// TestRerunAfterALookup: Dispatch runs a command on Config.Rerun (whose
// lookups count nothing) only if its DispatchNoWait try looked its read
// states up; one deferred before that, by a slot being moved, runs on
// Backend, whose lookups count.
func TestRerunAfterALookup(t *testing.T) {
	for _, c := range []struct {
		name    string
		cluster *movingCluster
		want    []string
	}{
		{"deferred by a miss", nil, []string{"nowait", "rerun"}},
		{"deferred by a moving slot", &movingCluster{n: 1, serve: true}, []string{"backend"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var used []string
			d, _ := newTestDispatcher(t, func(cfg *Config) {
				b := cfg.Backend
				cfg.Backend = taggedView{ReadStates: b, name: "backend", used: &used}
				cfg.NoWait = taggedView{ReadStates: b, name: "nowait", block: true, used: &used}
				cfg.Rerun = taggedView{ReadStates: b, name: "rerun", used: &used}
				if c.cluster != nil {
					cfg.Cluster = c.cluster
				}
			})
			s := NewSession(1, "a", "b", time.Time{})
			w := &bufWriter{}
			d.DispatchNoWait(context.Background(), w, s, args("RSINCR", "42", "7"))
			if !s.Deferred() {
				t.Fatalf("not deferred: %q", w.b)
			}
			d.Dispatch(context.Background(), w, s, args("RSINCR", "42", "7"))
			if string(w.b) != ":1\r\n" || !slices.Equal(used, c.want) {
				t.Fatalf("reply %q, views %v; want :1 and %v", w.b, used, c.want)
			}
			// A command Dispatch runs with no try before it: Backend.
			used = used[:0]
			w.b = w.b[:0]
			d.Dispatch(context.Background(), w, s, args("RSINCR", "42", "7"))
			if !slices.Equal(used, []string{"backend"}) {
				t.Fatalf("a command Dispatch runs without a try first: views %v, want [backend]", used)
			}
		})
	}
}
