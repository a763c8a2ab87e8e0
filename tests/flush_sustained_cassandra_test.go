//go:build cassandra

package tests

import (
	"cmp"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/redis/go-redis/v9"
)

// rsload's ids (cmd/rsload): key k is user rsloadUserBase + k/channels,
// channel rsloadChannelBase + k%channels.
const (
	rsloadUserBase    = 100_000_000_000_000_000
	rsloadChannelBase = 200_000_000_000_000_000
)

// TestCassandraSustainedFlush measures the write-behind under a sustained
// load (BENCHMARKS.md, "Flush throughput"): rsload changes read states of
// 4,000 users x 100 channels at a steady rate with --flush-interval 2s, so
// the paced flush runs all the time. From INFO it takes the rows written,
// the users they belonged to (rows per request) and how long a write was
// under way; then gocql writes the same rows in the same shape (one
// UNLOGGED batch per user, 16 in flight): the ceiling, in the same run.
func TestCassandraSustainedFlush(t *testing.T) {
	if os.Getenv("READSTATES_BENCH") != "1" {
		t.Skip("a measurement, not a test: set READSTATES_BENCH=1 to run it")
	}
	requireCassandra(t)
	bin, rsload := buildBenchTools(t)
	ks := cassandraKeyspace(t)
	rate := cmp.Or(os.Getenv("READSTATES_SUSTAINED_RATE"), "20000")
	keys := cmp.Or(os.Getenv("READSTATES_SUSTAINED_KEYS"), "4000000")
	nKeys, err := strconv.ParseInt(keys, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	// Room for every key, so that neither server evicts (the one that
	// must not write would write what it evicts).
	entries := strconv.FormatInt(2*nKeys, 10)
	bs := startBenchServer(t, bin, "--cassandra-hosts", cassandraHosts(), "--cassandra-keyspace", ks,
		"--cache-entries", entries, "--flush-interval", "2s", "--data-dir", t.TempDir())
	ctx := longCtx(t, 15*time.Minute)
	c := redis.NewClient(&redis.Options{Addr: bs.addr, Protocol: 2, MaxRetries: -1})
	defer c.Close()
	const warmup, run = 10 * time.Second, 40 * time.Second
	load := exec.CommandContext(ctx, rsload, "-addr", bs.addr, "-keys", keys, "-channels", "100",
		"-mix", "incr=100", "-rate", rate, "-duration", (warmup + run).String(), "-warmup", warmup.String(), "-label", "sustained")
	var loadOut lockedBuffer
	load.Stdout, load.Stderr = &loadOut, &loadOut
	if err := load.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(warmup)
	before := infoFields(t, ctx, c, "persistence")
	time.Sleep(run)
	after := infoFields(t, ctx, c, "persistence")
	if err := load.Wait(); err != nil {
		t.Fatalf("rsload: %v\n%s", err, loadOut.String())
	}
	delta := func(name string) int64 {
		a, ok1 := infoInt(t, after, name)
		b, ok2 := infoInt(t, before, name)
		if !ok1 || !ok2 {
			t.Fatalf("INFO has no %s", name)
		}
		return a - b
	}
	pendingBefore, _ := infoInt(t, before, "pending_read_states")
	pendingAfter, _ := infoInt(t, after, "pending_read_states")
	rows, users, busy := delta("store_writes"), delta("store_write_users"), time.Duration(delta("store_write_busy_ms"))*time.Millisecond
	cycles := delta("flush_cycles")
	// Partition reads: a user read whole stays so when its rows are
	// written (an ack takes nothing out of memory), so the writes add none.
	reads, warmReads := delta("store_user_loads"), delta("store_warm_loads")
	if rows == 0 || users == 0 || busy <= 0 {
		t.Fatalf("nothing written in %v: rows %d users %d busy %v", run, rows, users, busy)
	}
	perUser := int((rows + users/2) / users)
	serverRate := float64(rows) / busy.Seconds()

	stopBench(t, bs)

	// The ceiling: the same number of rows, in batches of perUser rows of
	// one user, 16 in flight, from gocql, while the same load runs against
	// a server that does not write (--flush-interval 1h): the node and the
	// machine as busy as they were, but for the server's own writing. Once
	// over the same keyspace, into the partitions of the users the load
	// touches (the node reads and writes the data the server's run made),
	// once into new partitions of a fresh keyspace read by a fresh server
	// (what this test measured before 2026-12-03: reads of empty
	// partitions cost the node less).
	s, err := cassandraSession(t)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	nUsers := nKeys / 100
	loadUsers := func(u int64) int64 { return rsloadUserBase + (u*7919)%nUsers }
	underLoad := func(ks, label string, user func(int64) int64) float64 {
		idle := startBenchServer(t, bin, "--cassandra-hosts", cassandraHosts(), "--cassandra-keyspace", ks,
			"--cache-entries", entries, "--flush-interval", "1h", "--data-dir", t.TempDir())
		defer func() { // what it holds is not wanted: no final flush to wait for
			_ = idle.cmd.Process.Kill()
			<-idle.done
		}()
		load := exec.CommandContext(ctx, rsload, "-addr", idle.addr, "-keys", keys, "-channels", "100",
			"-mix", "incr=100", "-rate", rate, "-duration", (warmup + 2*run).String(), "-warmup", warmup.String(), "-label", label)
		var out lockedBuffer
		load.Stdout, load.Stderr = &out, &out
		if err := load.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(warmup)
		r := gocqlBatchRate(t, ctx, s, ks, user, rsloadChannelBase, int(rows), perUser, 16)
		_ = load.Process.Kill()
		_ = load.Wait()
		return r
	}
	ceiling := underLoad(ks, "under the ceiling", loadUsers)
	alone := gocqlBatchRate(t, ctx, s, ks, loadUsers, rsloadChannelBase, int(rows), perUser, 16)
	fresh := cassandraKeyspace(t)
	ceilingFresh := underLoad(fresh, "under the ceiling, fresh keyspace", func(u int64) int64 { return 8_000_000_000 + u })

	t.Logf("\n| sustained load, rsload -rate %s incr over %s read states (100 channels a user), --flush-interval 2s, %v, %d cores | |\n| --- | ---: |\n"+
		"| rows written (flush cycles) | %d (%d) |\n| waiting or in flight at the start, at the end (pending_read_states) | %d, %d |\n| rows per user per write (one batch each) | %.1f |\n"+
		"| partition reads by the commands in the window (users: %s / 100) | %d |\n"+
		"| readstates: rows/s while a write was under way (busy %v of %v) | %.0f |\n"+
		"| gocql, UNLOGGED batch per user of %d rows, 16 in flight, into the same users' partitions, under the same rsload: the ceiling | %.0f |\n"+
		"| gocql, the same, alone | %.0f |\n"+
		"| gocql, the same shape into new partitions of a fresh keyspace, under the same rsload on it | %.0f |\n"+
		"\nreadstates / ceiling: %.2f (against the fresh keyspace: %.2f)\nrsload: %s",
		rate, keys, run, runtime.NumCPU(), rows, cycles, pendingBefore, pendingAfter, float64(rows)/float64(users), keys, reads-warmReads, busy.Round(time.Millisecond), run,
		serverRate, perUser, ceiling, alone, ceilingFresh, serverRate/ceiling, serverRate/ceilingFresh, loadOut.String())
}

// buildBenchTools builds the server (without -race, for a measurement)
// and rsload, and returns their paths.
func buildBenchTools(t *testing.T) (server, rsload string) {
	t.Helper()
	t.Setenv("READSTATES_SERVER_RACE", "0")
	dir := t.TempDir()
	server, rsload = filepath.Join(dir, "readstates"), filepath.Join(dir, "rsload")
	if err := buildServer(server); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("go", "build", "-o", rsload, "../cmd/rsload").CombinedOutput(); err != nil {
		t.Fatalf("building rsload: %v\n%s", err, out)
	}
	return server, rsload
}

// gocqlBatchRate writes n rows, perUser rows per UNLOGGED batch of one
// user (the u-th batch to user(u), channels from chanBase on), inflight
// at once, and returns rows per second.
func gocqlBatchRate(t *testing.T, ctx context.Context, s *gocql.Session, ks string, user func(int64) int64, chanBase int64, n, perUser, inflight int) float64 {
	t.Helper()
	insert := "INSERT INTO " + ks + ".read_states (user_id, channel_id, mention_count, last_message_id) VALUES (?, ?, ?, ?) USING TIMESTAMP ?"
	jobs := make(chan int64)
	var (
		wg     sync.WaitGroup
		failed atomic.Bool
	)
	start := time.Now()
	for range inflight {
		wg.Go(func() {
			for u := range jobs {
				if failed.Load() {
					continue
				}
				b := s.NewBatch(gocql.UnloggedBatch).WithContext(ctx)
				b.SetConsistency(gocql.LocalQuorum)
				stamp := time.Now().UnixMicro()
				for ch := range int64(perUser) {
					b.Query(insert, user(u), chanBase+ch, int32(1), int64(0), stamp)
				}
				if err := s.ExecuteBatch(b); err != nil && !failed.Swap(true) {
					t.Errorf("gocql: %v", err)
				}
			}
		})
	}
	for u := range int64((n + perUser - 1) / perUser) {
		jobs <- u
	}
	close(jobs)
	wg.Wait()
	return float64(n) / time.Since(start).Seconds()
}

// lockedBuffer is an io.Writer safe for a child's stdout and stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.b = append(l.b, p...)
	return len(p), nil
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return string(l.b)
}
