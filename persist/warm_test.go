package persist

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
)

func TestUserListRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "users")
	want := []int64{5, -1, 1 << 62, 0, 42}
	if err := WriteUserList(path, want); err != nil {
		t.Fatal(err)
	}
	got, err := ReadUserList(path)
	if err != nil || !slices.Equal(got, want) {
		t.Fatalf("ReadUserList = %v, %v; want %v", got, err, want)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("the list is still there after it was read: %v", err)
	}
	if got, err := ReadUserList(path); err != nil || got != nil {
		t.Fatalf("ReadUserList of no file = %v, %v; want nothing", got, err)
	}
	// A damaged list is an error, never users that were not listed.
	if err := WriteUserList(path, want); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	data[len(data)-7] ^= 1
	os.WriteFile(path, data, 0o644)
	if got, err := ReadUserList(path); err == nil {
		t.Fatalf("a damaged list read as %v", got)
	}
}

// TestWarm: the users listed at shutdown are read back, one query each,
// at the rate asked for, and their read states are then hits.
func TestWarm(t *testing.T) {
	st := newFakeStore()
	const users, channels = 20, 10
	for u := range int64(users) {
		for c := range int64(channels) {
			k := cache.Key{User: u, Channel: c}
			st.rows[k] = Record{Key: k, State: cache.State{MentionCount: int32(u + c)}, Stamp: 1}
		}
	}
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 10_000, FlushInterval: time.Hour})
	list := make([]int64, users)
	for i := range list {
		list[i] = int64(users - 1 - i)
	}
	start := time.Now()
	read, failed := e.Warm(context.Background(), list, 100, nil)
	took := time.Since(start)
	if read != users || failed != 0 || st.userLoads.Load() != users || e.Stats().WarmLoads != users {
		t.Fatalf("Warm read %d users (%d failed, %d partition reads, WarmLoads %d), want %d", read, failed, st.userLoads.Load(), e.Stats().WarmLoads, users)
	}
	if took < 150*time.Millisecond {
		t.Fatalf("20 users at 100 a second took %v: the rate was not kept", took)
	}
	loads := st.loads.Load()
	for u := range int64(users) {
		for c := range int64(channels) {
			if s, err := e.Get(context.Background(), cache.Key{User: u, Channel: c}); err != nil || s.MentionCount != int32(u+c) {
				t.Fatalf("%d/%d after Warm: %+v, %v", u, c, s, err)
			}
		}
	}
	if st.loads.Load() != loads {
		t.Fatal("read states Warm read back were read again")
	}
	got := e.CachedUsers(nil)
	slices.Sort(got)
	if len(got) != users || got[0] != 0 || got[users-1] != users-1 {
		t.Fatalf("CachedUsers = %v", got)
	}
	if odd := e.CachedUsers(func(u int64) bool { return u%2 == 1 }); len(odd) != users/2 || slices.ContainsFunc(odd, func(u int64) bool { return u%2 == 0 }) {
		t.Fatalf("CachedUsers of the odd users = %v", odd)
	}
}

// TestWarmGuard: a user the guard refuses is not read; one it lets
// through is read, and exit follows the read.
func TestWarmGuard(t *testing.T) {
	st := newFakeStore()
	for u := range int64(10) {
		k := cache.Key{User: u, Channel: 1}
		st.rows[k] = Record{Key: k, State: cache.State{MentionCount: 1}, Stamp: 1}
	}
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 10_000, FlushInterval: time.Hour})
	var entered, exited atomic.Int64
	read, _ := e.Warm(context.Background(), []int64{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, 1e6, func(u int64) (func(), bool) {
		if u%2 == 0 {
			return nil, false
		}
		entered.Add(1)
		return func() {
			if read, _, _ := e.readWhole(u, anyMark); !read {
				t.Errorf("exit of user %d before its read", u)
			}
			exited.Add(1)
		}, true
	})
	if read != 5 || st.userLoads.Load() != 5 || entered.Load() != 5 || exited.Load() != 5 {
		t.Fatalf("read %d, partition reads %d, entered %d, exited %d: want the 5 odd users", read, st.userLoads.Load(), entered.Load(), exited.Load())
	}
	if users := e.CachedUsers(nil); slices.ContainsFunc(users, func(u int64) bool { return u%2 == 0 }) {
		t.Fatalf("a refused user was read: cached %v", users)
	}
}
