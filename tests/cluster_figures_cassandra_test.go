//go:build cassandra

package tests

import (
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestClusterThroughput measures the cluster through go-redis's
// ClusterClient, 1 node against 3 on this machine: increments per second
// one at a time and in pipelines, and an @everyone fan-out (one message
// mentions 100,000 users of a channel: the time until every RSINCR is
// acknowledged, sent as one cluster pipeline). On 2 cores three nodes
// share the CPU the one had: the ratio is the cluster's overhead, not its
// scaling. Skipped unless READSTATES_BENCH=1 (BENCHMARKS.md):
//
//	READSTATES_BENCH=1 go test -count=1 -timeout 30m -tags cassandra -run ClusterThroughput -v ./tests/
func TestClusterThroughput(t *testing.T) {
	if os.Getenv("READSTATES_BENCH") != "1" {
		t.Skip("a measurement, not a test: set READSTATES_BENCH=1 to run it")
	}
	requireCassandra(t)
	t.Setenv("READSTATES_SERVER_RACE", "0")
	bin := filepath.Join(t.TempDir(), "readstates")
	if err := buildServer(bin); err != nil {
		t.Fatal(err)
	}
	const (
		window  = 10 * time.Second
		workers = 64
		fanout  = 100_000
	)
	results := map[int][3]float64{}
	for _, n := range []int{1, 3} {
		ks := cassandraKeyspace(t)
		var addrs []string
		for range n {
			bs := startBenchServer(t, bin, "--cassandra-hosts", cassandraHosts(), "--cassandra-keyspace", ks,
				"--cassandra-startup-wait", "60s", "--data-dir", t.TempDir(), "--cluster", "--log-level", "warn")
			addrs = append(addrs, bs.addr)
		}
		waitClusterAddrsOK(t, addrs, 60*time.Second)
		// A cold fan-out reads 100,000 read states through: longer than the
		// default 3 s read timeout.
		c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, PoolSize: workers, ReadTimeout: 2 * time.Minute})
		ctx := longCtx(t, 10*time.Minute)
		// Warm: the fan-out's users and the load's, read through once.
		fan := func() time.Duration {
			start := time.Now()
			cmds, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
				for u := int64(1); u <= fanout; u++ {
					p.Do(ctx, "RSINCR", u, 7)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("fan-out pipeline: %v", err)
			}
			if len(cmds) != fanout {
				t.Fatalf("%d replies, want %d", len(cmds), fanout)
			}
			return time.Since(start)
		}
		fan()
		// The load's 64,000 read states, read through once: the rates are
		// of cached read states (a miss is a Cassandra read).
		if _, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
			for w := range int64(workers) {
				for i := range int64(1000) {
					p.Do(ctx, "RSINCR", w*1_000_000+i, 1, 0)
				}
			}
			return nil
		}); err != nil {
			t.Fatalf("warm-up: %v", err)
		}
		rate := func(pipe int) float64 {
			var ops atomic.Int64
			var wg sync.WaitGroup
			stop := time.Now().Add(window)
			for w := range workers {
				wg.Go(func() {
					for i := int64(0); time.Now().Before(stop); i++ {
						u := int64(w)*1_000_000 + i%1000
						if pipe == 1 {
							if err := c.Do(ctx, "RSINCR", u, 1).Err(); err != nil {
								t.Errorf("RSINCR: %v", err)
								return
							}
							ops.Add(1)
							continue
						}
						_, err := c.Pipelined(ctx, func(p redis.Pipeliner) error {
							for j := range int64(pipe) {
								p.Do(ctx, "RSINCR", int64(w)*1_000_000+(i+j)%1000, 1)
							}
							return nil
						})
						if err != nil {
							t.Errorf("pipeline: %v", err)
							return
						}
						ops.Add(int64(pipe))
					}
				})
			}
			wg.Wait()
			return float64(ops.Load()) / window.Seconds()
		}
		p1, p16 := rate(1), rate(16)
		var fans []time.Duration
		for range 3 {
			fans = append(fans, fan())
		}
		slices.Sort(fans)
		results[n] = [3]float64{p1, p16, fans[1].Seconds()}
		t.Logf("%d node(s): %.0f RSINCR/s one at a time, %.0f/s in pipelines of 16 (%d clients); @everyone fan-out of %d: %v (median of 3: %v)",
			n, p1, p16, workers, fanout, fans[1], fans)
		c.Close()
	}
	one, three := results[1], results[3]
	t.Logf("3 nodes / 1 node: %.2fx one at a time, %.2fx pipelined, fan-out time %.2fx",
		three[0]/one[0], three[1]/one[1], three[2]/one[2])
}
