//go:build cassandra

package tests

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/redis/go-redis/v9"
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
	bs := startBenchServer(t, bin, "--cassandra-hosts", cassandraHosts(), "--cassandra-keyspace", ks,
		"--cache-entries", "1000000", "--flush-interval", "2s", "--data-dir", t.TempDir())
	ctx := longCtx(t, 10*time.Minute)
	c := redis.NewClient(&redis.Options{Addr: bs.addr, Protocol: 2, MaxRetries: -1})
	defer c.Close()
	rate := os.Getenv("READSTATES_SUSTAINED_RATE")
	if rate == "" {
		rate = "30000"
	}
	const warmup, run = 10 * time.Second, 40 * time.Second
	load := exec.CommandContext(ctx, rsload, "-addr", bs.addr, "-keys", "400000", "-channels", "100",
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
	rows, users, busy := delta("store_writes"), delta("store_write_users"), time.Duration(delta("store_write_busy_ms"))*time.Millisecond
	cycles := delta("flush_cycles")
	if rows == 0 || users == 0 || busy <= 0 {
		t.Fatalf("nothing written in %v: rows %d users %d busy %v", run, rows, users, busy)
	}
	perUser := int((rows + users/2) / users)
	serverRate := float64(rows) / busy.Seconds()

	stopBench(t, bs)

	// The ceiling: the same number of rows, in batches of perUser rows of
	// one user, 16 in flight, from gocql, while the same load runs against
	// a server that does not write (--flush-interval 1h): the node and the
	// machine as busy as they were, but for the server's own writing.
	s, err := cassandraSession(t)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	idle := startBenchServer(t, bin, "--cassandra-hosts", cassandraHosts(), "--cassandra-keyspace", cassandraKeyspace(t),
		"--cache-entries", "1000000", "--flush-interval", "1h", "--data-dir", t.TempDir())
	load2 := exec.CommandContext(ctx, rsload, "-addr", idle.addr, "-keys", "400000", "-channels", "100",
		"-mix", "incr=100", "-rate", rate, "-duration", (warmup + 2*run).String(), "-warmup", warmup.String(), "-label", "under the ceiling")
	var load2Out lockedBuffer
	load2.Stdout, load2.Stderr = &load2Out, &load2Out
	if err := load2.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(warmup)
	ceiling := gocqlBatchRate(t, ctx, s, ks, 8_000_000_000, int(rows), perUser, 16)
	_ = load2.Process.Kill()
	_ = load2.Wait()
	alone := gocqlBatchRate(t, ctx, s, ks, 8_100_000_000, int(rows), perUser, 16)

	t.Logf("\n| sustained load, rsload -rate %s incr over 4,000 users x 100 channels, --flush-interval 2s, %v, %d cores | |\n| --- | ---: |\n"+
		"| rows written (flush cycles) | %d (%d) |\n| rows per user per write (one batch each) | %.1f |\n"+
		"| readstates: rows/s while a write was under way (busy %v of %v) | %.0f |\n"+
		"| gocql, UNLOGGED batch per user of %d rows, 16 in flight, under the same rsload: the ceiling | %.0f |\n"+
		"| gocql, the same, alone | %.0f |\n"+
		"\nreadstates / ceiling: %.2f\nrsload: %s",
		rate, run, runtime.NumCPU(), rows, cycles, float64(rows)/float64(users), busy.Round(time.Millisecond), run,
		serverRate, perUser, ceiling, alone, serverRate/ceiling, loadOut.String())
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

// gocqlBatchRate writes n rows of new users from base on, perUser rows per UNLOGGED
// batch of one user, inflight at once, and returns rows per second.
func gocqlBatchRate(t *testing.T, ctx context.Context, s *gocql.Session, ks string, base int64, n, perUser, inflight int) float64 {
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
					b.Query(insert, base+u, ch, int32(1), int64(0), stamp)
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
