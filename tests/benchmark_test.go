package tests

import (
	"bytes"
	"context"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var rpsLine = regexp.MustCompile(`(?m)(?:^|\r)\s*([^\r\n:]+): ([0-9.]+) requests per second`)

// redisBenchmark runs redis-benchmark -q against sp and returns, per test
// name, the requests per second it reported. redis-benchmark exits 1 on
// the first error reply ("Error from server: ..."), so exit 0 means none.
func redisBenchmark(t *testing.T, sp *serverProc, args ...string) map[string]float64 {
	t.Helper()
	bin := requireTool(t, "redis-benchmark")
	host, port := splitAddr(t, sp.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	full := append([]string{"-h", host, "-p", port, "-q"}, args...)
	cmd := exec.CommandContext(ctx, bin, full...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	text := out.String()
	if err != nil {
		t.Fatalf("redis-benchmark %s: %v\n%s", strings.Join(args, " "), err, text)
	}
	if strings.Contains(text, "Error") || strings.Contains(text, "error") {
		t.Errorf("redis-benchmark %s reported an error:\n%s", strings.Join(args, " "), text)
	}
	rps := map[string]float64{}
	for _, m := range rpsLine.FindAllStringSubmatch(text, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil || v <= 0 {
			t.Errorf("redis-benchmark %s: bad rate %q in %q", strings.Join(args, " "), m[2], m[0])
		}
		rps[strings.TrimSpace(m[1])] = v
	}
	if len(rps) == 0 {
		t.Fatalf("redis-benchmark %s printed no \"requests per second\":\n%s", strings.Join(args, " "), text)
	}
	t.Logf("redis-benchmark %s: %v", strings.Join(args, " "), rps)
	return rps
}

// TestRedisBenchmark runs redis-benchmark as its users will: RSINCR on
// random zero-padded ids (__rand_int__), pipelined and not, and PING; then
// checks exact counts on a fixed read state hammered by 20 clients.
func TestRedisBenchmark(t *testing.T) {
	requireTool(t, "redis-benchmark")
	sp := startServer(t)
	ctx := testCtx(t)
	c := sp.goRedis(t, 2)

	rps := redisBenchmark(t, sp, "-n", "50000", "-r", "100000", "-c", "20", "-P", "16", "RSINCR", "__rand_int__", "__rand_int__")
	if _, ok := rps["RSINCR __rand_int__ __rand_int__"]; !ok {
		t.Errorf("no rate for the RSINCR run: %v", rps)
	}
	redisBenchmark(t, sp, "-n", "5000", "-r", "100000", "-c", "20", "-P", "1", "RSINCR", "__rand_int__", "__rand_int__")
	redisBenchmark(t, sp, "-n", "3000", "-r", "1000", "-c", "10", "RSMGET", "__rand_int__", "__rand_int__", "__rand_int__", "__rand_int__")
	rps = redisBenchmark(t, sp, "-n", "5000", "-c", "10", "-t", "ping")
	for _, name := range []string{"PING_INLINE", "PING_MBULK"} {
		if _, ok := rps[name]; !ok {
			t.Errorf("redis-benchmark -t ping: no %s rate in %v", name, rps)
		}
	}

	size, err := c.DBSize(ctx).Result()
	if err != nil || size <= 0 {
		t.Errorf("DBSIZE after the benchmark: got %d, %v, want > 0", size, err)
	}
	// __rand_int__ is 12 zero-padded digits: both spellings of an id name
	// the same read state.
	a, err := c.Do(ctx, "RSGET", "000000000042", "000000000042").Int64Slice()
	if err != nil || len(a) != 2 {
		t.Fatalf("RSGET 000000000042 000000000042: got %v, %v", a, err)
	}
	if b, err := c.Do(ctx, "RSGET", 42, 42).Int64Slice(); err != nil || !slices.Equal(a, b) {
		t.Errorf("RSGET 42 42: got %v, %v, want %v (the same read state as the zero-padded ids)", b, err, a)
	}

	// Exact counts: with -P 16, redis-benchmark sends whole pipelines, so a
	// multiple of 16 requests is exact.
	redisBenchmark(t, sp, "-n", "1600", "-c", "20", "-P", "16", "RSINCR", "777", "888")
	redisBenchmark(t, sp, "-n", "1000", "-c", "20", "-P", "1", "RSINCR", "777", "888", "2")
	if got, err := c.Do(ctx, "RSGET", 777, 888).Int64Slice(); err != nil || !slices.Equal(got, []int64{3600, 0}) {
		t.Errorf("RSGET 777 888 after 1600 RSINCR and 1000 RSINCR +2: got %v, %v, want [3600 0]", got, err)
	}
}
