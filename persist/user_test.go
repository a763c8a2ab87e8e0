package persist

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
)

// TestColdUserOneQuery: the first miss of a user reads the user's
// partition once; RSMGET's other channels are then hits, and a channel
// the user never had costs no query at all.
func TestColdUserOneQuery(t *testing.T) {
	st := newFakeStore()
	for c := range int64(100) {
		k := cache.Key{User: 7, Channel: c}
		st.rows[k] = Record{Key: k, State: cache.State{MentionCount: int32(c), LastMessageID: 1000 + c}, Stamp: 10 + c}
	}
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 100_000, FlushInterval: time.Hour})
	ctx := context.Background()
	chans := make([]int64, 100)
	for i := range chans {
		chans[i] = int64(i)
	}
	out := make([]cache.State, len(chans))
	if err := e.GetMany(ctx, 7, chans, out); err != nil {
		t.Fatal(err)
	}
	for i, s := range out {
		if s.MentionCount != int32(i) || s.LastMessageID != 1000+int64(i) {
			t.Fatalf("channel %d: %+v", i, s)
		}
	}
	if n := st.loads.Load(); n != 1 {
		t.Fatalf("a cold multi-get of 100 channels made %d store reads, want 1", n)
	}
	// New channels of a user read whole: no query.
	for c := int64(100); c < 150; c++ {
		if n, err := e.Incr(ctx, cache.Key{User: 7, Channel: c}, 1); err != nil || n != 1 {
			t.Fatalf("Incr of a new channel %d: %d, %v", c, n, err)
		}
	}
	s := e.Stats()
	if st.loads.Load() != 1 || s.MissesWithoutLoad != 50 || s.UserLoads != 1 {
		t.Fatalf("new channels of a user read whole: %d store reads, stats %+v; want 1 and 50 misses without a read", st.loads.Load(), s)
	}
	// The stamps of the loaded states bound the next ones.
	if e.HighStamp() < 10+99 {
		t.Fatalf("HighStamp %d is below a loaded stamp", e.HighStamp())
	}
}

// TestUserLargerThanPage: with a page smaller than the partition, the
// states outside the page are read one at a time, and every value is
// right; the user is never taken for complete.
func TestUserLargerThanPage(t *testing.T) {
	st := newFakeStore()
	for c := range int64(50) {
		k := cache.Key{User: 3, Channel: c}
		st.rows[k] = Record{Key: k, State: cache.State{MentionCount: int32(c + 1)}, Stamp: 5}
	}
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 10_000, FlushInterval: time.Hour, UserPage: 10})
	ctx := context.Background()
	for c := int64(49); c >= 0; c-- {
		s, err := e.Get(ctx, cache.Key{User: 3, Channel: c})
		if err != nil || s.MentionCount != int32(c+1) {
			t.Fatalf("channel %d: %+v, %v", c, s, err)
		}
	}
	// The page (channels 0-9) came with the first miss; 40 others alone.
	if n := st.loads.Load(); n != 41 {
		t.Fatalf("%d store reads, want 41 (one page, then 40 single reads)", n)
	}
	if s, err := e.Get(ctx, cache.Key{User: 3, Channel: 99}); err != nil || s != (cache.State{}) {
		t.Fatalf("a channel never written: %+v, %v", s, err)
	}
	if e.Stats().MissesWithoutLoad != 0 {
		t.Fatal("a user larger than the page was taken for complete")
	}
}

// TestUserLoadNeverServesOvertaken: states written and dropped from
// memory while a read of their user's partition was under way are not
// filled from that read's older answer (the generations), and queued
// states are never replaced by it.
func TestUserLoadNeverServesOvertaken(t *testing.T) {
	for _, page := range []int{1000, 3} {
		t.Run(fmt.Sprintf("page=%d", page), func(t *testing.T) {
			st := newFakeStore()
			st.writeDelay = 50 * time.Microsecond
			// One shard of 256: a partition of 40 fits (a quarter of it).
			e := startEngine(t, EngineConfig{Store: st, CacheEntries: 256, FlushInterval: 5 * time.Millisecond,
				MaxPending: 16, WriteBatch: 8, Writers: 2, UserPage: page})
			// Few users, many channels each, a cache smaller than the key
			// space: partition reads race evictions, flushes and acks.
			const workers, ops, users, channels = 8, 6000, 12, 40
			want := make([][]int64, workers)
			done := make(chan struct{})
			for w := range workers {
				want[w] = make([]int64, users*channels)
				go func() {
					defer func() { done <- struct{}{} }()
					for i := range ops {
						j := (i*7919 + w*31) % (users * channels)
						// Each worker owns the channels ≡ w mod workers.
						j -= j % workers
						j += w
						if j >= users*channels {
							continue
						}
						k := cache.Key{User: int64(j / channels), Channel: int64(j % channels)}
						if _, err := e.Incr(context.Background(), k, 1); err != nil {
							t.Error(err)
							return
						}
						want[w][j]++
					}
				}()
			}
			for range workers {
				<-done
			}
			if err := e.Sync(context.Background()); err != nil {
				t.Fatal(err)
			}
			for w := range workers {
				for j, n := range want[w] {
					if n == 0 {
						continue
					}
					k := cache.Key{User: int64(j / channels), Channel: int64(j % channels)}
					if got := st.state(k).MentionCount; int64(got) != n {
						t.Fatalf("store %v: got %d, want %d", k, got, n)
					}
					if got, err := e.Get(context.Background(), k); err != nil || int64(got.MentionCount) != n {
						t.Fatalf("engine %v: got %d %v, want %d", k, got.MentionCount, err, n)
					}
				}
			}
			if s := e.Stats(); s.Evictions == 0 || s.UserLoads == 0 || (page > channels && s.MissesWithoutLoad == 0) {
				t.Fatalf("the test did not exercise evictions, partition reads and users read whole: %+v", s)
			}
		})
	}
}

// TestAckKeepsUserWhole: a write's ack takes nothing out of memory when
// the key is still cached, so a user read whole stays whole (a partition
// is not read again for every write of it); when the key left the cache
// while its write was under way, the ack makes the user's reads count
// nothing, and the key is read from the store.
func TestAckKeepsUserWhole(t *testing.T) {
	st := newFakeStore()
	for c := range int64(10) {
		k := cache.Key{User: 7, Channel: c}
		st.rows[k] = Record{Key: k, State: cache.State{MentionCount: 1}, Stamp: 1}
	}
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 100_000, FlushInterval: time.Hour})
	ctx := context.Background()
	for c := range int64(10) {
		if n, err := e.Incr(ctx, cache.Key{User: 7, Channel: c}, 1); err != nil || n != 2 {
			t.Fatalf("Incr of channel %d: %d, %v", c, n, err)
		}
	}
	if err := e.Sync(ctx); err != nil { // ten writes, ten acks, all cached
		t.Fatal(err)
	}
	for c := int64(100); c < 110; c++ {
		if n, err := e.Incr(ctx, cache.Key{User: 7, Channel: c}, 1); err != nil || n != 1 {
			t.Fatalf("Incr of a new channel %d: %d, %v", c, n, err)
		}
	}
	if n, s := st.loads.Load(), e.Stats(); n != 1 || s.MissesWithoutLoad != 10 {
		t.Fatalf("after acks of cached keys: %d store reads, %d misses without one; want 1 and 10", n, s.MissesWithoutLoad)
	}

	// Channel 0 is handed over, then leaves the cache while its write
	// fails and waits; a partition read meanwhile finds it pending, so
	// counts it in memory. Once the write is acked it is in neither.
	st.failWrite.Store(true)
	k := cache.Key{User: 7, Channel: 0}
	if n, err := e.Incr(ctx, k, 5); err != nil || n != 7 {
		t.Fatalf("Incr: %d, %v", n, err)
	}
	if err := e.flushAll(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if dropped, _ := e.table.Drop(func(d cache.Key) bool { return d == k }, false); dropped != 1 {
		t.Fatalf("dropped %d, want channel 0", dropped)
	}
	time.Sleep(userRereadAfter) // the next miss may read the partition again
	if s, err := e.Get(ctx, cache.Key{User: 7, Channel: 50}); err != nil || s != (cache.State{}) {
		t.Fatalf("a channel never written: %+v, %v", s, err)
	}
	if n := st.userLoads.Load(); n != 2 {
		t.Fatalf("%d partition reads, want 2", n)
	}
	st.failWrite.Store(false)
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if s, err := e.Get(ctx, k); err != nil || s.MentionCount != 7 {
		t.Fatalf("channel 0 after its write: %+v, %v; want the written count 7", s, err)
	}
}

// TestPartitionReadFreshness: a partition read answers the miss that
// began it even if something of the user left memory meanwhile (it began
// after the miss checked the queue: as fresh as a read of the key alone);
// it does not answer a miss that joined it after an overtaking, nor any
// miss once the user was dropped (Discard: another node may have written
// the user since the read began).
func TestPartitionReadFreshness(t *testing.T) {
	ctx := context.Background()
	setup := func(t *testing.T) (*fakeStore, *Engine) {
		st := newFakeStore()
		for c := range int64(4) {
			k := cache.Key{User: 7, Channel: c}
			st.rows[k] = Record{Key: k, State: cache.State{MentionCount: int32(c + 1)}, Stamp: 10}
		}
		st.loadGate = make(chan struct{})
		return st, startEngine(t, EngineConfig{Store: st, CacheEntries: 10_000, FlushInterval: time.Hour})
	}
	get := func(e *Engine, c int64) <-chan error {
		done := make(chan error, 1)
		go func() {
			s, err := e.Get(ctx, cache.Key{User: 7, Channel: c})
			if err == nil && s.MentionCount != int32(c+1) {
				err = fmt.Errorf("Get 7/%d: %+v, want %d mentions", c, s, c+1)
			}
			done <- err
		}()
		return done
	}
	waitUserLoad := func(st *fakeStore) {
		for st.userLoads.Load() == 0 {
			time.Sleep(time.Millisecond)
		}
	}

	t.Run("own read, overtaken", func(t *testing.T) {
		st, e := setup(t)
		a := get(e, 2)
		waitUserLoad(st)
		e.removed(cache.Key{User: 7, Channel: 3}) // the cache's OnRemove
		close(st.loadGate)
		if err := <-a; err != nil {
			t.Fatal(err)
		}
		if n := st.loads.Load(); n != 1 {
			t.Fatalf("%d store reads, want 1 (the miss's own partition read)", n)
		}
		if _, complete, _ := e.readWhole(7, anyMark); complete {
			t.Fatal("a user overtaken during its read was taken for read whole")
		}
	})
	t.Run("joined read, overtaken", func(t *testing.T) {
		st, e := setup(t)
		a := get(e, 1)
		waitUserLoad(st)
		b := get(e, 2) // joins a's read, begun before b checked the queue
		for {
			fs := e.stripe(7)
			fs.mu.Lock()
			_, loading := fs.keys[cache.Key{User: 7, Channel: 2}]
			fs.mu.Unlock()
			if loading {
				break
			}
			time.Sleep(time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // b reaches the partition read
		e.removed(cache.Key{User: 7, Channel: 3})
		close(st.loadGate)
		if err := errors.Join(<-a, <-b); err != nil {
			t.Fatal(err)
		}
		if u, n := st.userLoads.Load(), st.loads.Load(); u != 1 || n != 2 {
			t.Fatalf("%d partition reads and %d reads in all, want 1 and 2 (b's key read alone)", u, n)
		}
	})
	t.Run("own read, user dropped", func(t *testing.T) {
		st, e := setup(t)
		a := get(e, 2)
		waitUserLoad(st)
		e.Discard(func(user int64) bool { return user == 7 })
		close(st.loadGate)
		if err := <-a; err != nil {
			t.Fatal(err)
		}
		// The partition read answers nothing; the key's flight, abandoned
		// too, fills nothing either; the operation's second flight does.
		if n := st.loads.Load(); n != 3 {
			t.Fatalf("%d store reads, want 3 (the dropped user's reads answer nothing)", n)
		}
	})
	t.Run("key read alone, user dropped", func(t *testing.T) {
		// A cluster node fenced while a load outlived its lease: Discard
		// runs between the read and the fill, and the new owner wrote
		// meanwhile. What was read before Discard must not be cached.
		st := newFakeStore()
		for c := range int64(4) {
			k := cache.Key{User: 7, Channel: c}
			st.rows[k] = Record{Key: k, State: cache.State{MentionCount: int32(c + 1)}, Stamp: 10}
		}
		// A page of 2 holds channels 0 and 1: channel 3 is read alone.
		e := startEngine(t, EngineConfig{Store: st, CacheEntries: 10_000, FlushInterval: time.Hour, UserPage: 2})
		k := cache.Key{User: 7, Channel: 3}
		var once sync.Once
		st.loaded = func(got cache.Key) {
			if got != k {
				return
			}
			once.Do(func() {
				e.Discard(func(user int64) bool { return user == 7 })
				st.mu.Lock()
				st.rows[k] = Record{Key: k, State: cache.State{MentionCount: 99}, Stamp: 20}
				st.mu.Unlock()
			})
		}
		s, err := e.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if s.MentionCount != 99 {
			t.Fatalf("Get %v after its user was dropped during the read: %d mentions, want 99 (the newer owner's write)", k, s.MentionCount)
		}
	})
}
