package tests

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWarmRestart: a graceful shutdown lists the users in the cache in
// --data-dir; the next start serves at once and reads their partitions
// back in the background, one read each, so that their read states are
// hits again before any client asks. The list is read once and removed,
// so a later crash cannot bring back a stale one.
func TestWarmRestart(t *testing.T) {
	sp := startServer(t, "--warm-rate", "500")
	ctx := testCtx(t)
	c := sp.goRedis(t, 3)
	const users, channels = 40, 25
	for u := range int64(users) {
		pipe := c.Pipeline()
		for ch := range int64(channels) {
			pipe.Do(ctx, "RSINCR", 1000+u, ch, u+ch+1)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			t.Fatal(err)
		}
	}
	sp.restart()
	if !strings.Contains(sp.out.String(), "warm restart: users listed for the next start") {
		t.Fatalf("no user list at shutdown:\n%s", sp.out.String())
	}
	c = sp.goRedis(t, 3)
	deadline := time.Now().Add(30 * time.Second)
	for {
		f := infoFields(t, ctx, c, "all")
		if n, _ := infoInt(t, f, "store_user_loads"); n >= users {
			if hits, _ := infoInt(t, f, "cached_read_states"); hits != users*channels {
				t.Fatalf("after the warm-up: %d read states cached, want %d", hits, users*channels)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the users were not read back within 30s: %v\n%s", f["store_user_loads"], sp.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := os.Stat(filepath.Join(sp.dataDir, "warm-users")); !os.IsNotExist(err) {
		t.Fatalf("the user list is still in --data-dir after it was read: %v", err)
	}
	misses := func() int64 {
		n, _ := infoInt(t, infoFields(t, ctx, c, "stats"), "keyspace_misses")
		return n
	}
	before := misses()
	for u := range int64(users) {
		for ch := range int64(channels) {
			got, err := c.Do(ctx, "RSGET", 1000+u, ch).Int64Slice()
			if err != nil || got[0] != u+ch+1 {
				t.Fatalf("RSGET %d %d after a warm restart: %v, %v; want %d", 1000+u, ch, got, err, u+ch+1)
			}
		}
	}
	if n := misses() - before; n != 0 {
		t.Fatalf("%d misses on read states the warm restart read back, want 0", n)
	}
}
