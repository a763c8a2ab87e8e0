package persist

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
)

// TestAtomically: a transaction over read states that are not cached
// reads them through first (its no-wait view refuses instead, having run
// nothing), then runs once with every one cached; its changes are written
// behind like any other; an operation outside its keys is refused.
func TestAtomically(t *testing.T) {
	st := newFakeStore()
	ctx := context.Background()
	a, b := cache.Key{User: 1, Channel: 1}, cache.Key{User: 2, Channel: 1}
	st.rows[a] = Record{Key: a, State: cache.State{MentionCount: 10}, Stamp: 1}
	e, err := NewEngine(EngineConfig{Store: st, CacheEntries: 1000, FlushInterval: time.Hour, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	keys := []cache.Key{a, b}
	runs := 0
	move := func(tx ReadStates) {
		runs++
		if _, err := tx.Incr(ctx, a, -1); err != nil {
			t.Errorf("Incr a: %v", err)
		}
		if _, err := tx.Incr(ctx, b, 1); err != nil {
			t.Errorf("Incr b: %v", err)
		}
		if _, err := tx.Get(ctx, cache.Key{User: 3, Channel: 1}); !errors.Is(err, errNotLocked) {
			t.Errorf("Get outside the keys: %v, want errNotLocked", err)
		}
	}
	if err := e.NoWait().Atomically(ctx, keys, move); !errors.Is(err, ErrWouldBlock) || runs != 0 {
		t.Fatalf("no-wait view, keys not cached: %v after %d runs, want ErrWouldBlock and none", err, runs)
	}
	if err := e.Atomically(ctx, keys, move); err != nil || runs != 1 {
		t.Fatalf("Atomically: %v after %d runs, want nil and 1", err, runs)
	}
	if err := e.NoWait().Atomically(ctx, keys, move); err != nil || runs != 2 {
		t.Fatalf("no-wait view, keys cached: %v after %d runs, want nil and 2", err, runs)
	}
	for k, want := range map[cache.Key]int32{a: 8, b: 2} {
		if got, _ := e.Get(ctx, k); got.MentionCount != want {
			t.Errorf("%v: %d, want %d", k, got.MentionCount, want)
		}
	}
	if err := e.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if got := st.state(a).MentionCount; got != 8 {
		t.Errorf("stored %v: %d after Close, want 8", a, got)
	}
}

// TestAtomicallyLoadsConcurrently: the read states a transaction misses
// are read from the database at once, not one round trip after another:
// the loads of its users (one query each) are all in flight before any
// returns.
func TestAtomicallyLoadsConcurrently(t *testing.T) {
	st := newFakeStore()
	st.loadGate = make(chan struct{})
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 1000, FlushInterval: time.Hour})
	ctx := context.Background()
	keys := make([]cache.Key, maxParallelLoads)
	for i := range keys {
		keys[i] = cache.Key{User: int64(i + 1), Channel: int64(i)}
	}
	done := make(chan error, 1)
	go func() {
		done <- e.Atomically(ctx, keys, func(tx ReadStates) {
			for _, k := range keys {
				if _, err := tx.Incr(ctx, k, 1); err != nil {
					t.Errorf("Incr %v: %v", k, err)
				}
			}
		})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for st.loads.Load() < int64(len(keys)) {
		if time.Now().After(deadline) {
			close(st.loadGate)
			t.Fatalf("%d of %d loads in flight at once, want all", st.loads.Load(), len(keys))
		}
		time.Sleep(time.Millisecond)
	}
	close(st.loadGate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
