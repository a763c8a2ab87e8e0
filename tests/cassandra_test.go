//go:build cassandra

// The durability promise of the spec (docs/commands.md), end to end
// against a real Cassandra node: the real server binary, real sockets,
// go-redis clients, and gocql to read what reached the database. See
// cassandra_helpers_test.go for the environment.
//
//	bash scripts/cassandra/cassandra.sh start
//	go test -race -count=1 -tags cassandra -run Cassandra ./tests/

package tests

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/redis/go-redis/v9"
)

// TestCassandraChurn: 16 clients change 100,000 read states at random
// through a 1,000-entry cache, so nearly every command evicts a read state
// (written to Cassandra) and reads another back. Every reply matches the
// model; afterwards every read state does (RSMGET), and after a graceful
// stop every row in Cassandra does.
func TestCassandraChurn(t *testing.T) {
	requireCassandra(t)
	ks := cassandraKeyspace(t)
	sp := startCassandraServer(t, ks, "--cache-entries", "1000", "--flush-interval", "2s")
	// A guard against a hang, not a speed test: alone it takes 2.5 min,
	// and a CI run on a loaded machine once took over 5.
	ctx := longCtx(t, 10*time.Minute)

	const (
		clients  = 16
		users    = 2000 // client i owns the users u with u%clients == i
		channels = 50
		extraOps = 1000 // random ops per client after every key was touched once
		batch    = 32
		userBase = 1_000_000_000_000
		chanBase = 500_000_000_000
	)
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	// Shared hot keys: every client sends RSINCR +1 only, so the final
	// count is the number of acknowledged increments.
	hot := &hotCounter{n: map[[2]int64]int64{}}
	hotKeys := [][2]int64{{7, 1}, {7, 2}, {7, 3}, {8, 1}}
	for _, k := range hotKeys {
		hot.n[k] = 0
	}

	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		all  = model{}
		ref  refusals
		sent atomic.Int64
	)
	// The first failure stops every client.
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	start := time.Now()
	for g := range clients {
		c := sp.goRedis(t, 2+g%2, func(o *redis.Options) { o.PoolSize = 1 })
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(seed, uint64(g)))
			randomOp := func(u, ch int64) op {
				switch r := rng.IntN(10); {
				case r < 6: // deltas from -10 to +20: counts often clamp at 0
					return op{incr: true, u: u, c: ch, arg: int64(rng.IntN(31) - 10)}
				case r < 8:
					return op{u: u, c: ch}
				default:
					return op{u: u, c: ch, arg: rng.Int64N(1 << 62), hasMessage: true}
				}
			}
			var keys [][2]int64
			for u := int64(g); u < users; u += clients {
				for ch := range int64(channels) {
					keys = append(keys, [2]int64{userBase + u, chanBase + ch*1_000_003})
				}
			}
			var ops []op
			for _, i := range rng.Perm(len(keys)) {
				ops = append(ops, randomOp(keys[i][0], keys[i][1]))
			}
			for range extraOps {
				if rng.IntN(8) == 0 {
					k := hotKeys[rng.IntN(len(hotKeys))]
					ops = append(ops, op{incr: true, u: k[0], c: k[1], arg: 1})
					continue
				}
				k := keys[rng.IntN(len(keys))]
				ops = append(ops, randomOp(k[0], k[1]))
			}
			m := model{}
			// A TRYAGAIN'd op changed nothing: send it again, as a client
			// would, until the backlog has room.
			for round := 0; len(ops) > 0; round++ {
				if round > 20 {
					t.Errorf("client %d: %d ops still refused after %d rounds", g, len(ops), round)
					cancel()
					return
				}
				if round > 0 {
					time.Sleep(200 * time.Millisecond)
				}
				sent.Add(int64(len(ops)))
				var err error
				if ops, err = sendOps(cctx, c, m, hot, ops, batch, &ref); err != nil {
					if cctx.Err() == nil {
						t.Errorf("client %d: %v", g, err)
						cancel()
					}
					return
				}
			}
			mu.Lock()
			for k, s := range m {
				all[k] = s
			}
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	elapsed := time.Since(start)
	for k, n := range hot.n {
		all[k] = state{n, 0}
	}
	t.Logf("%d commands in %v (%.0f/s), %s; %d read states", sent.Load(), elapsed.Round(time.Millisecond),
		float64(sent.Load())/elapsed.Seconds(), ref.String(), len(all))
	if len(all) < users*channels {
		t.Fatalf("test bug: %d read states, want at least %d", len(all), users*channels)
	}

	c := sp.goRedis(t, 3)
	start = time.Now()
	verifyAll(t, ctx, sp, all, nil, "after the churn")
	t.Logf("RSMGET of %d read states: %v", len(all), time.Since(start).Round(time.Millisecond))
	// And RSGET, one round trip each, on a sample (and the shared keys).
	keys := slices.Collect(maps.Keys(all)) // in random order
	for _, k := range slices.Concat(hotKeys, keys[:500]) {
		want := all[k]
		if got, err := c.Do(ctx, "RSGET", k[0], k[1]).Int64Slice(); err != nil || !slices.Equal(got, []int64{want.mentions, want.lastMsg}) {
			t.Errorf("RSGET %d %d: got %v, %v, want %+v", k[0], k[1], got, err, want)
		}
	}
	f := infoFields(t, ctx, c, "all")
	logInfo(t, f, "after the churn")
	for _, name := range []string{"evicted_keys", "store_loads", "store_writes", "keyspace_misses"} {
		if n, ok := infoInt(t, f, name); !ok || n == 0 {
			t.Errorf("INFO %s: got %q, want > 0 (%d read states through a 1,000-entry cache)", name, f[name], len(all))
		}
	}
	if n, ok := infoInt(t, f, "cached_read_states"); !ok || n > 1000 {
		t.Errorf("INFO cached_read_states: got %q, want at most 1000", f["cached_read_states"])
	}
	if t.Failed() {
		t.FailNow()
	}

	sp.stop() // SIGTERM: the final flush writes what is dirty
	start = time.Now()
	rows := cassandraRows(t, ks)
	t.Logf("read %d rows with gocql in %v", len(rows), time.Since(start).Round(time.Millisecond))
	compareRows(t, rows, all, nil, "in Cassandra after SIGTERM")
}

// TestCassandraRestart: read states written, SIGTERM, a new process on the
// same keyspace reads every value back exactly (from Cassandra: its cache
// starts empty); changed again, SHUTDOWN, again exact.
func TestCassandraRestart(t *testing.T) {
	requireCassandra(t)
	ks := cassandraKeyspace(t)
	sp := startCassandraServer(t, ks, "--cache-entries", "500")
	ctx := longCtx(t, 3*time.Minute)
	m := model{}
	apply(t, ctx, sp.goRedis(t, 3), m, knownStates(), 500)
	if len(m) != 2000 {
		t.Fatalf("test bug: %d read states, want 2000", len(m))
	}
	verifyAll(t, ctx, sp, m, nil, "before the restart")

	sp.stop()
	compareRows(t, cassandraRows(t, ks), m, nil, "in Cassandra after SIGTERM")
	sp.restart()
	verifyAll(t, ctx, sp, m, nil, "after SIGTERM and restart")
	c := sp.goRedis(t, 2)
	// One lookup counted per read state each RSMGET names, as Redis
	// counts keyspace_hits and _misses, however often a read-through
	// looks again; the warm restart may have brought back at most the
	// cache's 500, so the rest missed.
	stats := infoFields(t, ctx, c, "stats")
	hits, _ := infoInt(t, stats, "keyspace_hits")
	misses, ok := infoInt(t, stats, "keyspace_misses")
	if !ok || hits+misses != 2000 || misses < 1500 {
		t.Errorf("INFO after reading 2,000 read states into a new process with a cache of 500: keyspace_hits %d, keyspace_misses %d; want 2000 lookups, at least 1500 misses", hits, misses)
	}
	if n, ok := infoInt(t, infoFields(t, ctx, c, "persistence"), "store_user_loads"); !ok || n == 0 {
		t.Errorf("INFO store_user_loads after reading 2,000 read states into a new process: got %d, want > 0", n)
	}

	// Change every read state again, starting from what was read back.
	rng := rand.New(rand.NewPCG(1, 2))
	var ops []op
	for k := range m {
		switch rng.IntN(3) {
		case 0:
			ops = append(ops, op{incr: true, u: k[0], c: k[1], arg: int64(rng.IntN(40) - 20)})
		case 1:
			ops = append(ops, op{u: k[0], c: k[1]})
		default:
			ops = append(ops, op{u: k[0], c: k[1], arg: rng.Int64(), hasMessage: true})
		}
	}
	apply(t, ctx, c, m, ops, 200)
	shutdownCommand(t, sp)
	sp.restart()
	verifyAll(t, ctx, sp, m, nil, "after SHUTDOWN and restart")
}

// TestCassandraCrashLossBounded measures what kill -9 loses with
// --flush-interval 2s: a known set written well before the kill, and new
// read states written continuously up to the kill. Everything acknowledged
// more than the flush interval plus a margin before the kill must be
// there after the restart; what was lost, and the age of the oldest lost
// write, is logged (the documented figure).
func TestCassandraCrashLossBounded(t *testing.T) {
	requireCassandra(t)
	const (
		interval = 2 * time.Second
		margin   = time.Second
		writers  = 2
		runFor   = 8 * time.Second
		userBase = 5_000_000_000
	)
	ks := cassandraKeyspace(t)
	sp := startCassandraServer(t, ks, "--flush-interval", interval.String())
	ctx := longCtx(t, 3*time.Minute)

	known := model{}
	apply(t, ctx, sp.goRedis(t, 3), known, knownStates(), 500)
	knownAt := time.Now()

	type ack struct {
		k  [2]int64
		st state
		at time.Time
	}
	acks := make([][]ack, writers)
	sentOnly := make([][]ack, writers) // sent, no reply: either outcome is fine
	var (
		wg     sync.WaitGroup
		killed atomic.Bool
	)
	for w := range writers {
		c := sp.goRedis(t, 2+w, func(o *redis.Options) { o.PoolSize = 1 })
		wg.Go(func() {
			for seq := int64(0); ; seq++ {
				k := [2]int64{userBase + int64(w)*1_000_000_000 + seq/50, seq % 50}
				var (
					st  state
					cmd *redis.Cmd
				)
				if seq%2 == 0 {
					st = state{1 + seq%1000, 0}
					cmd = c.Do(ctx, "RSINCR", k[0], k[1], st.mentions)
				} else {
					st = state{0, 1_000_000 + seq}
					cmd = c.Do(ctx, "RSRESET", k[0], k[1], st.lastMsg)
				}
				got, err := cmd.Int64()
				at := time.Now()
				if err != nil {
					if !killed.Load() {
						t.Errorf("writer %d: %v: %v", w, cmd.Args(), err)
					}
					sentOnly[w] = append(sentOnly[w], ack{k, st, at})
					return
				}
				if got != st.mentions {
					t.Errorf("writer %d: %v: got %d, want %d", w, cmd.Args(), got, st.mentions)
					return
				}
				acks[w] = append(acks[w], ack{k, st, at})
			}
		})
	}
	time.Sleep(runFor)
	if t.Failed() {
		t.FailNow()
	}
	killed.Store(true)
	killAt := time.Now()
	sp.kill9()
	wg.Wait()
	sp.restart()
	restartedAt := time.Now()

	// The known set, written long before the kill: exact.
	verifyAll(t, ctx, sp, known, nil, "known set after kill -9")

	// The continuous set: each read state is exact or, if lost, zero.
	var (
		flat, unknown []ack
		keys          [][2]int64
	)
	for w := range writers {
		flat = append(flat, acks[w]...)
		unknown = append(unknown, sentOnly[w]...)
	}
	for _, a := range slices.Concat(flat, unknown) {
		keys = append(keys, a.k)
	}
	got := readStates(t, ctx, sp, keys)
	var (
		lost, lostLastSecond, ackedLastSecond int
		overBound                             int
		oldestLost                            time.Duration
		newestKept                            = time.Duration(-1)
		bound                                 = interval + margin
	)
	for _, a := range flat {
		age := killAt.Sub(a.at)
		if age <= time.Second {
			ackedLastSecond++
		}
		switch g := got[a.k]; g {
		case a.st:
			if newestKept < 0 || age < newestKept {
				newestKept = age
			}
		case state{}:
			lost++
			if age <= time.Second {
				lostLastSecond++
			}
			oldestLost = max(oldestLost, age)
			if age > bound {
				if overBound++; overBound <= 10 {
					t.Errorf("read state %v acknowledged %v before kill -9 is lost (bound: flush interval %v + %v)", a.k, age.Round(time.Millisecond), interval, margin)
				}
			}
		default:
			t.Errorf("read state %v after kill -9: got %+v, want %+v or the zero state (if lost)", a.k, g, a.st)
		}
	}
	for _, a := range unknown {
		if g := got[a.k]; g != a.st && g != (state{}) {
			t.Errorf("read state %v sent, no reply before the kill: got %+v, want %+v or the zero state", a.k, g, a.st)
		}
	}
	t.Logf("kill -9 with --flush-interval %v: %d writes acknowledged in %v (known set %v before the kill); "+
		"lost %d in all, %d of the %d acknowledged in the last second; oldest lost write %v before the kill "+
		"(bound %v); newest surviving write %v before the kill; restart took %v",
		interval, len(flat), runFor, killAt.Sub(knownAt).Round(time.Millisecond),
		lost, lostLastSecond, ackedLastSecond, oldestLost.Round(time.Millisecond), bound,
		newestKept.Round(time.Millisecond), restartedAt.Sub(killAt).Round(time.Millisecond))
	if overBound > 0 {
		t.Errorf("%d read states acknowledged more than %v before kill -9 are lost", overBound, bound)
	}
	if len(flat) < 500 {
		t.Errorf("only %d writes acknowledged in %v: too few to measure", len(flat), runFor)
	}
}

// TestCassandraOutage: under steady load, the node is stopped for real
// (cassandra.sh stop) for about 12 s. Read states in the cache keep being
// served; new ones are refused with TRYAGAIN and nothing else; no
// acknowledged change is lost: once the node is back and the backlog is
// written, every read state equals the model, through the server and in
// Cassandra.
func TestCassandraOutage(t *testing.T) {
	requireCassandra(t)
	ks := cassandraKeyspace(t)
	sp := startCassandraServer(t, ks,
		"--cache-entries", "2000", "--max-pending", "500", "--flush-interval", "1s",
		"--cassandra-timeout", "1s")
	// Registered after the server: runs before its graceful stop, which
	// needs the node for the final flush.
	t.Cleanup(func() {
		if out, code, err := cassandraCtl(t, "start", 5*time.Minute); err != nil || code != 0 {
			t.Errorf("restarting the Cassandra node after the outage test: exit %d, %v:\n%s", code, err, out)
		}
	})
	ctx := longCtx(t, 5*time.Minute)

	const (
		writers    = 4
		hotPerW    = 150 // read states of each writer kept in the cache
		outageTime = 12 * time.Second
		userBase   = 3_000_000_000
	)
	const (
		phaseWarm = iota
		phaseStopping
		phaseDown
		phaseStarting
		phaseUp
	)
	phaseNames := []string{"warm-up", "stopping", "down", "starting", "recovered"}
	var phase atomic.Int32
	type counts struct {
		hotOK, hotRefused, freshOK, freshRefused [5]atomic.Int64
	}
	var (
		cnt  counts
		ref  refusals
		stop atomic.Bool
		wg   sync.WaitGroup
	)
	type writer struct {
		m      model
		unsent [][2]int64 // a new key whose op was refused to the end
	}
	// Fill the cache first, so that it is at capacity and evicting (CLOCK
	// in steady state) long before the outage. A shard that first fills up
	// clears every reference bit in one sweep and then evicts in slot
	// order, hot or not; that must happen while the node is up.
	fillers := model{}
	var fill []op
	for i := range int64(2500) {
		fill = append(fill, op{incr: true, u: userBase + 900_000 + i/50, c: i % 50, arg: 1 + i%7})
	}
	apply(t, ctx, sp.goRedis(t, 3), fillers, fill, 250)

	ws := make([]*writer, writers)
	for w := range writers {
		wr := &writer{m: model{}}
		ws[w] = wr
		c := sp.goRedis(t, 2+w%2, func(o *redis.Options) { o.PoolSize = 1 })
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 77))
			hotKeys := make([][2]int64, hotPerW)
			for i := range hotKeys {
				hotKeys[i] = [2]int64{userBase + int64(w)*1000 + int64(i%15), int64(i)}
			}
			// Warm up: every hot key is in the cache.
			for _, k := range hotKeys {
				got, err := c.Do(ctx, "RSINCR", k[0], k[1], 1).Int64()
				want, _ := wr.m.incr(k[0], k[1], 1)
				if err != nil || got != want {
					t.Errorf("writer %d: warm-up RSINCR %v: got %d, %v, want %d", w, k, got, err, want)
					return
				}
			}
			var (
				fresh op // the op on a new key; sent again while refused
				seq   int64
			)
			newFresh := func() {
				seq++
				fresh = op{u: userBase + 1_000_000 + int64(w)*100_000_000 + seq/20, c: seq % 20}
				if seq%2 == 0 {
					fresh.incr, fresh.arg = true, 1+seq%5
				} else {
					fresh.hasMessage, fresh.arg = true, rng.Int64N(1<<62)
				}
			}
			newFresh()
			defer func() { wr.unsent = append(wr.unsent, [2]int64{fresh.u, fresh.c}) }()
			for i := 0; !stop.Load(); i++ {
				// A hot key, in turn: it stays in the cache (CLOCK keeps
				// what is used more often than the hand comes round), so
				// it must be served whether the node is up or not.
				k := hotKeys[i%len(hotKeys)]
				delta := int64(rng.IntN(9) - 3)
				p0 := phase.Load()
				got, err := c.Do(ctx, "RSINCR", k[0], k[1], delta).Int64()
				p1 := phase.Load()
				switch kind := classifyReply(err); {
				case kind == replyOK:
					if want, _ := wr.m.incr(k[0], k[1], delta); got != want {
						t.Errorf("writer %d: RSINCR %v %d (%s): got %d, want %d", w, k, delta, phaseNames[p1], got, want)
						return
					}
					cnt.hotOK[p1].Add(1)
				case kind.refused():
					ref.add(kind)
					cnt.hotRefused[p1].Add(1)
					if p0 == phaseDown || p1 == phaseDown {
						t.Errorf("writer %d: RSINCR %v of a cached read state while the node is down: %v", w, k, err)
					}
				default:
					t.Errorf("writer %d: RSINCR %v %d (%s): %v", w, k, delta, phaseNames[p1], err)
					return
				}

				time.Sleep(time.Millisecond)
				if i%3 != 0 {
					continue
				}
				// Every third turn, a new read state: it has to be read
				// from the database first. A refused op changed nothing, so it is sent
				// again until it is acknowledged, and then its reply
				// must be that of one op, not of several.
				var cmd *redis.Cmd
				if fresh.incr {
					cmd = c.Do(ctx, "RSINCR", fresh.u, fresh.c, fresh.arg)
				} else {
					cmd = c.Do(ctx, "RSRESET", fresh.u, fresh.c, fresh.arg)
				}
				got, err = cmd.Int64()
				p1 = phase.Load()
				switch kind := classifyReply(err); {
				case kind == replyOK:
					var want int64
					if fresh.incr {
						want, _ = wr.m.incr(fresh.u, fresh.c, fresh.arg)
					} else {
						want = wr.m.reset(fresh.u, fresh.c, &fresh.arg)
					}
					if got != want {
						t.Errorf("writer %d: %v (%s): got %d, want %d", w, cmd.Args(), phaseNames[p1], got, want)
						return
					}
					cnt.freshOK[p1].Add(1)
					newFresh()
				case kind.refused():
					ref.add(kind)
					cnt.freshRefused[p1].Add(1)
				default:
					t.Errorf("writer %d: %v (%s): %v", w, cmd.Args(), phaseNames[p1], err)
					return
				}
			}
		})
	}
	stopLoad := func() {
		stop.Store(true)
		wg.Wait()
	}
	defer stopLoad()
	c := sp.goRedis(t, 3)
	sleepOrFail := func(d time.Duration) {
		t.Helper()
		time.Sleep(d)
		if t.Failed() {
			stopLoad()
			t.FailNow()
		}
	}

	sleepOrFail(4 * time.Second)
	logInfo(t, infoFields(t, ctx, c, "all"), "warm-up")
	phase.Store(phaseStopping)
	t0 := time.Now()
	if out, code, err := cassandraCtl(t, "stop", 2*time.Minute); err != nil || code != 0 {
		t.Fatalf("cassandra.sh stop: exit %d, %v:\n%s", code, err, out)
	}
	phase.Store(phaseDown)
	t.Logf("node stopped in %v", time.Since(t0).Round(time.Millisecond))
	sleepOrFail(outageTime)
	f := infoFields(t, ctx, c, "all")
	logInfo(t, f, "node down")
	// More read states changed than the backlog holds: the rest wait in
	// the cache, pinned.
	if p, _ := infoInt(t, f, "pending_read_states"); p != 500 {
		t.Errorf("INFO pending_read_states after %v down: got %d, want the --max-pending 500 (%d read states changed)", outageTime, p, writers*hotPerW)
	}
	if p, _ := infoInt(t, f, "pinned_refusals_total"); p == 0 {
		t.Errorf("INFO pinned_refusals_total after %v down: got 0, want > 0", outageTime)
	}
	phase.Store(phaseStarting)
	t0 = time.Now()
	if out, code, err := cassandraCtl(t, "start", 5*time.Minute); err != nil || code != 0 {
		t.Fatalf("cassandra.sh start: exit %d, %v:\n%s", code, err, out)
	}
	phase.Store(phaseUp)
	t.Logf("node started in %v", time.Since(t0).Round(time.Millisecond))
	// Recovered: new read states are served again.
	deadline := time.Now().Add(60 * time.Second)
	for before := cnt.freshOK[phaseUp].Load(); cnt.freshOK[phaseUp].Load() < before+200; {
		if time.Now().After(deadline) {
			stopLoad()
			t.Fatalf("60 s after the node is back, new read states are still refused: %s", ref.String())
		}
		sleepOrFail(100 * time.Millisecond)
	}
	stopLoad()

	for p, name := range phaseNames {
		t.Logf("%-9s hot: %5d ok %4d refused; new: %5d ok %5d refused", name,
			cnt.hotOK[p].Load(), cnt.hotRefused[p].Load(), cnt.freshOK[p].Load(), cnt.freshRefused[p].Load())
	}
	t.Logf("%s", ref.String())
	if n := cnt.hotOK[phaseDown].Load(); n < 100 {
		t.Errorf("only %d RSINCR of cached read states served while the node was down, want many", n)
	}
	if n := cnt.freshRefused[phaseDown].Load(); n == 0 {
		t.Errorf("no new read state refused while the node was down (%d served): want TRYAGAIN", cnt.freshOK[phaseDown].Load())
	}
	if n := cnt.freshOK[phaseWarm].Load(); n < 100 {
		t.Errorf("only %d new read states served during the warm-up, want many", n)
	}

	logInfo(t, waitDrained(t, ctx, c, 90*time.Second), "drained")
	all := fillers
	var zeros [][2]int64
	for _, wr := range ws {
		for k, s := range wr.m {
			all[k] = s
		}
		zeros = append(zeros, wr.unsent...)
	}
	verifyAll(t, ctx, sp, all, zeros, "after the outage")
	sp.stop()
	compareRows(t, cassandraRows(t, ks), all, zeros, "in Cassandra after the outage and SIGTERM")
}

// readStates reads keys with RSMGET per user.
func readStates(t *testing.T, ctx context.Context, sp *serverProc, keys [][2]int64) map[[2]int64]state {
	t.Helper()
	byUser := map[int64][]int64{}
	for _, k := range keys {
		byUser[k[0]] = append(byUser[k[0]], k[1])
	}
	c := sp.goRedis(t, 3)
	pipe := c.Pipeline()
	type req struct {
		u   int64
		chs []int64
		cmd *redis.Cmd
	}
	var reqs []req
	for u, chs := range byUser {
		slices.Sort(chs)
		chs = slices.Compact(chs)
		args := []any{"RSMGET", u}
		for _, ch := range chs {
			args = append(args, ch)
		}
		reqs = append(reqs, req{u, chs, pipe.Do(ctx, args...)})
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("RSMGET pipeline: %v", err)
	}
	out := map[[2]int64]state{}
	for _, r := range reqs {
		v, err := r.cmd.Result()
		if err != nil {
			t.Fatalf("RSMGET %d: %v", r.u, err)
		}
		sts, err := asStates(v)
		if err != nil || len(sts) != len(r.chs) {
			t.Fatalf("RSMGET %d (%d channels): got %v, %v", r.u, len(r.chs), v, err)
		}
		for i, ch := range r.chs {
			out[[2]int64{r.u, ch}] = sts[i]
		}
	}
	return out
}

// TestCassandraFlushThroughput measures how fast the server writes dirty
// read states to Cassandra, next to what the node takes from a plain gocql
// load generator (the ceiling). Skipped unless READSTATES_BENCH=1; run it
// without -race for figures worth keeping (the server is always built
// without it here, the load generator runs in this test binary):
//
//	READSTATES_BENCH=1 go test -count=1 -tags cassandra -run CassandraFlushThroughput -v ./tests/
func TestCassandraFlushThroughput(t *testing.T) {
	if os.Getenv("READSTATES_BENCH") != "1" {
		t.Skip("a measurement, not a test: set READSTATES_BENCH=1 to run it")
	}
	requireCassandra(t)
	const (
		n        = 200_000
		conc     = 16
		userBase = 9_000_000_000
	)
	// The shape: 2,000 users x 100 channels, or READSTATES_FLUSH_USERS
	// users sharing the n read states.
	users := int64(2000)
	if v := os.Getenv("READSTATES_FLUSH_USERS"); v != "" {
		var err error
		if users, err = strconv.ParseInt(v, 10, 64); err != nil || users <= 0 || n%users != 0 {
			t.Fatalf("READSTATES_FLUSH_USERS=%q: want a divisor of %d", v, n)
		}
	}
	channels := n / users
	ks := cassandraKeyspace(t)
	t.Setenv("READSTATES_SERVER_RACE", "0")
	bin := filepath.Join(t.TempDir(), "readstates")
	if err := buildServer(bin); err != nil {
		t.Fatalf("building a server without -race: %v", err)
	}
	bs := startBenchServer(t, bin, "--cassandra-hosts", cassandraHosts(), "--cassandra-keyspace", ks,
		"--cache-entries", strconv.Itoa(2*n), "--flush-interval", "1h", "--shutdown-timeout", "10m")
	ctx := longCtx(t, 15*time.Minute)

	// n dirty read states: RSINCR of n new keys (each a read-through miss).
	start := time.Now()
	var wg sync.WaitGroup
	for g := range conc {
		c := redis.NewClient(&redis.Options{Addr: bs.addr, Protocol: 3, PoolSize: 1, MaxRetries: -1, ReadTimeout: time.Minute})
		defer c.Close()
		wg.Go(func() {
			for u := int64(g); u < users; u += conc {
				pipe := c.Pipeline()
				for ch := range int64(channels) {
					pipe.Do(ctx, "RSINCR", userBase+u, ch, 1)
				}
				cmds, err := pipe.Exec(ctx)
				if err != nil {
					t.Errorf("RSINCR pipeline of user %d: %v", u, err)
					return
				}
				for _, cmd := range cmds {
					if v, err := cmd.(*redis.Cmd).Int64(); err != nil || v != 1 {
						t.Errorf("%v: got %d, %v, want 1", cmd.Args(), v, err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	loadTime := time.Since(start)
	c := redis.NewClient(&redis.Options{Addr: bs.addr, Protocol: 3, MaxRetries: -1})
	f := infoFields(t, ctx, c, "persistence")
	c.Close()
	if d, _ := infoInt(t, f, "dirty_read_states"); d != n {
		t.Fatalf("INFO dirty_read_states: got %d, want %d before the final flush: %v", d, n, f)
	}

	// The final flush: SIGTERM to exit.
	start = time.Now()
	if err := bs.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bs.done:
	case <-time.After(10 * time.Minute):
		t.Fatalf("server still running 10 minutes after SIGTERM")
	}
	flushTime := time.Since(start)
	if code := bs.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("server exit code after SIGTERM: %d\n%s", code, bs.out.String())
	}
	logFlush, logOK := flushDuration(bs.out.String())
	if rows := cassandraRows(t, ks); len(rows) != n {
		t.Fatalf("%d rows in Cassandra after the final flush, want %d", len(rows), n)
	}

	// The ceiling: the same rows (other users) from gocql, in the shape the
	// server's store uses (one UNLOGGED batch per user of at most 100
	// rows, 16 in flight), and as single-row INSERTs. And the shape the
	// server's flush had before its writes grew: one writer taking the
	// queue 1,024 records at a time, in the cache's hash order, so a
	// user's rows were spread over many writes; each write grouped by user
	// and waited for before the next.
	s, err := cassandraSession(t)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	insert := "INSERT INTO " + ks + ".read_states (user_id, channel_id, mention_count, last_message_id) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
	type row struct{ u, ch int64 }
	// send writes reqs (each the rows of one user) with inflight at once.
	send := func(reqs [][]row, inflight int) {
		jobs := make(chan []row)
		var (
			wg     sync.WaitGroup
			failed atomic.Bool
		)
		for range inflight {
			wg.Go(func() {
				for req := range jobs {
					if failed.Load() {
						continue
					}
					stamp := time.Now().UnixMicro()
					var err error
					if len(req) == 1 {
						err = s.Query(insert, req[0].u, req[0].ch, int32(1), int64(0), stamp).
							WithContext(ctx).Consistency(gocql.LocalQuorum).Exec()
					} else {
						b := s.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
						b.SetConsistency(gocql.LocalQuorum)
						for _, r := range req {
							b.Query(insert, r.u, r.ch, int32(1), int64(0), stamp)
						}
						err = s.ExecuteBatch(b)
					}
					if err != nil && !failed.Swap(true) {
						t.Errorf("gocql load generator: %v", err)
					}
				}
			})
		}
		for _, req := range reqs {
			jobs <- req
		}
		close(jobs)
		wg.Wait()
	}
	rows := func(base int64) []row {
		var out []row
		for u := range int64(users) {
			for ch := range int64(channels) {
				out = append(out, row{base + u, ch})
			}
		}
		return out
	}
	byUser := func(rs []row) [][]row { // rs sorted by user
		var reqs [][]row
		for len(rs) > 0 {
			n := 1
			for n < len(rs) && n < 100 && rs[n].u == rs[0].u {
				n++
			}
			reqs = append(reqs, rs[:n:n])
			rs = rs[n:]
		}
		return reqs
	}
	timed := func(f func()) time.Duration { start := time.Now(); f(); return time.Since(start) }

	singles := func(base int64) [][]row {
		var reqs [][]row
		for _, r := range rows(base) {
			reqs = append(reqs, []row{r})
		}
		return reqs
	}
	batchTime := timed(func() { send(byUser(rows(userBase+1_000_000)), conc) })
	singleTime := timed(func() { send(singles(userBase+2_000_000), conc) })
	single64Time := timed(func() { send(singles(userBase+4_000_000), 64) })
	var shapeRows, shapeReqs int
	shapeTime := timed(func() {
		all := rows(userBase + 3_000_000)
		rand.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		for len(all) > 0 {
			chunk := slices.Clone(all[:min(1024, len(all))])
			all = all[len(chunk):]
			slices.SortFunc(chunk, func(a, b row) int { return cmp.Compare(a.u, b.u) })
			reqs := byUser(chunk)
			shapeRows, shapeReqs = shapeRows+len(chunk), shapeReqs+len(reqs)
			send(reqs, conc)
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	rate := func(d time.Duration) string { return strconv.FormatFloat(float64(n)/d.Seconds(), 'f', 0, 64) }
	var b strings.Builder
	fmt.Fprintf(&b, "\n| %d read states (%d users × %d channels), 1-node Cassandra 5.0, %d cores | seconds | rows/s |\n",
		n, users, channels, runtime.NumCPU())
	fmt.Fprintf(&b, "| --- | ---: | ---: |\n")
	fmt.Fprintf(&b, "| readstates final flush, SIGTERM to exit | %.2f | %s |\n", flushTime.Seconds(), rate(flushTime))
	if logOK {
		fmt.Fprintf(&b, "| readstates final flush, its log (\"final flush\" to \"final flush done\") | %.2f | %s |\n", logFlush.Seconds(), rate(logFlush))
	}
	fmt.Fprintf(&b, "| gocql, UNLOGGED batch per user (%d rows), %d in flight (ceiling) | %.2f | %s |\n", min(channels, 100), conc, batchTime.Seconds(), rate(batchTime))
	fmt.Fprintf(&b, "| gocql, single-row INSERT, %d in flight | %.2f | %s |\n", conc, singleTime.Seconds(), rate(singleTime))
	fmt.Fprintf(&b, "| gocql, single-row INSERT, 64 in flight | %.2f | %s |\n", single64Time.Seconds(), rate(single64Time))
	fmt.Fprintf(&b, "| gocql, the flush's former shape: 1,024 random rows a round, by user (%.2f rows a request), %d in flight | %.2f | %s |\n",
		float64(shapeRows)/float64(shapeReqs), conc, shapeTime.Seconds(), rate(shapeTime))
	fmt.Fprintf(&b, "\nreadstates / batch ceiling: %.2f; readstates / single-row: %.2f\n",
		batchTime.Seconds()/flushTime.Seconds(), singleTime.Seconds()/flushTime.Seconds())
	fmt.Fprintf(&b, "(making the %d read states dirty, RSINCR of new keys through read-through, %d clients: %.2f s, %s/s)\n",
		n, conc, loadTime.Seconds(), rate(loadTime))
	if raceEnabled {
		fmt.Fprintf(&b, "(the gocql generator ran with -race: its figures are low; rerun without -race)\n")
	}
	t.Log(b.String())
}

// benchServer is a server process started from a binary of its own.
type benchServer struct {
	cmd  *exec.Cmd
	done chan struct{}
	out  *logBuffer
	addr string
}

func startBenchServer(t *testing.T, bin string, args ...string) *benchServer {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(args, "--data-dir") { // not the working directory's data/
		args = append(args, "--data-dir", t.TempDir())
	}
	bs := &benchServer{out: &logBuffer{}, done: make(chan struct{}), addr: "127.0.0.1:" + port}
	bs.cmd = exec.Command(bin, append([]string{"--addr", bs.addr}, args...)...)
	bs.cmd.Env = serverEnv()
	bs.cmd.Stdout, bs.cmd.Stderr = bs.out, bs.out
	bs.cmd.SysProcAttr = childAttr()
	if err := bs.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { _ = bs.cmd.Wait(); close(bs.done) }()
	t.Cleanup(func() {
		select {
		case <-bs.done:
		default:
			_ = bs.cmd.Process.Kill()
			<-bs.done
		}
		if t.Failed() {
			t.Logf("server log:\n%s", bs.out.String())
		}
	})
	deadline := time.Now().Add(time.Minute)
	for pingOnce(bs.addr) != nil {
		select {
		case <-bs.done:
			t.Fatalf("server exited before it was ready:\n%s", bs.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not ready after a minute:\n%s", bs.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return bs
}

// flushDuration is the time between the server's "final flush" and "final
// flush done" log lines (text format: time=RFC3339 ... msg="...").
func flushDuration(log string) (time.Duration, bool) {
	var from, to time.Time
	for _, line := range strings.Split(log, "\n") {
		var when *time.Time
		switch {
		case strings.Contains(line, `msg="final flush done"`):
			when = &to
		case strings.Contains(line, `msg="final flush"`):
			when = &from
		default:
			continue
		}
		v, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		ts, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return 0, false
		}
		*when = ts
	}
	if from.IsZero() || to.IsZero() {
		return 0, false
	}
	return to.Sub(from), true
}
