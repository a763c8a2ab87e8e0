package persist

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
)

// TestServesAfterReadThrough: an operation that waited for the database
// changes nothing if, once it answered, the engine no longer serves the
// user (a cluster node whose lease ended meanwhile).
func TestServesAfterReadThrough(t *testing.T) {
	st := newFakeStore()
	k := cache.Key{User: 7, Channel: 1}
	st.rows[k] = Record{Key: k, State: cache.State{MentionCount: 5}, Stamp: 1}
	st.loadGate = make(chan struct{})
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 100, FlushInterval: time.Hour})
	var serving atomic.Bool
	serving.Store(true)
	e.SetServes(func(int64) bool { return serving.Load() })
	done := make(chan error, 1)
	go func() {
		_, err := e.Incr(context.Background(), k, 1)
		done <- err
	}()
	for st.loads.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	serving.Store(false) // the lease ends while the database answers
	close(st.loadGate)
	if err := <-done; !errors.Is(err, ErrNotServed) {
		t.Fatalf("Incr after losing the user: %v, want ErrNotServed", err)
	}
	serving.Store(true)
	if got, err := e.Get(context.Background(), k); err != nil || got.MentionCount != 5 {
		t.Fatalf("the read state after the refused Incr: %+v %v, want 5, unchanged", got, err)
	}
}

// TestDiscardDistrustsWhatAFlushHandsOver: a flush that hands a user's
// changed read state to the write queue while Discard drops that user
// from the cache (the flush reached the entry before Drop did) leaves a
// record read-through must not trust over the Store: the new owner of
// the user may have written a newer state since. Discard runs with the
// flush of the user's shard again and again, the user's shard the last
// that Drop visits, so that the flush often lands while Drop walks the
// others; every record of the user left in the queue must be distrusted.
func TestDiscardDistrustsWhatAFlushHandsOver(t *testing.T) {
	st := newFakeStore()
	st.failWrite.Store(true) // the records stay in the queue
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 1 << 18, FlushInterval: time.Hour})
	t.Cleanup(func() { st.failWrite.Store(false) }) // before Close, so that it ends
	last := e.table.Shards() - 1
	var user int64
	for e.table.ShardOf(user) != last {
		user++
	}
	isUser := func(u int64) bool { return u == user }
	ctx := context.Background()
	inWindow := 0
	const rounds = 50
	for i := range rounds {
		k := cache.Key{User: user, Channel: int64(i)}
		if _, err := e.Incr(ctx, k, 1); err != nil {
			t.Fatal(err)
		}
		flushed := make(chan int)
		go func() {
			n, _ := e.table.Flush(last)
			flushed <- n
		}()
		e.Discard(isUser)
		n := <-flushed
		e.mu.Lock()
		rec, queued := e.mu.pending[k]
		e.mu.Unlock()
		if n > 0 && queued {
			inWindow++
			if !rec.replayed {
				t.Fatalf("round %d: a record the flush handed over during Discard is trusted over the Store", i)
			}
		}
	}
	t.Logf("%d of %d flushes handed the read state over before Drop removed it", inWindow, rounds)
}

// TestDiscardForgetsAPartitionReadEndingDuringIt: a read of a user's
// partition (a warm restart's, a cluster hand-over's) that ends while
// Discard drops the user must not leave the user marked read whole. An
// empty partition puts nothing in the cache for Drop to remove, so such a
// mark would outlive Discard, and once the node served the user again a
// miss would answer "never written" over what another node wrote
// meanwhile. The read ends while Discard walks the flights: Discard's
// check of another user whose read is under way in an earlier stripe
// lets it go and waits for it.
func TestDiscardForgetsAPartitionReadEndingDuringIt(t *testing.T) {
	st := newFakeStore()
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 1 << 16, FlushInterval: time.Hour})
	var user, other int64 = 1, 1
	for e.table.ShardOf(user) != e.table.Shards()-1 {
		user++
	}
	for e.table.ShardOf(other) != 0 {
		other++
	}
	gate := make(chan struct{})
	st.loadGate = gate
	ctx := context.Background()
	read := make(chan struct{})
	go func() {
		e.loadUser(ctx, user)
		close(read)
	}()
	go e.loadUser(ctx, other)
	for st.userLoads.Load() < 2 {
		time.Sleep(50 * time.Microsecond)
	}
	let := false
	e.Discard(func(u int64) bool {
		if u == other && !let {
			let = true
			close(gate)
			<-read
		}
		return u == user || u == other
	})
	if !let {
		t.Fatal("test bug: Discard never looked at the other user's read")
	}
	if read, _, _ := e.readWhole(user, anyMark); read {
		t.Fatalf("user %d is marked read whole after Discard, by a read that began before it", user)
	}
}
