//go:build cassandra

package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestCassandraColdReads measures what a cold cache costs over Cassandra
// (BENCHMARKS.md, "Cold reads"): redis-cli --pipe of 200,000 RSINCR on new
// read states (2,000 users x 100 channels), a cold RSMGET of 100 channels
// after a restart (database reads per command, latency), and
// redis-benchmark with 50 clients on a cold cache. With
// READSTATES_BASELINE_REV set to a git revision, the same runs are made
// with the server built from it, in the same run, for a before/after.
func TestCassandraColdReads(t *testing.T) {
	if os.Getenv("READSTATES_BENCH") != "1" {
		t.Skip("a measurement, not a test: set READSTATES_BENCH=1 to run it")
	}
	requireCassandra(t)
	cli := requireTool(t, "redis-cli")
	requireTool(t, "redis-benchmark")
	t.Setenv("READSTATES_SERVER_RACE", "0")
	type build struct{ name, bin string }
	builds := []build{{"this tree", filepath.Join(t.TempDir(), "readstates")}}
	if err := buildServer(builds[0].bin); err != nil {
		t.Fatal(err)
	}
	if rev := os.Getenv("READSTATES_BASELINE_REV"); rev != "" {
		builds = append([]build{{"baseline " + rev, buildRevision(t, rev)}}, builds...)
	}
	var report strings.Builder
	fmt.Fprintf(&report, "\n| build | pipe: 200,000 RSINCR, new read states | cold RSMGET of 100: store reads per command | cold RSMGET: median / p99 ms | redis-benchmark -c 50 RSINCR, cold: req/s |\n| --- | ---: | ---: | ---: | ---: |\n")
	for i, b := range builds {
		ks := cassandraKeyspace(t)
		args := []string{"--cassandra-hosts", cassandraHosts(), "--cassandra-keyspace", ks,
			"--cache-entries", "1000000", "--shutdown-timeout", "5m", "--data-dir", t.TempDir()}
		ctx := longCtx(t, 20*time.Minute)
		const users, channels = 2000, 100
		userBase := int64(7_000_000_000 + i*10_000_000)

		// 1. The pipe, as a user would: redis-cli --pipe.
		var pipe bytes.Buffer
		for u := range int64(users) {
			for ch := range int64(channels) {
				pipe.WriteString(respCmd("RSINCR", strconv.FormatInt(userBase+u, 10), strconv.FormatInt(ch, 10), "1"))
			}
		}
		bs := startBenchServer(t, b.bin, args...)
		host, port := splitAddr(t, bs.addr)
		start := time.Now()
		cmd := exec.CommandContext(ctx, cli, "-h", host, "-p", port, "--pipe")
		cmd.Stdin = &pipe
		out, err := cmd.CombinedOutput()
		pipeTime := time.Since(start)
		if err != nil || !strings.Contains(string(out), "errors: 0, replies: 200000") {
			t.Fatalf("%s: redis-cli --pipe: %v\n%s", b.name, err, out)
		}
		stopBench(t, bs)

		// 2. Cold RSMGETs: a new process, its cache empty.
		bs = startBenchServer(t, b.bin, args...)
		c := redis.NewClient(&redis.Options{Addr: bs.addr, Protocol: 2, MaxRetries: -1})
		loads0 := storeLoads(t, ctx, c)
		var lat []time.Duration
		chArgs := make([]any, 0, channels+2)
		for u := range int64(200) {
			chArgs = append(chArgs[:0], "RSMGET", userBase+u*10)
			for ch := range int64(channels) {
				chArgs = append(chArgs, ch)
			}
			start := time.Now()
			got, err := c.Do(ctx, chArgs...).Slice()
			lat = append(lat, time.Since(start))
			if err != nil || len(got) != channels {
				t.Fatalf("%s: RSMGET of a cold user: %d states, %v", b.name, len(got), err)
			}
			if st := got[channels-1].([]any); st[0].(int64) != 1 {
				t.Fatalf("%s: RSMGET of a cold user: %v, want mention_count 1", b.name, st)
			}
		}
		perCmd := float64(storeLoads(t, ctx, c)-loads0) / 200
		slices.Sort(lat)
		c.Close()
		stopBench(t, bs)

		// 3. redis-benchmark, 50 clients, on a cold cache: random users and
		// channels, each new.
		bs = startBenchServer(t, b.bin, args...)
		host, port = splitAddr(t, bs.addr)
		start = time.Now()
		bench := exec.CommandContext(ctx, "redis-benchmark", "-h", host, "-p", port, "-q", "-c", "50", "-n", "100000",
			"-r", "1000000", "RSINCR", "__rand_int__", "__rand_int__")
		bout, err := bench.CombinedOutput()
		if err != nil {
			t.Fatalf("%s: redis-benchmark: %v\n%s", b.name, err, bout)
		}
		rps := "?"
		if m := rpsLine.FindStringSubmatch(string(bout)); m != nil {
			rps = m[2]
		}
		last := strings.TrimSpace(string(bout))
		last = last[strings.LastIndexByte(last, '\r')+1:]
		t.Logf("%s: redis-benchmark took %v: %s", b.name, time.Since(start).Round(time.Millisecond), last)
		stopBench(t, bs)

		fmt.Fprintf(&report, "| %s | %.1f s, %.0f commands/s | %.2f | %.1f / %.1f | %s |\n", b.name,
			pipeTime.Seconds(), 200_000/pipeTime.Seconds(), perCmd,
			float64(lat[len(lat)/2].Microseconds())/1000, float64(lat[len(lat)*99/100].Microseconds())/1000, rps)
	}
	fmt.Fprintf(&report, "\n(1-node Cassandra on the same machine, %d cores)\n", runtime.NumCPU())
	t.Log(report.String())
}

// storeLoads is INFO's store_loads.
func storeLoads(t *testing.T, ctx context.Context, c *redis.Client) int64 {
	t.Helper()
	n, ok := infoInt(t, infoFields(t, ctx, c, "persistence"), "store_loads")
	if !ok {
		t.Fatal("INFO has no store_loads")
	}
	return n
}

// stopBench stops a bench server with SIGTERM (its final flush) and waits.
func stopBench(t *testing.T, bs *benchServer) {
	t.Helper()
	if err := bs.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bs.done:
	case <-time.After(5 * time.Minute):
		t.Fatalf("server still running 5 minutes after SIGTERM")
	}
}

// buildRevision builds the server of a git revision of this repository,
// for a before/after in one run.
func buildRevision(t *testing.T, rev string) string {
	t.Helper()
	dir := t.TempDir()
	archive := exec.Command("sh", "-c", "git -C \"$(git rev-parse --show-toplevel)\" archive "+rev+" | tar -x -C "+dir)
	if out, err := archive.CombinedOutput(); err != nil {
		t.Fatalf("git archive %s: %v\n%s", rev, err, out)
	}
	bin := filepath.Join(t.TempDir(), "readstates-"+rev)
	build := exec.Command("go", "build", "-o", bin, "./cmd/readstates")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building %s: %v\n%s", rev, err, out)
	}
	return bin
}
