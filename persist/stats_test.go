package persist

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
)

// TestHitsAndMissesCountOnce: keyspace_hits and keyspace_misses count one
// lookup per read state an operation names, as Redis's do, however often
// the read-through looks at the cache again. An operation of the NoWait
// view counts its lookups even if it fails with ErrWouldBlock; its run
// again on the Rerun view counts nothing, whatever was loaded meanwhile
// (an event loop's deferred command, after the prefetch of its keys).
func TestHitsAndMissesCountOnce(t *testing.T) {
	ctx := context.Background()
	type counts struct{ hits, misses uint64 }
	setup := func(t *testing.T) (*Engine, func() counts) {
		st := newFakeStore()
		for c := range int64(4) {
			k := cache.Key{User: 1, Channel: c}
			st.rows[k] = Record{Key: k, State: cache.State{MentionCount: int32(c + 1)}, Stamp: 10}
		}
		// Users 2 and 3 have one row each; their partitions are read
		// whole by their first miss.
		for _, k := range []cache.Key{{User: 2, Channel: 0}, {User: 3, Channel: 0}} {
			st.rows[k] = Record{Key: k, State: cache.State{MentionCount: 5}, Stamp: 10}
		}
		// A page of two: a miss of user 1 reads two of its four rows.
		e := startEngine(t, EngineConfig{Store: st, CacheEntries: 100_000, FlushInterval: time.Hour, UserPage: 2})
		base := e.Stats()
		return e, func() counts {
			s := e.Stats()
			return counts{s.Hits - base.Hits, s.Misses - base.Misses}
		}
	}
	check := func(t *testing.T, what string, got, want counts) {
		t.Helper()
		if got != want {
			t.Fatalf("%s: %d hits, %d misses; want %d, %d", what, got.hits, got.misses, want.hits, want.misses)
		}
	}

	t.Run("read-through", func(t *testing.T) {
		e, since := setup(t)
		if _, err := e.Get(ctx, cache.Key{User: 1, Channel: 0}); err != nil {
			t.Fatal(err)
		}
		check(t, "a cold Get", since(), counts{0, 1})
		if _, err := e.Incr(ctx, cache.Key{User: 1, Channel: 0}, 1); err != nil {
			t.Fatal(err)
		}
		check(t, "then an Incr of it", since(), counts{1, 1})
		if _, err := e.Reset(ctx, cache.Key{User: 2, Channel: 0}, 9, true); err != nil {
			t.Fatal(err)
		}
		check(t, "then a cold Reset", since(), counts{1, 2})
	})

	t.Run("NoWait, then Rerun", func(t *testing.T) {
		e, since := setup(t)
		k := cache.Key{User: 1, Channel: 0}
		if _, err := e.NoWait().Incr(ctx, k, 1); !errors.Is(err, ErrWouldBlock) {
			t.Fatalf("NoWait Incr of a cold read state: %v, want ErrWouldBlock", err)
		}
		check(t, "a NoWait Incr that would block", since(), counts{0, 1})
		if _, err := e.Rerun().Incr(ctx, k, 1); err != nil {
			t.Fatal(err)
		}
		check(t, "its run again", since(), counts{0, 1})
		// Prefetched before the run again, as a deferred command's keys
		// are: still the one miss.
		k2 := cache.Key{User: 2, Channel: 0}
		if _, err := e.NoWait().Get(ctx, k2); !errors.Is(err, ErrWouldBlock) {
			t.Fatalf("NoWait Get of a cold read state: %v, want ErrWouldBlock", err)
		}
		e.Prefetch(ctx, []cache.Key{k2})
		if _, err := e.Rerun().Get(ctx, k2); err != nil {
			t.Fatal(err)
		}
		check(t, "a NoWait Get, a prefetch, its run again", since(), counts{0, 2})
	})

	t.Run("NoWait, filled without a read", func(t *testing.T) {
		e, since := setup(t)
		if _, err := e.Get(ctx, cache.Key{User: 2, Channel: 0}); err != nil {
			t.Fatal(err) // reads user 2 whole
		}
		// A channel user 2 never had: filled on the spot, one miss.
		if n, err := e.NoWait().Incr(ctx, cache.Key{User: 2, Channel: 7}, 1); err != nil || n != 1 {
			t.Fatalf("NoWait Incr of a new channel of a user read whole: %d, %v", n, err)
		}
		check(t, "a cold Get, then a NoWait Incr filled from memory", since(), counts{0, 2})
	})

	t.Run("GetMany", func(t *testing.T) {
		e, since := setup(t)
		if _, err := e.Get(ctx, cache.Key{User: 1, Channel: 0}); err != nil {
			t.Fatal(err) // reads channels 0 and 1 of user 1
		}
		check(t, "a cold Get", since(), counts{0, 1})
		chans := []int64{0, 1, 2, 3}
		out := make([]cache.State, len(chans))
		if err := e.NoWait().GetMany(ctx, 1, chans, out); !errors.Is(err, ErrWouldBlock) {
			t.Fatalf("NoWait GetMany with a channel not cached: %v, want ErrWouldBlock", err)
		}
		check(t, "then a NoWait GetMany that would block", since(), counts{2, 3})
		if err := e.Rerun().GetMany(ctx, 1, chans, out); err != nil {
			t.Fatal(err)
		}
		for i, s := range out {
			if s.MentionCount != int32(i+1) {
				t.Fatalf("channel %d: %+v", i, s)
			}
		}
		check(t, "then its run again", since(), counts{2, 3})
		if err := e.GetMany(ctx, 1, chans, out); err != nil {
			t.Fatal(err)
		}
		check(t, "then a GetMany on the Engine", since(), counts{6, 3})
	})

	t.Run("Atomically", func(t *testing.T) {
		e, since := setup(t)
		k2, k3 := cache.Key{User: 2, Channel: 0}, cache.Key{User: 3, Channel: 0}
		incrAll := func(keys []cache.Key) func(ReadStates) {
			return func(rs ReadStates) {
				for _, k := range keys {
					if _, err := rs.Incr(ctx, k, 1); err != nil {
						t.Error(err)
					}
				}
			}
		}
		// Cold, on the Engine: a miss per read state, however many
		// commands name it.
		keys := []cache.Key{k2, k3, k2}
		if err := e.Atomically(ctx, keys, incrAll(keys)); err != nil {
			t.Fatal(err)
		}
		check(t, "a cold transaction of three Incr of two read states", since(), counts{0, 2})
		// Cached, on NoWait: a hit per read state.
		if err := e.NoWait().Atomically(ctx, keys, incrAll(keys)); err != nil {
			t.Fatal(err)
		}
		check(t, "then the same, cached", since(), counts{2, 2})
		// Cold on NoWait: it counts; prefetched, then run again on
		// Rerun: nothing more.
		k4 := cache.Key{User: 1, Channel: 0}
		keys = []cache.Key{k4, k2, k4}
		if err := e.NoWait().Atomically(ctx, keys, incrAll(keys)); !errors.Is(err, ErrWouldBlock) {
			t.Fatalf("NoWait transaction with a cold read state: %v, want ErrWouldBlock", err)
		}
		check(t, "then a NoWait transaction that would block", since(), counts{3, 3})
		e.Prefetch(ctx, []cache.Key{k4})
		if err := e.Rerun().Atomically(ctx, keys, incrAll(keys)); err != nil {
			t.Fatal(err)
		}
		check(t, "then its run again", since(), counts{3, 3})
	})
}
