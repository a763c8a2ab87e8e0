//go:build cassandra

package tests

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/redis/go-redis/v9"
)

// Helpers of the end-to-end tests against a real Cassandra node (build tag
// cassandra). The node is the one of scripts/cassandra/cassandra.sh:
//   - READSTATES_CASSANDRA_HOSTS: its contact points (default 127.0.0.1:9042);
//   - READSTATES_CASSANDRA_SCRIPT: the script that starts and stops it
//     (default scripts/cassandra/cassandra.sh of this repository).
//
// Every test works in a keyspace of its own, created by the server and
// dropped when the test ends.

func cassandraHosts() string {
	return cmp.Or(os.Getenv("READSTATES_CASSANDRA_HOSTS"), "127.0.0.1:9042")
}

func cassandraScript(t testing.TB) string {
	t.Helper()
	if s := os.Getenv("READSTATES_CASSANDRA_SCRIPT"); s != "" {
		return s
	}
	// go test runs in the package directory, tests/.
	p, err := filepath.Abs(filepath.Join("..", "scripts", "cassandra", "cassandra.sh"))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// cassandraCtl runs the node's control script with one action (start,
// stop, status, ...) and returns its output and exit code.
func cassandraCtl(t testing.TB, action string, timeout time.Duration) (string, int, error) {
	t.Helper()
	return cassandraCtlEnv(t, nil, action, timeout)
}

// cassandraCtlEnv is cassandraCtl with env ("NAME=value", e.g.
// CASSANDRA_COMMITLOG_SYNC=batch) added to this process's environment.
func cassandraCtlEnv(t testing.TB, env []string, action string, timeout time.Duration) (string, int, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", cassandraScript(t), action)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	code := 0
	if ee, ok := errors.AsType[*exec.ExitError](err); ok {
		code, err = ee.ExitCode(), nil
	}
	if ctx.Err() != nil {
		err = fmt.Errorf("cassandra.sh %s: no result after %v", action, timeout)
	}
	return strings.TrimSpace(string(out)), code, err
}

// requireCassandra makes sure the node is up and answering CQL, starting it
// (idempotent) if it is not.
func requireCassandra(t testing.TB) {
	t.Helper()
	out, code, err := cassandraCtl(t, "status", 30*time.Second)
	if err == nil && code == 0 {
		return
	}
	t.Logf("cassandra.sh status: %q (exit %d, %v); starting the node", out, code, err)
	out, code, err = cassandraCtl(t, "start", 5*time.Minute)
	if err != nil || code != 0 {
		t.Fatalf("cassandra.sh start: exit %d, %v:\n%s", code, err, out)
	}
}

// cassandraSession opens a plain gocql session on the node (no keyspace),
// for reading rows directly and for dropping keyspaces.
func cassandraSession(t testing.TB) (*gocql.Session, error) {
	t.Helper()
	cl := gocql.NewCluster(strings.Split(cassandraHosts(), ",")...)
	cl.ProtoVersion = 4
	cl.Consistency = gocql.One
	cl.Timeout = 20 * time.Second
	cl.WriteTimeout = 20 * time.Second
	cl.ConnectTimeout = 10 * time.Second
	cl.ReconnectInterval = time.Second
	cl.NumConns = 2
	cl.RetryPolicy = &gocql.SimpleRetryPolicy{NumRetries: 2}
	cl.Logger = quietGocql{}
	return cl.CreateSession()
}

// quietGocql drops gocql's own log lines (reconnect noise while a node is
// down); the tests report what matters themselves.
type quietGocql struct{}

func (quietGocql) Print(...any)          {}
func (quietGocql) Printf(string, ...any) {}
func (quietGocql) Println(...any)        {}

// cassandraKeyspace is a fresh keyspace name; the keyspace itself is
// created by the server at its start, and dropped when the test ends.
func cassandraKeyspace(t testing.TB) string {
	t.Helper()
	ks := fmt.Sprintf("readstates_e2e_%016x", rand.Uint64())
	t.Cleanup(func() { dropKeyspace(t, ks) })
	return ks
}

func dropKeyspace(t testing.TB, ks string) {
	var last error
	for attempt := 1; attempt <= 3; attempt++ {
		s, err := cassandraSession(t)
		if err == nil {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			// A drop on a loaded node can outlast the query timeout and
			// still go through; IF EXISTS makes a second one harmless.
			err = s.Query("DROP KEYSPACE IF EXISTS " + ks).WithContext(ctx).Exec()
			cancel()
			s.Close()
			if err == nil {
				return
			}
		}
		last = err
		time.Sleep(time.Second)
	}
	t.Errorf("drop keyspace %s: %v", ks, last)
}

// cassandraRows reads every row of <ks>.read_states directly.
func cassandraRows(t testing.TB, ks string) map[[2]int64]state {
	t.Helper()
	s, err := cassandraSession(t)
	if err != nil {
		t.Fatalf("gocql session: %v", err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rows := map[[2]int64]state{}
	iter := s.Query("SELECT user_id, channel_id, mention_count, last_message_id FROM " + ks + ".read_states").
		WithContext(ctx).PageSize(5000).Iter()
	var (
		u, c, msg int64
		mc        int32
	)
	for iter.Scan(&u, &c, &mc, &msg) {
		rows[[2]int64{u, c}] = state{int64(mc), msg}
	}
	if err := iter.Close(); err != nil {
		t.Fatalf("reading %s.read_states: %v", ks, err)
	}
	return rows
}

// compareRows checks the rows read from Cassandra against the model: every
// key of want (and of zeros, which must read as the zero state) has its
// row, or no row if its state is zero; and no other row holds anything.
func compareRows(t testing.TB, rows map[[2]int64]state, want model, zeros [][2]int64, when string) {
	t.Helper()
	bad := 0
	report := func(format string, args ...any) {
		if bad++; bad <= 10 {
			t.Errorf(when+": "+format, args...)
		}
	}
	for k, w := range want {
		if got := rows[k]; got != w {
			report("row (%d, %d): got %+v, want %+v (a missing row is the zero state)", k[0], k[1], got, w)
		}
	}
	for _, k := range zeros {
		if _, ok := want[k]; ok {
			continue
		}
		if got := rows[k]; got != (state{}) {
			report("row (%d, %d) of a refused change: got %+v, want no row or the zero state", k[0], k[1], got)
		}
	}
	for k, got := range rows {
		if _, ok := want[k]; !ok && got != (state{}) {
			report("row (%d, %d) = %+v that no acknowledged change wrote", k[0], k[1], got)
		}
	}
	if bad > 10 {
		t.Errorf("%s: %d rows wrong in all (%d rows read, %d read states in the model)", when, bad, len(rows), len(want))
	}
}

// startCassandraServer starts the server on Cassandra in keyspace ks.
func startCassandraServer(t *testing.T, ks string, args ...string) *serverProc {
	t.Helper()
	all := append([]string{
		"--cassandra-hosts", cassandraHosts(),
		"--cassandra-keyspace", ks,
		// Creating a keyspace on a busy 2-core node can take seconds.
		"--cassandra-startup-wait", "60s",
		"--shutdown-timeout", "2m",
	}, args...)
	return startServer(t, all...)
}

// longCtx is a context for a whole test, longer than testCtx's 2 minutes.
func longCtx(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// replyKind classifies a command's outcome.
type replyKind int

const (
	replyOK             replyKind = iota
	replyBacklogFull              // TRYAGAIN write-behind backlog full
	replyStoreDown                // TRYAGAIN read state store unavailable
	replyOtherTryAgain            // another TRYAGAIN (e.g. shutting down)
	replyOtherRedisErr            // an error reply that is not TRYAGAIN
	replyTransportError           // no reply: the outcome is unknown
)

func classifyReply(err error) replyKind {
	if err == nil {
		return replyOK
	}
	var re redis.Error
	if !errors.As(err, &re) {
		return replyTransportError
	}
	switch msg := re.Error(); {
	case strings.HasPrefix(msg, "TRYAGAIN write-behind backlog full"):
		return replyBacklogFull
	case strings.HasPrefix(msg, "TRYAGAIN read state store unavailable"):
		return replyStoreDown
	case strings.HasPrefix(msg, "TRYAGAIN"):
		return replyOtherTryAgain
	default:
		return replyOtherRedisErr
	}
}

func (k replyKind) refused() bool {
	return k == replyBacklogFull || k == replyStoreDown || k == replyOtherTryAgain
}

// refusals counts TRYAGAIN replies by kind.
type refusals struct{ full, down, other atomic.Int64 }

func (r *refusals) add(k replyKind) {
	switch k {
	case replyBacklogFull:
		r.full.Add(1)
	case replyStoreDown:
		r.down.Add(1)
	case replyOtherTryAgain:
		r.other.Add(1)
	}
}

func (r *refusals) total() int64 { return r.full.Load() + r.down.Load() + r.other.Load() }

func (r *refusals) String() string {
	return fmt.Sprintf("%d TRYAGAIN (%d backlog full, %d store unavailable, %d other)",
		r.total(), r.full.Load(), r.down.Load(), r.other.Load())
}

// hotCounter counts the acknowledged RSINCR +1 of keys shared by clients:
// their final mention_count is the sum.
type hotCounter struct {
	mu sync.Mutex
	n  map[[2]int64]int64
}

// sendOps runs ops in pipelines of batch commands over c. A reply to an
// own key (not in hot) is checked against m, which is updated with
// acknowledged changes only: a TRYAGAIN'd op changed nothing, and the
// server runs one connection's commands in order, so the model stays
// exact. Ops on hot keys must be RSINCR +1; their acknowledgements are
// counted. Ops refused with TRYAGAIN are returned, to be sent again later.
func sendOps(ctx context.Context, c *redis.Client, m model, hot *hotCounter, ops []op, batch int, ref *refusals) ([]op, error) {
	var again []op
	for len(ops) > 0 {
		n := min(batch, len(ops))
		pipe := c.Pipeline()
		cmds := make([]*redis.Cmd, n)
		for i, o := range ops[:n] {
			switch {
			case o.incr:
				cmds[i] = pipe.Do(ctx, "RSINCR", o.u, o.c, o.arg)
			case o.hasMessage:
				cmds[i] = pipe.Do(ctx, "RSRESET", o.u, o.c, o.arg)
			default:
				cmds[i] = pipe.Do(ctx, "RSRESET", o.u, o.c)
			}
		}
		_, _ = pipe.Exec(ctx) // errors are per command
		for i, cmd := range cmds {
			o := ops[i]
			got, err := cmd.Int64()
			kind := classifyReply(err)
			if kind.refused() {
				ref.add(kind)
				again = append(again, o)
				continue
			}
			if kind != replyOK {
				return again, fmt.Errorf("%v: %w", cmd.Args(), err)
			}
			k := [2]int64{o.u, o.c}
			if hot != nil {
				hot.mu.Lock()
				cnt, isHot := hot.n[k]
				if isHot {
					hot.n[k] = cnt + 1
				}
				hot.mu.Unlock()
				if isHot {
					if !o.incr || o.arg != 1 || got < 1 {
						return again, fmt.Errorf("%v on a shared key: got %d", cmd.Args(), got)
					}
					continue
				}
			}
			var want int64
			switch {
			case o.incr:
				var ok bool
				if want, ok = m.incr(o.u, o.c, o.arg); !ok {
					return again, fmt.Errorf("test bug: %+v overflows", o)
				}
			case o.hasMessage:
				want = m.reset(o.u, o.c, &o.arg)
			default:
				want = m.reset(o.u, o.c, nil)
			}
			if got != want {
				return again, fmt.Errorf("%v: got %d, want %d", cmd.Args(), got, want)
			}
		}
		ops = ops[n:]
	}
	return again, nil
}

// verifyAll reads the read states of want (and zeros, which must read as
// the zero state) with RSMGET per user, over several connections at once.
// Mismatches are test errors; a failed command fails the test.
func verifyAll(t *testing.T, ctx context.Context, sp *serverProc, want model, zeros [][2]int64, when string) {
	t.Helper()
	byUser := map[int64][]int64{}
	seen := map[[2]int64]bool{}
	add := func(k [2]int64) {
		if !seen[k] {
			seen[k] = true
			byUser[k[0]] = append(byUser[k[0]], k[1])
		}
	}
	for k := range want {
		add(k)
	}
	for _, k := range zeros {
		add(k)
	}
	type req struct {
		u   int64
		chs []int64
	}
	var reqs []req
	for u, chs := range byUser {
		slices.Sort(chs)
		for len(chs) > 0 {
			n := min(100, len(chs))
			reqs = append(reqs, req{u, chs[:n]})
			chs = chs[n:]
		}
	}
	const workers, batch = 8, 16
	var (
		wg   sync.WaitGroup
		next atomic.Int64
		bad  atomic.Int64
	)
	for range workers {
		c := sp.goRedis(t, 3, func(o *redis.Options) { o.PoolSize = 1 })
		wg.Go(func() {
			for {
				lo := int(next.Add(batch)) - batch
				if lo >= len(reqs) {
					return
				}
				part := reqs[lo:min(lo+batch, len(reqs))]
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
					if err != nil {
						t.Errorf("%s: RSMGET %d (%d channels): %v", when, r.u, len(r.chs), err)
						bad.Add(1)
						return
					}
					got, err := asStates(v)
					if err != nil || len(got) != len(r.chs) {
						t.Errorf("%s: RSMGET %d (%d channels): got %v, %v", when, r.u, len(r.chs), v, err)
						bad.Add(1)
						return
					}
					for j, ch := range r.chs {
						if w := want[[2]int64{r.u, ch}]; got[j] != w {
							if bad.Add(1) <= 10 {
								t.Errorf("%s: read state (%d, %d): got %+v, want %+v", when, r.u, ch, got[j], w)
							}
						}
					}
				}
			}
		})
	}
	wg.Wait()
	if n := bad.Load(); n > 10 {
		t.Errorf("%s: %d read states wrong in all, of %d", when, n, len(seen))
	}
}

// waitDrained polls INFO until nothing is dirty or pending, and returns
// the last persistence fields.
func waitDrained(t *testing.T, ctx context.Context, c *redis.Client, timeout time.Duration) map[string]string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f := infoFields(t, ctx, c, "persistence")
		dirty, ok1 := infoInt(t, f, "dirty_read_states")
		pending, ok2 := infoInt(t, f, "pending_read_states")
		if !ok1 || !ok2 {
			t.Fatalf("INFO persistence has no dirty_read_states/pending_read_states: %v", f)
		}
		if dirty == 0 && pending == 0 {
			return f
		}
		if time.Now().After(deadline) {
			t.Fatalf("write-behind not drained %v after the load stopped: %v", timeout, f)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// logInfo logs the engine's figures from INFO.
func logInfo(t *testing.T, f map[string]string, when string) {
	t.Helper()
	var b strings.Builder
	for _, k := range []string{
		"cache_capacity", "cached_read_states", "keyspace_hits", "keyspace_misses", "evicted_keys",
		"dirty_read_states", "pending_read_states", "pinned_refusals_total", "oldest_pending_seconds",
		"flush_cycles", "store_writes", "store_write_errors", "store_write_retries", "store_loads", "store_load_errors",
		"store_user_loads", "misses_without_load",
	} {
		if v, ok := f[k]; ok {
			fmt.Fprintf(&b, " %s=%s", k, v)
		}
	}
	t.Logf("INFO %s:%s", when, b.String())
}
