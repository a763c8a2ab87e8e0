package tests

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestTraceSlow: with --trace-slow, a command at least that slow leaves
// a Go execution trace of the moments before it in <data-dir>/traces,
// and the log names the file. A threshold of 1ns makes every command
// slow; one trace per 10 s at most.
func TestTraceSlow(t *testing.T) {
	sp := startServer(t, "--trace-slow", "1ns")
	ctx := testCtx(t)
	c := sp.goRedis(t, 2)
	for i := range 100 {
		if err := c.Do(ctx, "RSINCR", 7, i, 1).Err(); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(sp.dataDir, "traces")
	var files []string
	for deadline := time.Now().Add(10 * time.Second); len(files) == 0; time.Sleep(20 * time.Millisecond) {
		files, _ = filepath.Glob(filepath.Join(dir, "slow-*.trace"))
		if time.Now().After(deadline) {
			t.Fatalf("no trace in %s:\n%s", dir, sp.out.String())
		}
	}
	if len(files) != 1 {
		t.Fatalf("%d traces for 100 slow commands within 10 s, want 1: %v", len(files), files)
	}
	sp.waitLog("slow command: trace written", 1, 10*time.Second)
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("go 1.")) || len(b) < 1000 {
		t.Fatalf("%s is not a Go execution trace (%d bytes)", files[0], len(b))
	}
}

// TestSlowSeconds: with --slow-seconds, a second whose slowest command
// took at least that long is logged with every delay the server weighs
// and its cause; with --trace-slow too, both see the commands. 1ns makes
// every second with a command slow.
func TestSlowSeconds(t *testing.T) {
	sp := startServer(t, "--slow-seconds", "1ns", "--trace-slow", "1h")
	ctx := testCtx(t)
	c := sp.goRedis(t, 2)
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; strings.Count(sp.out.String(), `msg="slow second"`) < 2; i++ {
		if err := c.Do(ctx, "RSINCR", 7, i, 1).Err(); err != nil {
			t.Fatal(err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("no two slow seconds logged in 10 s of commands:\n%s", sp.out.String())
		}
		time.Sleep(time.Millisecond)
	}
	var line string
	for _, l := range strings.Split(sp.out.String(), "\n") {
		if strings.Contains(l, `msg="slow second"`) {
			line = l
		}
	}
	for _, field := range []string{"cause=", "slowest=", "gc_pause=", "flush_shard_lock=", "journal_lock=", "go_sched="} {
		if !strings.Contains(line, field) {
			t.Errorf("the slow second's line lacks %s: %s", field, line)
		}
	}
}
