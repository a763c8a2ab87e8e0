package tests

import (
	"bufio"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The durability promise of the spec, against the embedded store: every
// change survives a graceful shutdown (SIGTERM, SIGINT, SHUTDOWN), an
// evicted read state reads back exactly (read-through), and what was
// flushed survives kill -9.

// op is one write, with its expected reply from the model.
type op struct {
	incr       bool
	u, c, arg  int64 // arg: the delta, or the message_id
	hasMessage bool
}

// apply runs ops in pipelines of batch commands, checking every reply
// against the model (which it updates).
func apply(t *testing.T, ctx context.Context, c *redis.Client, m model, ops []op, batch int) {
	t.Helper()
	for len(ops) > 0 {
		n := min(batch, len(ops))
		pipe := c.Pipeline()
		cmds := make([]*redis.Cmd, n)
		wants := make([]int64, n)
		for i, o := range ops[:n] {
			if o.incr {
				want, ok := m.incr(o.u, o.c, o.arg)
				if !ok {
					t.Fatalf("test bug: op %+v overflows", o)
				}
				wants[i] = want
				cmds[i] = pipe.Do(ctx, "RSINCR", o.u, o.c, o.arg)
				continue
			}
			if o.hasMessage {
				wants[i] = m.reset(o.u, o.c, &o.arg)
				cmds[i] = pipe.Do(ctx, "RSRESET", o.u, o.c, o.arg)
			} else {
				wants[i] = m.reset(o.u, o.c, nil)
				cmds[i] = pipe.Do(ctx, "RSRESET", o.u, o.c)
			}
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatalf("pipeline of %d writes: %v", n, err)
		}
		for i, cmd := range cmds {
			if got, err := cmd.Int64(); err != nil || got != wants[i] {
				t.Fatalf("%v: got %d, %v, want %d", cmd.Args(), got, err, wants[i])
			}
		}
		ops = ops[n:]
	}
}

// verify reads every read state of the model with RSMGET and compares.
func verify(t *testing.T, ctx context.Context, c *redis.Client, m model, when string) {
	t.Helper()
	byUser := map[int64][]int64{}
	for k := range m {
		byUser[k[0]] = append(byUser[k[0]], k[1])
	}
	pipe := c.Pipeline()
	type req struct {
		u   int64
		chs []int64
		cmd *redis.Cmd
	}
	var reqs []req
	for u, chs := range byUser {
		slices.Sort(chs)
		for len(chs) > 0 {
			n := min(100, len(chs))
			args := []any{"RSMGET", u}
			for _, ch := range chs[:n] {
				args = append(args, ch)
			}
			reqs = append(reqs, req{u, chs[:n], pipe.Do(ctx, args...)})
			chs = chs[n:]
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("%s: RSMGET pipeline: %v", when, err)
	}
	bad := 0
	for _, r := range reqs {
		v, err := r.cmd.Result()
		if err != nil {
			t.Fatalf("%s: RSMGET %d ...: %v", when, r.u, err)
		}
		got, err := asStates(v)
		if err != nil || len(got) != len(r.chs) {
			t.Fatalf("%s: RSMGET %d (%d channels): got %v, %v", when, r.u, len(r.chs), v, err)
		}
		for i, ch := range r.chs {
			if want := m[[2]int64{r.u, ch}]; got[i] != want {
				if bad++; bad <= 10 {
					t.Errorf("%s: read state (%d, %d): got %+v, want %+v", when, r.u, ch, got[i], want)
				}
			}
		}
	}
	if bad > 10 {
		t.Errorf("%s: %d read states wrong in all, of %d", when, bad, len(m))
	}
}

// infoFields returns the "name:value" lines of an INFO section.
func infoFields(t *testing.T, ctx context.Context, c *redis.Client, section string) map[string]string {
	t.Helper()
	s, err := c.Info(ctx, section).Result()
	if err != nil {
		t.Fatalf("INFO %s: %v", section, err)
	}
	f := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && !strings.HasPrefix(k, "#") {
			f[k] = v
		}
	}
	return f
}

func infoInt(t *testing.T, f map[string]string, name string) (int64, bool) {
	t.Helper()
	v, ok := f[name]
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		t.Fatalf("INFO %s:%q is not an integer", name, v)
	}
	return n, true
}

// knownStates are 20 users x 100 channels with large ids and values.
func knownStates() []op {
	var ops []op
	for i := range int64(20) {
		u := 1_000_000_000_000_000 + i*7
		for j := range int64(100) {
			ch := j * 1_000_003
			ops = append(ops, op{u: u, c: ch, arg: (i*100+j)*1_000_000_007 + 1, hasMessage: true})
			if j%10 != 0 { // every tenth keeps mention_count 0
				ops = append(ops, op{incr: true, u: u, c: ch, arg: 1 + (i*131+j*7)%5000})
			}
		}
	}
	return ops
}

// TestRestartKeepsReadStates: write 2,000 read states, stop gracefully
// (SIGTERM; and with fewer states SIGINT and SHUTDOWN), start again on the
// same data directory: every value is exact.
func TestRestartKeepsReadStates(t *testing.T) {
	all := knownStates()
	for _, how := range []string{"SIGTERM", "SIGINT", "SHUTDOWN"} {
		t.Run(how, func(t *testing.T) {
			ops := all
			if how != "SIGTERM" {
				ops = ops[:300]
			}
			sp := startServer(t)
			ctx := testCtx(t)
			m := model{}
			apply(t, ctx, sp.goRedis(t, 3), m, ops, 500)
			if how == "SIGTERM" && len(m) != 2000 {
				t.Fatalf("test bug: %d read states, want 2000", len(m))
			}
			verify(t, ctx, sp.goRedis(t, 2), m, "before the restart")
			switch how {
			case "SIGTERM":
				sp.stopWith(syscall.SIGTERM)
			case "SIGINT":
				sp.stopWith(syscall.SIGINT)
			case "SHUTDOWN":
				shutdownCommand(t, sp)
			}
			sp.restart()
			verify(t, ctx, sp.goRedis(t, 2), m, "after the restart")
		})
	}
}

// shutdownCommand sends SHUTDOWN: no reply, the connection closes, and the
// process exits 0.
func shutdownCommand(t *testing.T, sp *serverProc) {
	t.Helper()
	c := sp.dial(t)
	if _, err := io.WriteString(c, respCmd("SHUTDOWN")); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(stopTimeout))
	if rest, err := io.ReadAll(bufio.NewReader(c)); len(rest) > 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		t.Errorf("SHUTDOWN: got reply %q, %v; want the connection closed without a reply", rest, err)
	}
	code, ok := sp.exited(stopTimeout)
	if !ok {
		t.Fatalf("server still running %v after SHUTDOWN", stopTimeout)
	}
	if code != 0 {
		t.Errorf("exit code after SHUTDOWN: got %d, want 0", code)
	}
}

// TestRestartTinyCache: a 100-entry cache and 5,000 read states changed at
// random: every reply matches the model while read states are evicted and
// read back, and again after a graceful restart.
func TestRestartTinyCache(t *testing.T) {
	sp := startServer(t, "--cache-entries", "100")
	ctx := testCtx(t)
	c := sp.goRedis(t, 3)
	rng := rand.New(rand.NewPCG(42, 7))
	m := model{}
	const users, channels = 50, 100
	// Touch every read state once, in an order that defeats any locality.
	var ops []op
	for _, k := range rng.Perm(users * channels) {
		ops = append(ops, op{incr: true, u: int64(k / channels), c: int64(k%channels) + 1e12, arg: 1 + int64(k%7)})
	}
	for range 15000 {
		k := rng.IntN(users * channels)
		u, ch := int64(k/channels), int64(k%channels)+1e12
		switch r := rng.IntN(10); {
		case r < 6:
			ops = append(ops, op{incr: true, u: u, c: ch, arg: int64(rng.IntN(30) - 8)})
		case r < 8:
			ops = append(ops, op{u: u, c: ch})
		default:
			ops = append(ops, op{u: u, c: ch, arg: rng.Int64(), hasMessage: true})
		}
	}
	apply(t, ctx, c, m, ops, 250)
	if len(m) != users*channels {
		t.Fatalf("test bug: %d read states, want %d", len(m), users*channels)
	}
	verify(t, ctx, c, m, "running")
	// Spot checks with RSGET, one round trip each, in random order.
	for range 200 {
		k := rng.IntN(users * channels)
		u, ch := int64(k/channels), int64(k%channels)+1e12
		want := m[[2]int64{u, ch}]
		if got, err := c.Do(ctx, "RSGET", u, ch).Int64Slice(); err != nil || !slices.Equal(got, []int64{want.mentions, want.lastMsg}) {
			t.Errorf("RSGET %d %d: got %v, %v, want %+v", u, ch, got, err, want)
		}
	}
	f := infoFields(t, ctx, c, "all")
	t.Logf("INFO: cache_capacity=%s cached_read_states=%s evicted_keys=%s keyspace_misses=%s store_loads=%s",
		f["cache_capacity"], f["cached_read_states"], f["evicted_keys"], f["keyspace_misses"], f["store_loads"])
	if ev, ok := infoInt(t, f, "evicted_keys"); !ok || ev == 0 {
		t.Errorf("INFO evicted_keys: got %q, want > 0 (5,000 read states in a 100-entry cache)", f["evicted_keys"])
	}
	if n, ok := infoInt(t, f, "cached_read_states"); ok && n >= users*channels {
		t.Errorf("INFO cached_read_states: got %d with --cache-entries 100, want fewer than the %d read states", n, users*channels)
	}

	sp.stop()
	sp.restart()
	c = sp.goRedis(t, 2)
	verify(t, ctx, c, m, "after the restart")
	f = infoFields(t, ctx, c, "stats")
	if miss, ok := infoInt(t, f, "keyspace_misses"); !ok || miss == 0 {
		t.Errorf("INFO keyspace_misses after reading back from the store: got %q, want > 0", f["keyspace_misses"])
	}
}

// TestKill9AfterFlush: with --flush-interval 200ms, what was written more
// than two flushes before a kill -9 is there after the restart. Without
// the journal (which would bring back everything): this is the store's
// own promise.
func TestKill9AfterFlush(t *testing.T) {
	const interval = 200 * time.Millisecond
	sp := startServer(t, "--flush-interval", interval.String(), "--journal=false")
	ctx := testCtx(t)
	c := sp.goRedis(t, 3)
	m := model{}
	apply(t, ctx, c, m, knownStates()[:1000], 500)

	// Wait for two whole flush cycles after the last write, and for the
	// backlog to drain, as INFO persistence reports them.
	f := infoFields(t, ctx, c, "persistence")
	start, ok := infoInt(t, f, "flush_cycles")
	if !ok {
		t.Fatalf("INFO persistence has no flush_cycles: %v", f)
	}
	{
		deadline := time.Now().Add(30 * time.Second)
		for {
			f = infoFields(t, ctx, c, "persistence")
			cycles, _ := infoInt(t, f, "flush_cycles")
			dirty, _ := infoInt(t, f, "dirty_read_states")
			pending, _ := infoInt(t, f, "pending_read_states")
			if cycles >= start+2 && dirty == 0 && pending == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("no two flushes with an empty backlog 30 s after the writes (flush interval %v): %v", interval, f)
			}
			time.Sleep(interval / 4)
		}
		if w, ok := infoInt(t, f, "store_writes"); ok && w == 0 {
			t.Errorf("INFO store_writes: 0 after a flush of %d read states", len(m))
		}
	}
	sp.kill9()
	sp.restart()
	verify(t, ctx, sp.goRedis(t, 2), m, "after kill -9 and restart")
}

// TestKill9AfterEviction: with a 100-entry cache and no timed flush in
// sight (--flush-interval 1h), a read state evicted from the cache is
// written on eviction: once INFO shows no pending writes, kill -9 loses at
// most the read states still dirty in the cache.
//
// Without the journal, which would bring back the dirty ones too.
func TestKill9AfterEviction(t *testing.T) {
	sp := startServer(t, "--cache-entries", "100", "--flush-interval", "1h", "--journal=false")
	ctx := testCtx(t)
	c := sp.goRedis(t, 3)
	m := model{}
	ops := knownStates()[:2000] // 1,053 read states: RSRESET with a message_id, most also RSINCR
	apply(t, ctx, c, m, ops, 100)

	if info := c.Info(ctx, "persistence").Val(); !strings.Contains(info, "aof_enabled:0\r\n") {
		t.Errorf("INFO persistence with --journal=false: want aof_enabled:0:\n%s", info)
	}
	var dirty int64
	deadline := time.Now().Add(30 * time.Second)
	for {
		f := infoFields(t, ctx, c, "persistence")
		d, ok1 := infoInt(t, f, "dirty_read_states")
		p, ok2 := infoInt(t, f, "pending_read_states")
		if !ok1 || !ok2 {
			t.Fatalf("INFO persistence has no dirty_read_states/pending_read_states: %v", f)
		}
		if p == 0 {
			dirty = d
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("evicted changes still pending 30 s after the writes: %v", f)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dirty > 100 {
		t.Errorf("INFO dirty_read_states: got %d, want at most the cache's 100 entries", dirty)
	}
	sp.kill9()
	sp.restart()

	// Every read state is either exact or, if it was still dirty in the
	// cache, never written: [0, 0].
	c = sp.goRedis(t, 2)
	exact, lost := 0, 0
	for k, want := range m {
		got, err := c.Do(ctx, "RSGET", k[0], k[1]).Int64Slice()
		switch {
		case err != nil:
			t.Fatalf("RSGET %d %d: %v", k[0], k[1], err)
		case slices.Equal(got, []int64{want.mentions, want.lastMsg}):
			exact++
		case slices.Equal(got, []int64{0, 0}):
			lost++
		default:
			t.Errorf("RSGET %d %d: got %v, want %+v (or [0 0] if it was never written)", k[0], k[1], got, want)
		}
	}
	t.Logf("after kill -9: %d read states exact, %d lost of the %d dirty in the cache", exact, lost, dirty)
	if int64(lost) > dirty {
		t.Errorf("kill -9 lost %d read states, but only %d were dirty in the cache: evicted changes were not written", lost, dirty)
	}
}
