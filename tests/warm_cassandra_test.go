//go:build cassandra

package tests

import (
	"cmp"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gocql/gocql"
	"github.com/redis/go-redis/v9"
)

// TestCassandraWarmRestart measures warm restarts (BENCHMARKS.md, "Warm
// restarts"): READSTATES_WARM_KEYS read states (default 8,000,000: 80,000
// users x 100 channels) stored in Cassandra; the server runs under rsload
// (READSTATES_WARM_RPS requests/s, default 3,000, uniform over every read
// state) for two minutes from a cold start, then is restarted with
// --warm-rate (READSTATES_WARM_RATE, default 1000), then restarted
// without. For each: the second from which every second's hit ratio is
// above 95%, the ratio along the way, and the database reads a second
// the node saw (the server's store_loads).
//
// A command's hit is a command that needed no database read: the ratio
// of a second is 1 - (store_loads - store_warm_loads) / commands. The
// cache's own keyspace_hits would say more than that: a command that
// waits first reads what the pipelined commands after it will miss, and
// those then count as hits, though their client waited as long.
func TestCassandraWarmRestart(t *testing.T) {
	if os.Getenv("READSTATES_BENCH") != "1" {
		t.Skip("a measurement, not a test: set READSTATES_BENCH=1 to run it")
	}
	requireCassandra(t)
	keys := 8_000_000
	if v := os.Getenv("READSTATES_WARM_KEYS"); v != "" {
		keys, _ = strconv.Atoi(v)
	}
	rps := cmp.Or(os.Getenv("READSTATES_WARM_RPS"), "3000")
	warmRate := cmp.Or(os.Getenv("READSTATES_WARM_RATE"), "1000")
	const channels = 100
	users := keys / channels
	bin, rsload := buildBenchTools(t)
	ctx := longCtx(t, 60*time.Minute)
	ks := cassandraKeyspace(t)
	// The keyspace, then its rows as rsload names them.
	bs := startBenchServer(t, bin, "--cassandra-hosts", cassandraHosts(), "--cassandra-keyspace", ks, "--data-dir", t.TempDir())
	stopBench(t, bs)
	s, err := cassandraSession(t)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	fillUsers(t, s, ks, users, channels)
	s.Close()
	t.Logf("%d rows written with gocql in %v", keys, time.Since(start).Round(time.Second))

	dataDir := t.TempDir()
	const window = 120 * time.Second
	type result struct {
		name string
		// stays: the first second from which every second's hit ratio
		// is above 95% (0: none within the window).
		stays           time.Duration
		ratio           []float64 // per second
		served          int64     // commands answered in the window
		warmed          int64     // partition reads of the warm-up in the window
		peakLoads, mean float64   // store reads a second
		warmLog         string
	}
	phase := func(name, warmRate string) result {
		r := result{name: name}
		bs := startBenchServer(t, bin, "--cassandra-hosts", cassandraHosts(), "--cassandra-keyspace", ks,
			"--cache-entries", strconv.Itoa(keys+keys/10), "--data-dir", dataDir, "--warm-rate", warmRate)
		c := redis.NewClient(&redis.Options{Addr: bs.addr, Protocol: 2, MaxRetries: -1})
		defer c.Close()
		load := exec.CommandContext(ctx, rsload, "-addr", bs.addr, "-keys", strconv.Itoa(keys), "-channels", strconv.Itoa(channels),
			"-rate", rps, "-duration", (window + 10*time.Second).String(), "-warmup", "0s", "-label", name)
		var out lockedBuffer
		load.Stdout, load.Stderr = &out, &out
		if err := load.Start(); err != nil {
			t.Fatal(err)
		}
		sample := func() (cmds, loads, warm int64) {
			f := infoFields(t, ctx, c, "all")
			cmds, _ = infoInt(t, f, "total_commands_processed")
			loads, _ = infoInt(t, f, "store_loads")
			warm, _ = infoInt(t, f, "store_warm_loads")
			return
		}
		c0, l0, w0 := sample()
		var sum float64
		tick := time.NewTicker(time.Second)
		for secs := 1; secs <= int(window/time.Second); secs++ {
			<-tick.C
			cmds, l, w := sample()
			ratio := max(0, 1-float64((l-l0)-(w-w0))/max(float64(cmds-c0), 1))
			r.ratio = append(r.ratio, ratio)
			r.served += cmds - c0
			r.warmed += w - w0
			loads := float64(l - l0)
			sum += loads
			r.peakLoads = max(r.peakLoads, loads)
			if ratio < 0.95 {
				r.stays = 0
			} else if r.stays == 0 {
				r.stays = time.Duration(secs) * time.Second
			}
			c0, l0, w0 = cmds, l, w
		}
		tick.Stop()
		r.mean = sum / window.Seconds()
		_ = load.Process.Kill()
		_ = load.Wait()
		stopBench(t, bs)
		for _, line := range strings.Split(bs.out.String(), "\n") {
			if strings.Contains(line, "warm restart") {
				r.warmLog += "\n    " + line
			}
		}
		return r
	}
	results := []result{
		phase("cold start (no list yet)", warmRate),
		phase("warm restart, --warm-rate "+warmRate, warmRate),
		phase("restart, --warm-rate 0", "0"),
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| %d read states (%d users x %d), rsload %s req/s uniform, %v, %d cores | hit ratio > 95%% from second | hit ratio at 1 s / 10 s / 30 s / 60 s / 120 s | commands answered | store reads/s, peak / mean (of them, warm-up reads) |\n| --- | ---: | ---: | ---: | ---: |\n",
		keys, users, channels, rps, window, runtime.NumCPU())
	for _, r := range results {
		stays := "never"
		if r.stays > 0 {
			stays = r.stays.String()
		}
		at := func(sec int) float64 { return 100 * r.ratio[min(sec, len(r.ratio))-1] }
		fmt.Fprintf(&b, "| %s | %s | %.1f%% / %.1f%% / %.1f%% / %.1f%% / %.1f%% | %d | %.0f / %.0f (%d) |\n",
			r.name, stays, at(1), at(10), at(30), at(60), at(120), r.served, r.peakLoads, r.mean, r.warmed)
	}
	for _, r := range results {
		if r.warmLog != "" {
			fmt.Fprintf(&b, "%s:%s\n", r.name, r.warmLog)
		}
	}
	t.Log(b.String())
}

// fillUsers writes users x channels rows as rsload names its keys, one
// UNLOGGED batch per user, 32 in flight.
func fillUsers(t *testing.T, s *gocql.Session, ks string, users, channels int) {
	t.Helper()
	insert := "INSERT INTO " + ks + ".read_states (user_id, channel_id, mention_count, last_message_id) VALUES (?, ?, ?, ?)"
	jobs := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	for range 32 {
		wg.Go(func() {
			for u := range jobs {
				b := s.NewBatch(gocql.UnloggedBatch)
				b.SetConsistency(gocql.LocalQuorum)
				for ch := range channels {
					user, channel := rsloadKey(u*channels+ch, channels)
					b.Query(insert, user, channel, int32(1), int64(1))
				}
				if err := s.ExecuteBatch(b); err != nil {
					once.Do(func() { t.Errorf("filling: %v", err) })
				}
			}
		})
	}
	for u := range users {
		jobs <- u
	}
	close(jobs)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
}

// rsloadKey is rsload's key k: its user and channel ids (cmd/rsload).
func rsloadKey(k, channels int) (user, channel int64) {
	const userBase, channelBase = 100_000_000_000_000_000, 200_000_000_000_000_000
	return userBase + int64(k/channels), channelBase + int64(k%channels)
}
