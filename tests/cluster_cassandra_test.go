//go:build cassandra

package tests

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// The cluster (package cluster) through its real parts: readstates nodes
// as processes over one keyspace of the test Cassandra node, driven by
// go-redis's ClusterClient and redis-cli -c with their default options.

const clusterLease = 3 * time.Second

// startClusterNode starts a node of the cluster in keyspace ks.
func startClusterNode(t *testing.T, ks string) *serverProc {
	t.Helper()
	return startCassandraServer(t, ks, "--cluster", "--cluster-lease", clusterLease.String(),
		"--flush-interval", "1s")
}

// waitWarmLoads waits until the nodes together have read back users
// handed to them with their slots (INFO store_warm_loads), and returns
// how many.
func waitWarmLoads(t *testing.T, ctx context.Context, nodes ...*serverProc) int64 {
	t.Helper()
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		var n int64
		for _, p := range nodes {
			c := redis.NewClient(&redis.Options{Addr: p.addr, MaxRetries: -1})
			v, _ := infoInt(t, infoFields(t, ctx, c, "persistence"), "store_warm_loads")
			c.Close()
			n += v
		}
		if n > 0 {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatal("no user read back by the nodes slots were handed to (store_warm_loads 0 after 15 s)")
		}
	}
}

// clusterMap is what CLUSTER SLOTS says: the address serving each range.
func clusterMap(ctx context.Context, addr string) (string, error) {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	slots, err := c.ClusterSlots(ctx).Result()
	if err != nil {
		return "", err
	}
	var b strings.Builder
	covered := 0
	for _, s := range slots {
		fmt.Fprintf(&b, "%d-%d:%s ", s.Start, s.End, s.Nodes[0].Addr)
		covered += s.End - s.Start + 1
	}
	if covered != 16384 {
		return b.String(), fmt.Errorf("%d slots served", covered)
	}
	return b.String(), nil
}

// waitClusterOK waits until every node serves all 16384 slots with the
// same map and says cluster_state:ok; it returns how long that took.
func waitClusterOK(t *testing.T, nodes []*serverProc, within time.Duration) time.Duration {
	t.Helper()
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.addr)
	}
	return waitClusterAddrsOK(t, addrs, within)
}

func waitClusterAddrsOK(t *testing.T, addrs []string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	ctx := testCtx(t)
	var last string
	for time.Since(start) < within {
		maps := map[string]bool{}
		ok := true
		for _, addr := range addrs {
			m, err := clusterMap(ctx, addr)
			if err != nil {
				ok, last = false, fmt.Sprintf("%s: %v (%s)", addr, err, m)
				break
			}
			ic := redis.NewClient(&redis.Options{Addr: addr})
			info, err := ic.ClusterInfo(ctx).Result()
			ic.Close()
			if err != nil || !strings.Contains(info, "cluster_state:ok") {
				ok, last = false, fmt.Sprintf("%s: CLUSTER INFO %v %q", addr, err, info)
				break
			}
			maps[m] = true
		}
		if ok && len(maps) == 1 {
			return time.Since(start)
		}
		if ok {
			last = fmt.Sprintf("%d different maps", len(maps))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("the cluster did not serve every slot with one map within %v: %s", within, last)
	return 0
}

func clusterClient(nodes ...*serverProc) *redis.ClusterClient {
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.addr)
	}
	// No read timeout and no retries of a node's failure: go-redis resends
	// a command whose reply timed out (3 s by default) or whose
	// connection failed, and an increment that had run then counts twice
	// while the load saw one acknowledgment. Each call's context bounds
	// it instead, and a failure without a reply counts as unanswered.
	return redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, ReadTimeout: -1, MaxRetries: -1})
}

// clusterLoad increments read states of its users from several
// goroutines through a cluster client, retrying what fails, and keeps
// what was acknowledged (the lower bound of each state) and what was
// sent without an answer (the upper bound's excess).
type clusterLoad struct {
	mu       sync.Mutex
	acked    map[[2]int64]int64
	unknown  map[[2]int64]int64
	errs     map[string]int
	longest  time.Duration // the longest an increment took, retries included
	stop     chan struct{}
	wg       sync.WaitGroup
	ops      atomic.Int64
	lastAck  map[[2]int64]time.Time
	acks     []ack // every increment acknowledged, with its value
	userBase int64
}

func startClusterLoad(t *testing.T, c *redis.ClusterClient, userBase int64, users, workers int) *clusterLoad {
	l := &clusterLoad{
		acked: map[[2]int64]int64{}, unknown: map[[2]int64]int64{}, errs: map[string]int{},
		lastAck: map[[2]int64]time.Time{}, stop: make(chan struct{}), userBase: userBase,
	}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(userBase)))
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				// Each worker owns the users u with u % workers == w: no two
				// increments of one read state race.
				u := userBase + int64(rng.IntN(users/workers)*workers+w)
				k := [2]int64{u, int64(rng.IntN(4))}
				start := time.Now()
				for attempt := 0; ; attempt++ {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					n, err := c.Do(ctx, "RSINCR", u, k[1]).Int64()
					cancel()
					if err == nil {
						l.mu.Lock()
						l.acked[k]++
						l.acks = append(l.acks, ack{k, n, time.Now()})
						l.lastAck[k] = time.Now()
						l.longest = max(l.longest, time.Since(start))
						l.mu.Unlock()
						l.ops.Add(1)
						break
					}
					kind := errKind(err)
					l.mu.Lock()
					l.errs[kind]++
					if kind == "other" {
						// Sent, maybe applied, no answer: this increment is
						// in neither bound until the state is read.
						l.unknown[k]++
					}
					l.mu.Unlock()
					if kind == "other" || attempt > 200 {
						break
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	return l
}

func errKind(err error) string {
	s := err.Error()
	for _, p := range []string{"TRYAGAIN", "MOVED", "CLUSTERDOWN"} {
		if strings.HasPrefix(s, p) {
			return p // refused before anything ran
		}
	}
	return "other"
}

func (l *clusterLoad) halt() {
	close(l.stop)
	l.wg.Wait()
}

// check reads every state the load touched and compares it with what was
// acknowledged: exact, or within the unanswered attempts; lost counts the
// acknowledged increments missing, for the users in lossy (nil: none may
// lose any).
func (l *clusterLoad) check(t *testing.T, nodes []*serverProc, lossy func(user int64) bool, killedAt time.Time) (lost int64, oldest time.Duration) {
	t.Helper()
	ctx := testCtx(t)
	// A client of the nodes still up: one whose map names a node gone
	// keeps dialing it until it reloads (go-redis: a map 10s old).
	c := clusterClient(nodes...)
	defer c.Close()
	bad := 0
	for k, want := range l.acked {
		var got []int64
		var err error
		// Retried: the client's map may still name a node that left (go-redis
		// reloads a map older than 10s).
		for attempt := 0; attempt < 400; attempt++ {
			if got, err = c.Do(ctx, "RSGET", k[0], k[1]).Int64Slice(); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("RSGET %d %d: %v", k[0], k[1], err)
		}
		switch {
		case got[0] >= want && got[0] <= want+l.unknown[k]:
		case got[0] < want && lossy != nil && lossy(k[0]):
			lost += want - got[0]
			oldest = max(oldest, killedAt.Sub(l.lastAck[k]))
		default:
			if bad++; bad <= 10 {
				t.Errorf("read state %d/%d: %d, want %d acknowledged (+ up to %d unanswered)", k[0], k[1], got[0], want, l.unknown[k])
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d read states wrong", bad, len(l.acked))
	}
	return lost, oldest
}

// TestClusterCassandra: three nodes start and serve every slot with one
// map; go-redis's ClusterClient and redis-cli -c run the read-state
// commands, pipelines included; then, under load, a node leaves by
// SIGTERM (0 lost), a new one joins (0 lost, it gets its share), and one
// is killed (the others serve its slots within lease + margin, every
// other user exact).
func TestClusterCassandra(t *testing.T) {
	requireCassandra(t)
	ks := cassandraKeyspace(t)
	nodes := []*serverProc{startClusterNode(t, ks), startClusterNode(t, ks), startClusterNode(t, ks)}
	took := waitClusterOK(t, nodes, 30*time.Second)
	t.Logf("3 nodes: every slot served, one map, after %v", took)

	c := clusterClient(nodes...)
	defer c.Close()
	ctx := testCtx(t)

	// Every command, one by one and in a cluster pipeline.
	if n, err := c.Do(ctx, "RSINCR", 42, 7, 3).Int64(); err != nil || n != 3 {
		t.Fatalf("RSINCR 42 7 3: %v %v", n, err)
	}
	cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
		for u := int64(1000); u < 1300; u++ {
			p.Do(ctx, "RSINCR", u, 1, u%5+1)
			p.Do(ctx, "RSRESET", u, 2, u*10)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("cluster pipeline: %v", err)
	}
	for i, cmd := range cmds {
		u := 1000 + int64(i/2)
		if n, err := cmd.(*redis.Cmd).Int64(); err != nil || (i%2 == 0 && n != u%5+1) || (i%2 == 1 && n != 0) {
			t.Fatalf("pipeline reply %d (user %d): %v %v", i, u, n, err)
		}
	}
	for u := int64(1000); u < 1300; u += 37 {
		got, err := c.Do(ctx, "RSMGET", u, 1, 2, 3).Slice()
		if err != nil {
			t.Fatalf("RSMGET %d: %v", u, err)
		}
		want := fmt.Sprint([]any{[]any{u%5 + 1, int64(0)}, []any{int64(0), u * 10}, []any{int64(0), int64(0)}})
		if fmt.Sprint(got) != want {
			t.Fatalf("RSMGET %d 1 2 3: %v, want %v", u, got, want)
		}
	}
	// Every node serves a third of the users: a plain client on one node
	// is redirected for the others.
	moved := 0
	plain := redis.NewClient(&redis.Options{Addr: nodes[0].addr})
	defer plain.Close()
	for u := int64(1000); u < 1300; u++ {
		if err := plain.Do(ctx, "RSGET", u, 1).Err(); err != nil && strings.HasPrefix(err.Error(), "MOVED ") {
			moved++
		}
	}
	if moved < 100 || moved > 300-50 {
		t.Fatalf("%d of 300 users redirected from one node of three", moved)
	}
	if cli, err := exec.LookPath("redis-cli"); err == nil {
		host, port := splitAddr(t, nodes[1].addr)
		out, err := exec.CommandContext(ctx, cli, "-c", "-h", host, "-p", port, "RSGET", "42", "7").CombinedOutput()
		if err != nil || strings.Fields(string(out))[0] != "3" {
			t.Fatalf("redis-cli -c RSGET 42 7: %v %q", err, out)
		}
	}
	// One user, however spelled: "00042" is user 42, served by 42's node
	// only, refused by the others.
	ownerAddr := ""
	if o, err := c.MasterForKey(ctx, "42"); err == nil {
		ownerAddr = o.Options().Addr
	}
	for _, n := range nodes {
		nc := redis.NewClient(&redis.Options{Addr: n.addr})
		got, err := nc.Do(ctx, "RSGET", "00042", 7).Int64Slice()
		nc.Close()
		switch {
		case n.addr == ownerAddr && (err != nil || got[0] != 3):
			t.Fatalf("RSGET 00042 7 on user 42's node: %v %v, want [3 0]", got, err)
		case n.addr != ownerAddr && (err == nil || !strings.Contains(err.Error(), "leading zeros")):
			t.Fatalf("RSGET 00042 7 on another node: %v %v, want refused", got, err)
		}
	}

	// SIGTERM of a node under load: 0 lost.
	load := startClusterLoad(t, c, 1_000_000, 3000, 8)
	time.Sleep(2 * time.Second)
	gone := nodes[2]
	stopAt := time.Now()
	gone.stop()
	t.Logf("SIGTERM: the node handed its slots over and exited in %v", time.Since(stopAt))
	took = waitClusterOK(t, nodes[:2], 2*clusterLease)
	time.Sleep(time.Second)
	load.halt()
	if lost, _ := load.check(t, nodes[:2], nil, time.Time{}); lost != 0 {
		t.Fatalf("%d acknowledged increments lost after a SIGTERM", lost)
	}
	t.Logf("SIGTERM under load: %d increments, 0 lost; slots all served %v after the exit; longest increment %v; refusals %v",
		load.ops.Load(), took, load.longest, load.errs)
	// The users it held went with its slots: the new owners read them back.
	t.Logf("SIGTERM: the new owners read back %d users of the node that left", waitWarmLoads(t, ctx, nodes[:2]...))

	// A node joins under load: it gets its share, 0 lost.
	load = startClusterLoad(t, c, 2_000_000, 3000, 8)
	time.Sleep(time.Second)
	joined := startClusterNode(t, ks)
	nodes = []*serverProc{nodes[0], nodes[1], joined}
	joinAt := time.Now()
	share := 0
	for share < 16384/3-64 {
		if time.Since(joinAt) > 30*time.Second {
			m, _ := clusterMap(ctx, joined.addr)
			t.Fatalf("the new node serves %d slots after 30s, want about a third (%s)", share, m)
		}
		time.Sleep(100 * time.Millisecond)
		m, err := clusterMap(ctx, joined.addr)
		if err != nil {
			continue
		}
		share = slotsOf(m, joined.addr)
	}
	took = time.Since(joinAt)
	waitClusterOK(t, nodes, 30*time.Second)
	time.Sleep(time.Second)
	load.halt()
	if lost, _ := load.check(t, nodes, nil, time.Time{}); lost != 0 {
		t.Fatalf("%d acknowledged increments lost while a node joined", lost)
	}
	t.Logf("join under load: %d increments, 0 lost; the new node serves %d slots %v after its start; longest increment %v; refusals %v",
		load.ops.Load(), share, took, load.longest, load.errs)
	t.Logf("join: the new node read back %d users the givers held", waitWarmLoads(t, ctx, joined))

	// kill -9 of a node under load: the others serve its slots within the
	// lease and margin; the users of the others are exact.
	load = startClusterLoad(t, c, 3_000_000, 3000, 8)
	time.Sleep(2 * time.Second)
	killed := nodes[1]
	killedMap, _ := clusterMap(ctx, nodes[0].addr)
	ownedByKilled := servedBy(killedMap, killed.addr)
	killAt := time.Now()
	killed.kill9()
	survivors := []*serverProc{nodes[0], nodes[2]}
	for {
		m, err := clusterMap(ctx, nodes[0].addr)
		if err == nil && slotsOf(m, killed.addr) == 0 {
			break
		}
		if time.Since(killAt) > 4*clusterLease {
			t.Fatalf("the killed node's slots are not served by the others %v after the kill: %s %v", time.Since(killAt), m, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	took = time.Since(killAt)
	waitClusterOK(t, survivors, 4*clusterLease)
	time.Sleep(time.Second)
	load.halt()
	lost, oldest := load.check(t, survivors, ownedByKilled, killAt)
	nodes[0].stop()
	nodes[2].stop()
	load.checkRows(t, ks, ownedByKilled, killAt)
	t.Logf("kill -9 under load: its slots served by the others %v after the kill (lease %v + margin %v); %d increments, %d lost, all of the killed node's users (unwritten: the oldest acknowledged %v before the kill); refusals %v",
		took, clusterLease, clusterLease/5, load.ops.Load(), lost, oldest, load.errs)

}

// servedBy reports, for a user, whether addr served its slot in the
// clusterMap m.
func servedBy(m, addr string) func(user int64) bool {
	return func(user int64) bool {
		slot := int(redisSlot(fmt.Sprint(user)))
		for _, r := range strings.Fields(m) {
			var a, b int
			fmt.Sscanf(strings.Replace(r, "-", " ", 1), "%d %d", &a, &b)
			if slot >= a && slot <= b {
				return strings.HasSuffix(r, addr)
			}
		}
		return false
	}
}

// slotsOf counts the slots of addr in a clusterMap.
func slotsOf(m, addr string) int {
	n := 0
	for _, r := range strings.Fields(m) {
		var a, b int
		fmt.Sscanf(strings.Replace(r, "-", " ", 1), "%d %d", &a, &b)
		if strings.HasSuffix(r, ":"+addr[strings.LastIndexByte(addr, ':')+1:]) {
			n += b - a + 1
		}
	}
	return n
}

type ack struct {
	k  [2]int64
	n  int64 // the mention_count RSINCR returned
	at time.Time
}

// checkRows reads the rows of ks from Cassandra (every node stopped, so
// everything was written) and checks that none holds less than a value an
// increment returned: no older value won over a newer one, whoever wrote
// it last. For the users of lossy, only the values returned after since
// count (those before may be lost with the node that acknowledged them).
func (l *clusterLoad) checkRows(t *testing.T, ks string, lossy func(user int64) bool, since time.Time) {
	t.Helper()
	rows := cassandraRows(t, ks)
	// A reply the lost node sent just before it died may be counted a
	// moment after: a second's margin (no other node can have taken its
	// users by then).
	since = since.Add(time.Second)
	maxSeen := map[[2]int64]int64{}
	seenAt := map[[2]int64]time.Time{}
	for _, a := range l.acks {
		if (lossy == nil || !lossy(a.k[0]) || a.at.After(since)) && a.n > maxSeen[a.k] {
			maxSeen[a.k], seenAt[a.k] = a.n, a.at
		}
	}
	bad := 0
	for k, seen := range maxSeen {
		if got := rows[k].mentions; got < seen {
			if bad++; bad <= 10 {
				t.Errorf("row %d/%d holds %d, below the %d an increment returned %v after the event (a user of the lost node: %v): an older value won",
					k[0], k[1], got, seen, seenAt[k].Sub(since.Add(-time.Second)), lossy != nil && lossy(k[0]))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d rows hold an older value than one acknowledged", bad, len(maxSeen))
	}
}

// TestClusterCassandraZombieAndSkew: a node paused (SIGSTOP) for three
// leases loses its slots; when it resumes it answers MOVED for them, never
// a value, and its late writes never win over the new owners'. A node
// whose wall clock is 5 minutes behind takes slots and hands them back
// without losing anything.
func TestClusterCassandraZombieAndSkew(t *testing.T) {
	requireCassandra(t)
	ks := cassandraKeyspace(t)
	skewed := startCassandraServer(t, ks, "--cluster", "--cluster-lease", clusterLease.String(),
		"--flush-interval", "1s", "--clock-offset", "-5m")
	nodes := []*serverProc{startClusterNode(t, ks), startClusterNode(t, ks), skewed}
	waitClusterOK(t, nodes, 30*time.Second)
	ctx := testCtx(t)
	c := clusterClient(nodes...)
	defer c.Close()
	load := startClusterLoad(t, c, 5_000_000, 3000, 8)
	time.Sleep(2 * time.Second)

	// The zombie.
	z := nodes[0]
	zmap, _ := clusterMap(ctx, z.addr)
	var lostUser int64 = -1
	for u := int64(5_000_000); u < 5_003_000 && lostUser < 0; u++ {
		if servedBy(zmap, z.addr)(u) {
			lostUser = u
		}
	}
	if lostUser < 0 {
		t.Fatalf("no user of the load on the node to pause (%s)", zmap)
	}
	if err := z.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	pausedAt := time.Now()
	time.Sleep(3 * clusterLease)
	if err := z.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	t.Logf("paused %v", time.Since(pausedAt))
	plain := redis.NewClient(&redis.Options{Addr: z.addr, MaxRetries: -1})
	defer plain.Close()
	for start := time.Now(); ; {
		err := plain.Do(ctx, "RSGET", lostUser, 0).Err()
		if err == nil {
			t.Fatalf("the resumed node served user %d, whose slot it lost while paused", lostUser)
		}
		if strings.HasPrefix(err.Error(), "MOVED ") {
			t.Logf("the resumed node answers %q %v after SIGCONT", err, time.Since(start))
			break
		}
		if time.Since(start) > 2*clusterLease {
			t.Fatalf("the resumed node still answers %v for a slot it lost, %v after SIGCONT", err, time.Since(start))
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitClusterOK(t, nodes, 30*time.Second)
	time.Sleep(2 * time.Second)

	// The skewed node gives its slots back and takes them again.
	skewed.stop()
	waitClusterOK(t, nodes[:2], 30*time.Second)
	skewed.restart()
	waitClusterOK(t, nodes, 30*time.Second)
	time.Sleep(2 * time.Second)
	load.halt()
	zombieUsers := servedBy(zmap, z.addr)
	lost, oldest := load.check(t, nodes, zombieUsers, pausedAt)
	t.Logf("zombie and skew under load: %d increments, %d lost (the paused node's unwritten, the oldest acknowledged %v before the pause); refusals %v",
		load.ops.Load(), lost, oldest, load.errs)
	for _, n := range nodes {
		n.stop()
	}
	load.checkRows(t, ks, zombieUsers, pausedAt)
}

// TestClusterCassandraOutage: Cassandra frozen (SIGSTOP) for longer than
// the lease under load: the nodes stop serving (their leases lapse:
// TRYAGAIN), nothing acknowledged is lost, nobody is declared down for a
// silence it could not see, and service comes back by itself.
func TestClusterCassandraOutage(t *testing.T) {
	requireCassandra(t)
	ks := cassandraKeyspace(t)
	nodes := []*serverProc{startClusterNode(t, ks), startClusterNode(t, ks), startClusterNode(t, ks)}
	waitClusterOK(t, nodes, 30*time.Second)
	c := clusterClient(nodes...)
	defer c.Close()
	load := startClusterLoad(t, c, 6_000_000, 3000, 8)
	time.Sleep(2 * time.Second)
	t.Cleanup(func() { ensureNodeUp(t, nil) })
	if out, code, err := cassandraCtl(t, "pause", 30*time.Second); err != nil || code != 0 {
		t.Fatalf("cassandra.sh pause: exit %d, %v:\n%s", code, err, out)
	}
	const pauseFor = 3 * clusterLease
	time.Sleep(pauseFor)
	if out, code, err := cassandraCtl(t, "resume", 30*time.Second); err != nil || code != 0 {
		t.Fatalf("cassandra.sh resume: exit %d, %v:\n%s", code, err, out)
	}
	back, opsBack := time.Now(), load.ops.Load()
	waitClusterOK(t, nodes, 60*time.Second)
	time.Sleep(2 * time.Second)
	load.halt()
	if load.ops.Load() == opsBack {
		t.Fatal("no increment acknowledged in the 2 s after Cassandra resumed")
	}
	if lost, _ := load.check(t, nodes, nil, time.Time{}); lost != 0 {
		t.Fatalf("%d acknowledged increments lost to an outage of Cassandra", lost)
	}
	for _, n := range nodes {
		if strings.Contains(n.out.String(), "declared down by another") {
			t.Errorf("node %s was declared down after the outage", n.addr)
		}
	}
	t.Logf("Cassandra frozen %v under load: %d increments in the %v after it resumed; %d in all, 0 lost; refusals %v",
		pauseFor, load.ops.Load()-opsBack, time.Since(back), load.ops.Load(), load.errs)
	for _, n := range nodes {
		n.stop()
	}
	load.checkRows(t, ks, nil, time.Time{})
}

// redisSlot is Redis Cluster's key slot (CRC16/XMODEM mod 16384),
// computed here independently of package cluster.
func redisSlot(key string) uint16 {
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc & 16383
}
