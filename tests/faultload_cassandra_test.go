//go:build cassandra

package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// mixedLoad is the steady load of the fault tests: workers send RSINCR,
// RSRESET and RSGET at random over read states of their own, either a few
// used often ("hot" workers: their read states stay in the cache) or many
// used rarely ("cold" workers: more read states than the cache holds, so
// they are evicted, written, and read back through the store all the
// time). Hot and cold are separate connections, so that hot commands are
// not queued behind misses waiting for the database. A probe reads read
// states that are only read, and times those cache hits.
//
// Each worker keeps a model of its read states, changed only by
// acknowledged changes: a TRYAGAIN changed nothing (the server's promise,
// checked at the end), and a command without a reply (transport error)
// may or may not have been applied, so its read state is set aside (the
// worker stops using it and either outcome is accepted). It also keeps
// every acknowledged change with the time of its reply, to measure what a
// crash lost.
type mixedLoad struct {
	t   *testing.T
	cfg loadConfig

	phase      atomic.Int32
	stopped    atomic.Bool
	serverGone atomic.Bool // set before the server is stopped or killed on purpose
	wg         sync.WaitGroup

	ws    []*loadWorker // the workers, then the probe
	probe *loadWorker

	hot, cold, probes []phaseCounts // by phase
	hitLat, coldLat   latencies     // probe RSGET; cold commands (any outcome), by phase
	ref               refusals
}

type loadConfig struct {
	hotWorkers, coldWorkers int
	hot                     int // read states of a hot worker
	cold                    int // read states of a cold worker
	probes                  int // read states the probe reads
	userBase                int64
	pace                    time.Duration // pause after each command of a worker or the probe
	phases                  []string      // names; the load starts in the first
}

// phaseCounts counts replies in one phase.
type phaseCounts struct {
	ok, refused, noReply atomic.Int64
	lastRefused          atomic.Int64 // unix nanoseconds of the last TRYAGAIN
}

func (c *phaseCounts) String() string {
	return fmt.Sprintf("%d ok, %d TRYAGAIN, %d no reply", c.ok.Load(), c.refused.Load(), c.noReply.Load())
}

type loadWorker struct {
	id    int
	cold  bool
	keys  [][2]int64 // in use: not set aside
	m     model
	hist  map[[2]int64][]ackedState // every acknowledged change, in order
	maybe map[[2]int64]state        // sent without a reply: the state if it was applied
}

type ackedState struct {
	st state
	at time.Time // when the reply arrived
}

// defaultLoad: 3 hot workers over 150 read states each, 4 cold workers
// over 2,500 each, and the probe over 50: ~10,500 read states for a cache
// of 2,000 entries.
func defaultLoad(userBase int64, phases ...string) loadConfig {
	return loadConfig{hotWorkers: 3, coldWorkers: 4, hot: 150, cold: 2500, probes: 50, userBase: userBase,
		pace: time.Millisecond, phases: phases}
}

// startMixedLoad writes the probe's read states, then starts the workers
// and the probe on sp. stop (also run when the test ends) stops them.
func startMixedLoad(t *testing.T, ctx context.Context, sp *serverProc, cfg loadConfig) *mixedLoad {
	t.Helper()
	n := len(cfg.phases)
	l := &mixedLoad{t: t, cfg: cfg, hot: make([]phaseCounts, n), cold: make([]phaseCounts, n), probes: make([]phaseCounts, n)}
	newWorker := func(id int) *loadWorker {
		return &loadWorker{id: id, m: model{}, hist: map[[2]int64][]ackedState{}, maybe: map[[2]int64]state{}}
	}
	workers := cfg.hotWorkers + cfg.coldWorkers
	for w := range workers {
		wr := newWorker(w)
		base := cfg.userBase + int64(w)*1_000_000
		if wr.cold = w >= cfg.hotWorkers; wr.cold {
			for i := range int64(cfg.cold) {
				wr.keys = append(wr.keys, [2]int64{base + i/20, 2_000_000 + i%20})
			}
		} else {
			for i := range int64(cfg.hot) {
				wr.keys = append(wr.keys, [2]int64{base + i/10, 1_000_000 + i%10})
			}
		}
		l.ws = append(l.ws, wr)
	}
	l.probe = newWorker(workers)
	var ops []op
	for i := range int64(cfg.probes) {
		k := [2]int64{cfg.userBase + 999_000_000 + i/10, 3_000_000 + i%10}
		l.probe.keys = append(l.probe.keys, k)
		ops = append(ops, op{u: k[0], c: k[1], arg: 7_000_000 + i, hasMessage: true}, op{incr: true, u: k[0], c: k[1], arg: 1 + i})
	}
	apply(t, ctx, sp.goRedis(t, 3), l.probe.m, ops, 100)
	now := time.Now()
	for k, s := range l.probe.m {
		l.probe.hist[k] = []ackedState{{s, now}}
	}
	l.ws = append(l.ws, l.probe)

	seed := rand.Uint64()
	t.Logf("load seed %d", seed)
	for _, wr := range l.ws[:workers] {
		c := sp.goRedis(t, 2+wr.id%2, func(o *redis.Options) { o.PoolSize = 1 })
		l.wg.Go(func() { l.runWorker(ctx, c, wr, rand.New(rand.NewPCG(seed, uint64(wr.id)))) })
	}
	c := sp.goRedis(t, 3, func(o *redis.Options) { o.PoolSize = 1 })
	l.wg.Go(func() { l.runProbe(ctx, c) })
	t.Cleanup(l.stop)
	return l
}

func (l *mixedLoad) setPhase(name string) {
	i := slices.Index(l.cfg.phases, name)
	if i < 0 {
		panic("test bug: no phase " + name)
	}
	l.phase.Store(int32(i))
}

func (l *mixedLoad) phaseName() string { return l.cfg.phases[l.phase.Load()] }

// stop stops the load and waits for it (idempotent).
func (l *mixedLoad) stop() {
	l.stopped.Store(true)
	l.wg.Wait()
}

// fail reports a failure of the load and stops it.
func (l *mixedLoad) fail(format string, args ...any) {
	l.t.Errorf(format, args...)
	l.stopped.Store(true)
}

// next applies an acknowledged op to s: the new state and the reply.
func next(s state, o op) (state, int64) {
	if o.incr {
		s.mentions = max(s.mentions+o.arg, 0)
		return s, s.mentions
	}
	before := s.mentions
	s.mentions = 0
	if o.hasMessage {
		s.lastMsg = o.arg
	}
	return s, before
}

func (l *mixedLoad) runWorker(ctx context.Context, c *redis.Client, wr *loadWorker, rng *rand.Rand) {
	counts := l.hot
	if wr.cold {
		counts = l.cold
	}
	for !l.stopped.Load() && len(wr.keys) > 0 {
		i := rng.IntN(len(wr.keys))
		k := wr.keys[i]
		o := op{u: k[0], c: k[1]}
		read := false
		var args []any
		switch r := rng.IntN(20); {
		case r < 9:
			o.incr, o.arg = true, int64(rng.IntN(14)-3) // -3..10: counts often clamp at 0
			args = []any{"RSINCR", o.u, o.c, o.arg}
		case r < 11:
			args = []any{"RSRESET", o.u, o.c}
		case r < 13:
			o.hasMessage, o.arg = true, rng.Int64N(1<<62)
			args = []any{"RSRESET", o.u, o.c, o.arg}
		default:
			read = true
			args = []any{"RSGET", o.u, o.c}
		}
		p := l.phase.Load()
		t0 := time.Now()
		cmd := c.Do(ctx, args...)
		at := time.Now()
		if wr.cold {
			l.coldLat.add(l.cfg.phases[p], at.Sub(t0))
		}
		switch kind := classifyReply(cmd.Err()); {
		case kind == replyOK:
			cur := wr.m[k]
			if read {
				got, err := cmd.Int64Slice()
				if err != nil || !slices.Equal(got, []int64{cur.mentions, cur.lastMsg}) {
					l.fail("worker %d: %v (%s): got %v, %v, want %+v", wr.id, args, l.cfg.phases[p], got, err, cur)
					return
				}
			} else {
				st, want := next(cur, o)
				got, err := cmd.Int64()
				if err != nil || got != want {
					l.fail("worker %d: %v (%s): got %d, %v, want %d", wr.id, args, l.cfg.phases[p], got, err, want)
					return
				}
				wr.m[k] = st
				wr.hist[k] = append(wr.hist[k], ackedState{st, at})
			}
			counts[p].ok.Add(1)
		case kind.refused():
			l.ref.add(kind)
			counts[p].refused.Add(1)
			counts[p].lastRefused.Store(at.UnixNano())
		case kind == replyTransportError:
			counts[p].noReply.Add(1)
			if !read {
				// Applied or not: either is right. The read state is set
				// aside, so that the model stays exact.
				wr.maybe[k], _ = next(wr.m[k], o)
				wr.keys[i] = wr.keys[len(wr.keys)-1]
				wr.keys = wr.keys[:len(wr.keys)-1]
			}
			if !l.serverGone.Load() {
				l.fail("worker %d: %v (%s): no reply: %v", wr.id, args, l.cfg.phases[p], cmd.Err())
			}
			return
		default:
			l.fail("worker %d: %v (%s): %v", wr.id, args, l.cfg.phases[p], cmd.Err())
			return
		}
		time.Sleep(l.cfg.pace)
	}
}

// runProbe reads the probe's read states in turn: cache hits, timed.
func (l *mixedLoad) runProbe(ctx context.Context, c *redis.Client) {
	pr := l.probe
	for i := 0; !l.stopped.Load(); i++ {
		k := pr.keys[i%len(pr.keys)]
		p := l.phase.Load()
		t0 := time.Now()
		got, err := c.Do(ctx, "RSGET", k[0], k[1]).Int64Slice()
		d := time.Since(t0)
		switch kind := classifyReply(err); {
		case kind == replyOK:
			if want := pr.m[k]; !slices.Equal(got, []int64{want.mentions, want.lastMsg}) {
				l.fail("probe: RSGET %v (%s): got %v, want %+v", k, l.cfg.phases[p], got, want)
				return
			}
			l.hitLat.add(l.cfg.phases[p], d)
			l.probes[p].ok.Add(1)
		case kind.refused():
			l.ref.add(kind)
			l.probes[p].refused.Add(1)
		case kind == replyTransportError && l.serverGone.Load():
			return
		default:
			l.fail("probe: RSGET %v (%s): %v", k, l.cfg.phases[p], err)
			return
		}
		time.Sleep(l.cfg.pace)
	}
}

// waitColdOK waits until n cold commands were acknowledged in phase.
func (l *mixedLoad) waitColdOK(phase string, n int64, timeout time.Duration) bool {
	p := slices.Index(l.cfg.phases, phase)
	deadline := time.Now().Add(timeout)
	for l.cold[p].ok.Load() < n {
		if time.Now().After(deadline) || l.stopped.Load() {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// lastColdRefusal says when, after since, the last cold command of phase
// was refused.
func (l *mixedLoad) lastColdRefusal(phase string, since time.Time) string {
	last := l.cold[slices.Index(l.cfg.phases, phase)].lastRefused.Load()
	if last == 0 {
		return "no cold command refused after it"
	}
	return fmt.Sprintf("the last cold command refused %v after it", time.Unix(0, last).Sub(since).Round(10*time.Millisecond))
}

// logPhases logs the replies and latencies of every phase.
func (l *mixedLoad) logPhases(t *testing.T, prefix string) {
	t.Helper()
	for p, name := range l.cfg.phases {
		t.Logf("FIGURE: %s %-9s hot: %s; cold: %s; probe: %s", prefix, name, &l.hot[p], &l.cold[p], &l.probes[p])
	}
	for _, name := range l.cfg.phases {
		t.Logf("FIGURE: %s %-9s cache-hit RSGET latency: %s", prefix, name, l.hitLat.summary(name))
	}
	for _, name := range l.cfg.phases {
		t.Logf("FIGURE: %s %-9s cold-key command latency (hit or miss, any reply): %s", prefix, name, l.coldLat.summary(name))
	}
	t.Logf("FIGURE: %s %s", prefix, l.ref.String())
}

// keys is every read state the load used.
func (l *mixedLoad) keys() [][2]int64 {
	var out [][2]int64
	for _, wr := range l.ws {
		out = append(out, l.keysOf(wr)...)
	}
	return out
}

// acked counts the acknowledged changes.
func (l *mixedLoad) acked() (n int) {
	for _, wr := range l.ws {
		for _, h := range wr.hist {
			n += len(h)
		}
	}
	return n
}

// checkNoLoss: got (a missing key is the zero state) holds every
// acknowledged change. If complete, got is everything stored (the rows of
// the table), and nothing else may hold a state.
func (l *mixedLoad) checkNoLoss(t *testing.T, got map[[2]int64]state, complete bool, when string) int {
	t.Helper()
	bad := 0
	report := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(when+": "+format, args...)
		}
	}
	mine := map[[2]int64]bool{}
	for _, wr := range l.ws {
		for _, k := range l.keysOf(wr) {
			mine[k] = true
			g := got[k]
			if g == wr.m[k] {
				continue
			}
			if m, ok := wr.maybe[k]; ok && g == m {
				continue
			}
			h := wr.hist[k]
			if i := lastIndexOf(h, g); i >= 0 || g == (state{}) {
				report("read state %v: got %+v, an older state: %d acknowledged changes lost (the newest %+v, acknowledged %v)",
					k, g, len(h)-1-i, wr.m[k], h[len(h)-1].at.Format("15:04:05.000"))
			} else {
				report("read state %v: got %+v, which no acknowledged change made (want %+v)", k, g, wr.m[k])
			}
		}
	}
	if complete {
		for k, g := range got {
			if !mine[k] && g != (state{}) {
				report("read state %v = %+v, which the load never wrote", k, g)
			}
		}
	}
	if bad > 10 {
		t.Errorf("%s: %d read states wrong in all", when, bad)
	}
	return bad
}

func (l *mixedLoad) keysOf(wr *loadWorker) [][2]int64 {
	var ks [][2]int64
	for k := range wr.hist {
		ks = append(ks, k)
	}
	for k := range wr.maybe {
		if _, ok := wr.hist[k]; !ok {
			ks = append(ks, k)
		}
	}
	return ks
}

// lastIndexOf is the index of the newest acknowledged state equal to s.
func lastIndexOf(h []ackedState, s state) int {
	for i := len(h) - 1; i >= 0; i-- {
		if h[i].st == s {
			return i
		}
	}
	return -1
}

// crashLoss is what a crash at killAt lost of the acknowledged changes.
type crashLoss struct {
	acked, ackedLastSecond  int
	lostChanges, lostStates int
	lostLastSecond          int
	oldestLost              time.Duration // age at killAt of the oldest lost change
	overBound               int
}

// measureLoss compares got (read after the crash) with the history: each
// read state must be one the load acknowledged (or the zero state, or
// the unanswered change's); the changes acknowledged after it are lost.
// Lost changes older than bound are test errors.
func (l *mixedLoad) measureLoss(t *testing.T, got map[[2]int64]state, killAt time.Time, bound time.Duration) crashLoss {
	t.Helper()
	var cl crashLoss
	for _, wr := range l.ws {
		for _, k := range l.keysOf(wr) {
			h := wr.hist[k]
			cl.acked += len(h)
			for _, a := range h {
				if killAt.Sub(a.at) <= time.Second {
					cl.ackedLastSecond++
				}
			}
			g := got[k]
			if m, ok := wr.maybe[k]; ok && g == m {
				continue
			}
			i := lastIndexOf(h, g)
			if i < 0 && g != (state{}) {
				t.Errorf("read state %v after the crash: got %+v, which no acknowledged change made (newest %+v)", k, g, wr.m[k])
				continue
			}
			if i == len(h)-1 {
				continue
			}
			cl.lostStates++
			for _, a := range h[i+1:] {
				cl.lostChanges++
				if killAt.Sub(a.at) <= time.Second {
					cl.lostLastSecond++
				}
			}
			age := killAt.Sub(h[i+1].at)
			cl.oldestLost = max(cl.oldestLost, age)
			if age > bound {
				if cl.overBound++; cl.overBound <= 10 {
					t.Errorf("read state %v: a change acknowledged %v before the crash is lost (got %+v, want %+v; bound %v)",
						k, age.Round(time.Millisecond), g, wr.m[k], bound)
				}
			}
		}
	}
	return cl
}

// readAll reads every read state of the load through sp: RSMGET per
// user, 4 connections, 32 users a pipeline. Read-through on a node busy
// after a fault can time out: a TRYAGAIN is retried (up to 20 times, 0.5 s
// apart); any other error fails the test.
func (l *mixedLoad) readAll(t *testing.T, ctx context.Context, sp *serverProc) map[[2]int64]state {
	t.Helper()
	byUser := map[int64][]int64{}
	for _, k := range l.keys() {
		byUser[k[0]] = append(byUser[k[0]], k[1])
	}
	type req struct {
		u   int64
		chs []int64
	}
	var todo []req
	for u, chs := range byUser {
		slices.Sort(chs)
		todo = append(todo, req{u, slices.Compact(chs)})
	}
	var (
		mu      sync.Mutex
		out     = map[[2]int64]state{}
		retries int
	)
	for round := 0; len(todo) > 0; round++ {
		if round == 20 {
			t.Fatalf("reading back: %d users still refused with TRYAGAIN after %d rounds", len(todo), round)
		}
		if round > 0 {
			time.Sleep(500 * time.Millisecond)
		}
		var (
			again []req
			next  atomic.Int64
			wg    sync.WaitGroup
		)
		const workers, batch = 4, 32
		for range workers {
			c := sp.goRedis(t, 3, func(o *redis.Options) { o.PoolSize = 1 })
			wg.Go(func() {
				for {
					lo := int(next.Add(batch)) - batch
					if lo >= len(todo) {
						return
					}
					part := todo[lo:min(lo+batch, len(todo))]
					pipe := c.Pipeline()
					cmds := make([]*redis.Cmd, len(part))
					for i, r := range part {
						args := []any{"RSMGET", r.u}
						for _, ch := range r.chs {
							args = append(args, ch)
						}
						cmds[i] = pipe.Do(ctx, args...)
					}
					_, _ = pipe.Exec(ctx)
					for i, r := range part {
						v, err := cmds[i].Result()
						if kind := classifyReply(err); kind.refused() {
							mu.Lock()
							again = append(again, r)
							retries++
							mu.Unlock()
							continue
						} else if kind != replyOK {
							t.Errorf("reading back: RSMGET %d (%d channels): %v", r.u, len(r.chs), err)
							return
						}
						sts, err := asStates(v)
						if err != nil || len(sts) != len(r.chs) {
							t.Errorf("reading back: RSMGET %d (%d channels): got %v, %v", r.u, len(r.chs), v, err)
							return
						}
						mu.Lock()
						for j, ch := range r.chs {
							out[[2]int64{r.u, ch}] = sts[j]
						}
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		if t.Failed() {
			t.FailNow()
		}
		todo = again
	}
	if retries > 0 {
		t.Logf("reading back: %d RSMGETs refused with TRYAGAIN and sent again", retries)
	}
	return out
}

var commitlogSyncRE = regexp.MustCompile(`commitlog_sync (periodic|batch|group)\b`)

// cassandraCommitlogSync is the commitlog_sync mode of the running node,
// as cassandra.sh status reports it ("" if it does not say).
func cassandraCommitlogSync(t testing.TB) string {
	t.Helper()
	out, _, _ := cassandraCtl(t, "status", 30*time.Second)
	if m := commitlogSyncRE.FindStringSubmatch(out); m != nil {
		return m[1]
	}
	return ""
}

// nodeCommitlogDurable makes sure the node acknowledges a write only once
// its commit log is synced (commitlog_sync batch or group), so that kill
// -9 of the node loses nothing it acknowledged: with the default periodic
// mode the node itself loses up to 10 s of acknowledged writes, which no
// client can make up for. A periodic node is restarted in batch mode.
// It returns the environment that starts the node in its original mode;
// when the test ends the node is restarted that way if it is not in it.
func nodeCommitlogDurable(t *testing.T) (mode string, restore []string) {
	t.Helper()
	orig := cassandraCommitlogSync(t)
	if orig == "" {
		t.Fatalf("cassandra.sh status does not report the node's commitlog_sync")
	}
	restore = []string{"CASSANDRA_COMMITLOG_SYNC=" + orig}
	t.Cleanup(func() {
		if cassandraCommitlogSync(t) == orig {
			return
		}
		start := time.Now()
		if out, code, err := cassandraCtlEnv(t, restore, "restart", 5*time.Minute); err != nil || code != 0 {
			t.Errorf("restarting the node in commitlog_sync %s: exit %d, %v:\n%s", orig, code, err, out)
			return
		}
		t.Logf("node restarted in its original commitlog_sync %s in %v", orig, time.Since(start).Round(time.Second))
	})
	if orig != "periodic" {
		return orig, restore
	}
	start := time.Now()
	if out, code, err := cassandraCtlEnv(t, []string{"CASSANDRA_COMMITLOG_SYNC=batch"}, "restart", 5*time.Minute); err != nil || code != 0 {
		t.Fatalf("restarting the node in commitlog_sync batch: exit %d, %v:\n%s", code, err, out)
	}
	if got := cassandraCommitlogSync(t); got != "batch" {
		t.Fatalf("node restarted with CASSANDRA_COMMITLOG_SYNC=batch reports commitlog_sync %q", got)
	}
	t.Logf("node restarted in commitlog_sync batch in %v (it was %s)", time.Since(start).Round(time.Second), orig)
	return "batch", restore
}

// ensureNodeUp starts the node (in the mode env says) unless it is up and
// not paused; for cleanups, before a server's final flush.
func ensureNodeUp(t *testing.T, env []string) {
	t.Helper()
	_, _, _ = cassandraCtl(t, "resume", 30*time.Second) // a paused node: SIGCONT (fails harmlessly otherwise)
	if _, code, err := cassandraCtl(t, "status", 30*time.Second); err == nil && code == 0 {
		return
	}
	if out, code, err := cassandraCtlEnv(t, env, "start", 5*time.Minute); err != nil || code != 0 {
		t.Errorf("starting the Cassandra node: exit %d, %v:\n%s", code, err, out)
	}
}
