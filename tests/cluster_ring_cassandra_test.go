//go:build cassandra

package tests

import (
	"context"
	"fmt"
	"maps"
	"net"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/redis/go-redis/v9"
)

// The cluster over a real Cassandra ring: three readstates nodes over a
// keyspace replicated to three Cassandra nodes (replication factor 3,
// reads, writes and lightweight transactions at LOCAL_QUORUM /
// LOCAL_SERIAL), and one Cassandra node killed with SIGKILL under load.
//
// The ring is the one of scripts/cassandra/cassandra.sh in ring mode:
//
//	CASSANDRA_NODES=3 CASSANDRA_RING_ADDRESSES=127.0.0.2,127.0.0.3,127.0.0.4 \
//		bash scripts/cassandra/cassandra.sh start
//	READSTATES_CASSANDRA_RING=127.0.0.2:9042,127.0.0.3:9042,127.0.0.4:9042 \
//		go test -tags cassandra -run ClusterRingCassandra ./tests/
//
// READSTATES_CASSANDRA_RING names the ring's nodes in the script's order
// (node1 first); the test finds a node's pid with the script (its pid
// file), under READSTATES_CASSANDRA_RING_DIR if the ring was started with
// CASSANDRA_RING_DIR set. Without READSTATES_CASSANDRA_RING it skips.

const ringReplication = "{'class': 'SimpleStrategy', 'replication_factor': 3}"

// cassandraRing is the ring's contact points, or a skip.
func cassandraRing(t *testing.T) []string {
	t.Helper()
	v := os.Getenv("READSTATES_CASSANDRA_RING")
	if v == "" {
		t.Skip("READSTATES_CASSANDRA_RING is not set (the hosts of a Cassandra ring: CASSANDRA_NODES=3 scripts/cassandra/cassandra.sh start)")
	}
	var hosts []string
	for _, h := range strings.Split(v, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) < 3 {
		t.Fatalf("READSTATES_CASSANDRA_RING=%q: replication factor 3 needs 3 nodes", v)
	}
	return hosts
}

// ringCtl runs the script's action on node (1-based) of the ring.
func ringCtl(t *testing.T, hosts []string, node int, action string, timeout time.Duration) (string, int, error) {
	t.Helper()
	addrs := make([]string, len(hosts))
	port := ""
	for i, h := range hosts {
		host, p, err := net.SplitHostPort(h)
		if err != nil {
			host, p = h, "9042"
		}
		addrs[i] = host
		if port == "" {
			port = p
		} else if p != port {
			t.Fatalf("the ring's nodes must share one CQL port (cassandra.sh): %v", hosts)
		}
	}
	env := []string{
		"CASSANDRA_NODES=" + strconv.Itoa(len(hosts)),
		"CASSANDRA_RING_ADDRESSES=" + strings.Join(addrs, ","),
		"CASSANDRA_PORT=" + port,
		"CASSANDRA_NODE=" + strconv.Itoa(node),
	}
	if d := os.Getenv("READSTATES_CASSANDRA_RING_DIR"); d != "" {
		env = append(env, "CASSANDRA_RING_DIR="+d)
	}
	return cassandraCtlEnv(t, env, action, timeout)
}

// ringPid is the pid of node's Cassandra process (from its pid file).
func ringPid(t *testing.T, hosts []string, node int) int {
	t.Helper()
	out, code, err := ringCtl(t, hosts, node, "pid", 30*time.Second)
	f := strings.Fields(out)
	if err != nil || code != 0 || len(f) == 0 {
		t.Fatalf("cassandra.sh pid of node %d: exit %d, %v: %q", node, code, err, out)
	}
	pid, err := strconv.Atoi(f[len(f)-1])
	if err != nil {
		t.Fatalf("cassandra.sh pid of node %d: %q", node, out)
	}
	return pid
}

// ringStart starts node (a no-op if it runs) and waits until the ring
// agrees it is up; it returns how long that took.
func ringStart(t *testing.T, hosts []string, node int) time.Duration {
	t.Helper()
	start := time.Now()
	if out, code, err := ringCtl(t, hosts, node, "start", 5*time.Minute); err != nil || code != 0 {
		t.Fatalf("cassandra.sh start of node %d: exit %d, %v:\n%s", node, code, err, out)
	}
	return time.Since(start)
}

// ringRows reads every row of <ks>.read_states at LOCAL_QUORUM: with no
// hinted handoff a node back from a kill misses what was written while it
// was down, and a quorum read is what the server itself relies on.
func ringRows(t *testing.T, ks string) map[[2]int64]state {
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
		WithContext(ctx).Consistency(gocql.LocalQuorum).PageSize(5000).Iter()
	var (
		u, c, msg int64
		mc        int32
	)
	for iter.Scan(&u, &c, &mc, &msg) {
		rows[[2]int64{u, c}] = state{int64(mc), msg}
	}
	if err := iter.Close(); err != nil {
		t.Fatalf("reading %s.read_states at LOCAL_QUORUM: %v", ks, err)
	}
	return rows
}

// checkRingRows compares the rows with what the load had acknowledged:
// every row holds its acknowledged increments, plus at most the
// unanswered ones. It returns the acknowledged increments missing.
func checkRingRows(t *testing.T, rows map[[2]int64]state, l *clusterLoad, when string) (lost int64) {
	t.Helper()
	bad := 0
	for k, want := range l.acked {
		got := rows[k].mentions
		if got >= want && got <= want+l.unknown[k] {
			continue
		}
		if got < want {
			lost += want - got
		}
		if bad++; bad <= 10 {
			t.Errorf("%s: row %d/%d holds %d, want %d acknowledged (+ up to %d unanswered)", when, k[0], k[1], got, want, l.unknown[k])
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d of %d rows wrong, %d acknowledged increments missing", when, bad, len(l.acked), lost)
	}
	return lost
}

// errSnapshot is a copy of the load's error counts.
func (l *clusterLoad) errSnapshot() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.errs)
}

func errDiff(after, before map[string]int) (map[string]int, int) {
	d, n := map[string]int{}, 0
	for k, v := range after {
		if v -= before[k]; v != 0 {
			d[k] = v
			n += v
		}
	}
	return d, n
}

// errLog is a hook of the load's cluster client: the errors it returned
// (after its own redirects and retries), by message with numbers blanked,
// and when the first and the last came.
type errLog struct {
	mu          sync.Mutex
	n           map[string]int
	first, last time.Time
}

var digits = regexp.MustCompile(`[0-9]+`)

func (e *errLog) DialHook(next redis.DialHook) redis.DialHook { return next }

func (e *errLog) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (e *errLog) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if err != nil && err != redis.Nil {
			msg := digits.ReplaceAllString(err.Error(), "N")
			if len(msg) > 100 {
				msg = msg[:100] + "..."
			}
			now := time.Now()
			e.mu.Lock()
			if e.n == nil {
				e.n = map[string]int{}
			}
			if len(e.n) == 0 {
				e.first = now
			}
			e.n[msg]++
			e.last = now
			e.mu.Unlock()
		}
		return err
	}
}

// take returns what was logged since the last take, and forgets it.
func (e *errLog) take() (n map[string]int, first, last time.Time) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, first, last = e.n, e.first, e.last
	e.n = nil
	return n, first, last
}

// stallMeter samples the load's acknowledged increments and keeps the
// longest time without one.
type stallMeter struct {
	mu      sync.Mutex
	longest time.Duration
	stop    chan struct{}
	done    chan struct{}
}

func meterStalls(l *clusterLoad) *stallMeter {
	m := &stallMeter{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(m.done)
		last, lastAt := l.ops.Load(), time.Now()
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-m.stop:
				return
			case now := <-tick.C:
				if n := l.ops.Load(); n != last {
					last, lastAt = n, now
				}
				m.mu.Lock()
				m.longest = max(m.longest, now.Sub(lastAt))
				m.mu.Unlock()
			}
		}
	}()
	return m
}

func (m *stallMeter) halt() time.Duration {
	close(m.stop)
	<-m.done
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.longest
}

// ringKillUnderLoad runs the load, kills -9 Cassandra node victim of the
// ring after warm, keeps the load going for after, and checks: no client
// error, every acknowledged increment read back through the cluster and,
// once written, at LOCAL_QUORUM from the ring. It returns the load.
func ringKillUnderLoad(t *testing.T, hosts []string, c *redis.ClusterClient, elog *errLog, nodes []*serverProc, ks string, victim int, userBase int64, warm, after time.Duration) *clusterLoad {
	t.Helper()
	elog.take()
	load := startClusterLoad(t, c, userBase, 3000, 8)
	time.Sleep(warm)
	before, opsBefore := load.errSnapshot(), load.ops.Load()
	warmMsgs, _, _ := elog.take()
	pid := ringPid(t, hosts, victim)
	meter := meterStalls(load)
	killAt := time.Now()
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9 %d (Cassandra node %d): %v", pid, victim, err)
	}
	time.Sleep(after)
	stall := meter.halt()
	opsAfter := load.ops.Load()
	load.halt()
	errs, nerrs := errDiff(load.errSnapshot(), before)
	_, nwarm := errDiff(before, nil)
	t.Logf("kill -9 of Cassandra node %d (%s, pid %d) under load: %d increments in %v before it (%.0f/s), %d in the %v after (%.0f/s); longest without an acknowledgement after the kill %v; longest increment of the run (retries included) %v",
		victim, hosts[victim-1], pid, opsBefore, warm, float64(opsBefore)/warm.Seconds(),
		opsAfter-opsBefore, after, float64(opsAfter-opsBefore)/after.Seconds(), stall.Round(time.Millisecond), load.longest.Round(time.Millisecond))
	msgs, first, last := elog.take()
	if nerrs != 0 || nwarm != 0 {
		t.Errorf("client errors: %d after the kill %v, %d before it %v (TRYAGAIN, MOVED, CLUSTERDOWN: refused, retried; other: no answer)", nerrs, errs, nwarm, before)
		if len(msgs) > 0 {
			t.Logf("errors the cluster client returned from %v to %v after the kill: %v", first.Sub(killAt).Round(time.Millisecond), last.Sub(killAt).Round(time.Millisecond), msgs)
		}
		if len(warmMsgs) > 0 {
			t.Logf("errors the cluster client returned before the kill: %v", warmMsgs)
		}
	} else {
		t.Logf("client errors: 0 (before and after the kill)")
	}

	// Through the cluster (the nodes' caches): every acknowledged
	// increment is there.
	if lost, _ := load.check(t, nodes, nil, time.Time{}); lost != 0 {
		t.Errorf("%d acknowledged increments lost (read through the cluster)", lost)
	}
	// In Cassandra, once the nodes have written everything.
	ctx := testCtx(t)
	for _, n := range nodes {
		rc := redis.NewClient(&redis.Options{Addr: n.addr})
		f := waitDrained(t, ctx, rc, time.Minute)
		rc.Close()
		if e, ok := infoInt(t, f, "store_write_errors"); ok && e > 0 {
			t.Logf("node %s: %s store_write_errors (retried) so far", n.addr, f["store_write_errors"])
		}
	}
	lost := checkRingRows(t, ringRows(t, ks), load, fmt.Sprintf("Cassandra node %d down", victim))
	t.Logf("Cassandra node %d down: %d read states written through the cluster, read back at LOCAL_QUORUM: %d acknowledged increments lost",
		victim, len(load.acked), lost)
	return load
}

// waitBalanced waits until every node serves about its share of the
// slots (within 64), all with one map; it returns how long that took.
func waitBalanced(t *testing.T, nodes []*serverProc, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	ctx := testCtx(t)
	var last string
	for time.Since(start) < within {
		m, err := clusterMap(ctx, nodes[0].addr)
		ok := err == nil
		for _, n := range nodes {
			if !ok {
				break
			}
			ok = slotsOf(m, n.addr) >= 16384/len(nodes)-64
		}
		if ok {
			waitClusterOK(t, nodes, within)
			return time.Since(start)
		}
		last = fmt.Sprintf("%s %v", m, err)
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the slots are not shared out within %v: %s", within, last)
	return 0
}

// ringSettle runs the load until a window of 5 s passes without a client
// error (at most a minute): a Cassandra node just started is slow for a
// while (cold JIT, commit log replay, compactions), which a kill must not
// be mixed up with. Nothing acknowledged may be lost meanwhile.
func ringSettle(t *testing.T, c *redis.ClusterClient, elog *errLog, nodes []*serverProc, userBase int64) {
	t.Helper()
	const window = 5 * time.Second
	elog.take()
	load := startClusterLoad(t, c, userBase, 3000, 8)
	start := time.Now()
	var log []string
	for {
		ops := load.ops.Load()
		time.Sleep(window)
		msgs, _, _ := elog.take()
		n := 0
		for _, v := range msgs {
			n += v
		}
		rate := float64(load.ops.Load()-ops) / window.Seconds()
		log = append(log, fmt.Sprintf("%.0f/s %d errors", rate, n))
		if n == 0 && rate > 0 {
			break
		}
		if time.Since(start) > time.Minute {
			t.Logf("still client errors a minute after the restart: %v", msgs)
			break
		}
	}
	load.halt()
	if lost, _ := load.check(t, nodes, nil, time.Time{}); lost != 0 {
		t.Errorf("%d acknowledged increments lost after the restart", lost)
	}
	t.Logf("settling: load in windows of %v until one has no client error: %s", window, strings.Join(log, ", "))
}

// TestClusterRingCassandra: three readstates nodes over a 3-node Cassandra
// ring (replication factor 3, LOCAL_QUORUM). Once they share the slots out
// and a load through go-redis's ClusterClient runs without error,
// Cassandra node 1 (the first contact point) is killed -9 under that load:
// no client error, nothing acknowledged lost, in the cluster or in
// Cassandra. It is restarted (missing what was written meanwhile: no
// hints) and, once the load runs without error again, node 2 is killed the
// same way; what was written while node 1 was down still reads back from
// nodes 1 and 3 at LOCAL_QUORUM. Node 2 is restarted at the end.
func TestClusterRingCassandra(t *testing.T) {
	hosts := cassandraRing(t)
	ring := strings.Join(hosts, ",")
	// cassandraSession (and so the keyspace's drop at the end) and
	// startCassandraServer reach the ring.
	t.Setenv("READSTATES_CASSANDRA_HOSTS", ring)
	for i := range hosts {
		if out, code, err := ringCtl(t, hosts, i+1, "status", 30*time.Second); err != nil || code != 0 {
			t.Fatalf("Cassandra node %d (%s) of the ring is not up: exit %d, %v: %s", i+1, hosts[i], code, err, out)
		}
	}
	// Whatever happens, leave the ring as it was found: every node up.
	t.Cleanup(func() {
		for i := range hosts {
			if _, code, err := ringCtl(t, hosts, i+1, "status", 30*time.Second); err == nil && code == 0 {
				continue
			}
			if out, code, err := ringCtl(t, hosts, i+1, "start", 5*time.Minute); err != nil || code != 0 {
				t.Errorf("restarting Cassandra node %d: exit %d, %v:\n%s", i+1, code, err, out)
			}
		}
	})
	ks := cassandraKeyspace(t)
	startNode := func() *serverProc {
		return startCassandraServer(t, ks,
			"--cassandra-hosts", ring,
			"--cassandra-replication", ringReplication,
			"--cassandra-consistency", "LOCAL_QUORUM",
			"--cluster", "--cluster-lease", clusterLease.String(),
			"--flush-interval", "1s")
	}
	begin := time.Now()
	nodes := []*serverProc{startNode(), startNode(), startNode()}
	// Slower than over one node: every claim of a slot group is a
	// lightweight transaction (Paxos) across three Cassandra nodes.
	took := waitClusterOK(t, nodes, 3*time.Minute)
	t.Logf("3 readstates nodes over the %d-node ring: every slot served, one map, %v after the last start (%v in all)",
		len(hosts), took.Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
	// The first node to claim takes more than its share and hands the rest
	// over: slots that move answer MOVED. The kill must not be mixed up
	// with that.
	took = waitBalanced(t, nodes, 2*time.Minute)
	t.Logf("every node serves its third of the slots %v later", took.Round(time.Millisecond))

	// The keyspace the first node created is replicated to all three.
	s, err := cassandraSession(t)
	if err != nil {
		t.Fatalf("gocql session on the ring: %v", err)
	}
	var repl map[string]string
	err = s.Query("SELECT replication FROM system_schema.keyspaces WHERE keyspace_name = ?", ks).Scan(&repl)
	s.Close()
	if err != nil || repl["replication_factor"] != "3" {
		t.Fatalf("keyspace %s: replication %v, %v; want replication_factor 3", ks, repl, err)
	}

	c := clusterClient(nodes...)
	defer c.Close()
	elog := &errLog{}
	c.AddHook(elog)

	ringSettle(t, c, elog, nodes, 5_000_000)

	// Node 1 down under load, then back.
	load1 := ringKillUnderLoad(t, hosts, c, elog, nodes, ks, 1, 10_000_000, 5*time.Second, 15*time.Second)
	t.Logf("Cassandra node 1 restarted, the ring agreeing it is up, in %v", ringStart(t, hosts, 1).Round(time.Second))
	ringSettle(t, c, elog, nodes, 15_000_000)

	// Node 2 down under load: node 1 missed what load1 wrote, node 3 has
	// it, and quorum reads must find it.
	ringKillUnderLoad(t, hosts, c, elog, nodes, ks, 2, 20_000_000, 5*time.Second, 15*time.Second)
	lost := checkRingRows(t, ringRows(t, ks), load1, "the first load's rows with node 2 down (node 1 missed them)")
	t.Logf("the first load's %d read states, with node 2 down and node 1 back (it missed them: no hints): %d acknowledged increments lost",
		len(load1.acked), lost)
	t.Logf("Cassandra node 2 restarted in %v", ringStart(t, hosts, 2).Round(time.Second))
}
