package persist

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
)

type abortStore struct {
	*fakeStore
	userGate  chan struct{} // first LoadUser waits for it
	userIn    chan struct{}
	userCalls atomic.Int32
	slowKey   cache.Key
	slowGate  chan struct{} // Load(slowKey) waits, then fails
	slowIn    chan struct{}
	slowCalls atomic.Int32
}

func (s *abortStore) LoadUser(ctx context.Context, user int64, limit int) ([]Record, error) {
	if s.userCalls.Add(1) == 1 {
		close(s.userIn)
		<-s.userGate
	}
	return s.fakeStore.LoadUser(ctx, user, limit)
}

func (s *abortStore) Load(ctx context.Context, k cache.Key) (cache.State, int64, error) {
	if k == s.slowKey && s.slowCalls.Add(1) == 1 {
		close(s.slowIn)
		<-s.slowGate
		return cache.State{}, 0, errors.New("read timeout")
	}
	return s.fakeStore.Load(ctx, k)
}

// TestAbortedPlaceholderIsRemoved: a partition read that found another
// miss's placeholder counted the key as in memory; when that miss's own
// read failed (Abort), the user must not stay marked complete, or the key
// would be served as never written (found by review).
func TestAbortedPlaceholderIsRemoved(t *testing.T) {
	const u = 42
	fs := newFakeStore()
	for c := int64(1); c <= 3; c++ {
		k := cache.Key{User: u, Channel: c}
		fs.rows[k] = Record{Key: k, State: cache.State{MentionCount: int32(c), LastMessageID: 100 * c}, Stamp: 10}
	}
	k1, k2, k3 := cache.Key{User: u, Channel: 1}, cache.Key{User: u, Channel: 2}, cache.Key{User: u, Channel: 3}
	st := &abortStore{fakeStore: fs, userGate: make(chan struct{}), userIn: make(chan struct{}),
		slowKey: k2, slowGate: make(chan struct{}), slowIn: make(chan struct{})}
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 10_000, FlushInterval: time.Hour})
	ctx := context.Background()

	aDone := make(chan error, 1)
	go func() { _, err := e.Get(ctx, k1); aDone <- err }() // F1 owner
	<-st.userIn
	bDone := make(chan error, 1)
	go func() { _, err := e.Get(ctx, k2); bDone <- err }() // reserves k2, waits on F1
	time.Sleep(100 * time.Millisecond)
	e.removed(cache.Key{User: u, Channel: 99}) // any removal of the user (e.g. an ack) during F1
	close(st.userGate)
	if err := <-aDone; err != nil {
		t.Fatal(err)
	}
	<-st.slowIn // B now reads k2 alone (F1 was overtaken), placeholder held
	time.Sleep(userRereadAfter + 100*time.Millisecond)
	if s, err := e.Get(ctx, k3); err != nil || s.MentionCount != 3 { // F2: Insert(k2) finds B's placeholder
		t.Fatalf("k3: %+v %v", s, err)
	}
	close(st.slowGate) // B's read fails: Abort(k2)
	if err := <-bDone; err == nil {
		t.Fatal("B should have failed")
	}
	s, err := e.Get(ctx, k2)
	if err != nil || s.MentionCount != 2 || s.LastMessageID != 200 {
		t.Fatalf("STALE READ: k2 = %+v (%v), store holds {2 200}", s, err)
	}
}

type snapStore struct {
	*fakeStore
	gate chan struct{}
}

// LoadUser snapshots at once and answers when the gate opens (a query
// whose snapshot precedes a write that lands before the answer arrives).
func (s *snapStore) LoadUser(ctx context.Context, user int64, limit int) ([]Record, error) {
	recs, err := s.fakeStore.LoadUser(ctx, user, limit)
	<-s.gate
	return recs, err
}

// TestInsertCheckIsAtomicWithAck: a partition read's answer is not
// inserted for a key whose newer state was written and taken off the
// queue (ack) between the generation check and the queue check (found by
// review; the window is made wide by holding mu).
func TestInsertCheckIsAtomicWithAck(t *testing.T) {
	const u = 77
	k := cache.Key{User: u, Channel: 1}
	fs := newFakeStore()
	fs.rows[k] = Record{Key: k, State: cache.State{MentionCount: 1, LastMessageID: 100}, Stamp: 10}
	st := &snapStore{fakeStore: fs, gate: make(chan struct{})}
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 10_000, FlushInterval: time.Hour})
	ctx := context.Background()
	s1 := cache.State{MentionCount: 5, LastMessageID: 500}

	// k's newer state S1 is pending (evicted dirty earlier; that eviction's
	// bump precedes the query below).
	time.Sleep(50 * time.Millisecond) // the writers are parked on wake (none is sent)
	e.mu.Lock()
	e.mu.pending[k] = pendingRecord{state: s1, stamp: 20, since: time.Now().UnixNano()}
	e.mu.queue.pushBack(k)
	e.mu.Unlock()

	done := make(chan struct{})
	go func() { defer close(done); e.loadUser(ctx, u) }() // a miss of another channel, or Warm
	time.Sleep(50 * time.Millisecond)                     // query snapshotted: S0
	e.mu.Lock()
	close(st.gate)
	time.Sleep(100 * time.Millisecond) // fillUser: Insert(k) -> ok(): gen matches, now waits for mu
	// ack of k, exactly as Engine.ack does it under mu, after the store write.
	fs.Write(ctx, []Record{{Key: k, State: s1, Stamp: 20}})
	delete(e.mu.pending, k)
	e.mu.queue.size-- // (taken by the writer before; keep the queue's count consistent)
	e.mu.queue = newWriteQueue(e.mu.pending, 16)
	e.removed(k)
	e.mu.Unlock()
	<-done
	got, err := e.Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if got != s1 {
		t.Fatalf("STALE READ: cache serves %+v, the newest acknowledged state is %+v", got, s1)
	}
}

// TestMovesStayWhole: transactions move counts between two read states of
// a user while partition reads, evictions, flushes and acks race (a tiny
// cache, slow writes, many writers); every transaction that reads both
// sees their sum unchanged, and so does the store at the end.
func TestMovesStayWhole(t *testing.T) {
	st := newFakeStore()
	st.writeDelay = 30 * time.Microsecond
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 64, FlushInterval: 5 * time.Millisecond,
		MaxPending: 32, WriteBatch: 8, Writers: 4})
	ctx := context.Background()
	const users, sum = 40, 1000
	for u := range int64(users) {
		if _, err := e.Incr(ctx, cache.Key{User: u, Channel: 1}, sum); err != nil {
			t.Fatal(err)
		}
	}
	var (
		wg     sync.WaitGroup
		failed atomic.Bool
	)
	for w := range 6 {
		wg.Go(func() {
			for i := range 1500 {
				if failed.Load() {
					return
				}
				u := int64((i*7 + w) % users)
				a, b := cache.Key{User: u, Channel: 1}, cache.Key{User: u, Channel: 2}
				var err error
				if w%2 == 0 {
					err = e.Atomically(ctx, []cache.Key{a, b}, func(tx ReadStates) {
						if n, _ := tx.Get(ctx, a); n.MentionCount > 0 {
							tx.Incr(ctx, a, -1)
							tx.Incr(ctx, b, 1)
						}
					})
				} else {
					err = e.Atomically(ctx, []cache.Key{a, b}, func(tx ReadStates) {
						x, _ := tx.Get(ctx, a)
						y, _ := tx.Get(ctx, b)
						if x.MentionCount+y.MentionCount != sum && !failed.Swap(true) {
							t.Errorf("user %d: %d + %d in one transaction, want %d", u, x.MentionCount, y.MentionCount, sum)
						}
					})
				}
				if err != nil && !strings.Contains(err.Error(), "evicted") { // a cache this small may refuse
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for u := range int64(users) {
		x, y := st.state(cache.Key{User: u, Channel: 1}), st.state(cache.Key{User: u, Channel: 2})
		if x.MentionCount+y.MentionCount != sum {
			t.Errorf("store, user %d: %d + %d, want %d", u, x.MentionCount, y.MentionCount, sum)
		}
	}
	if s := e.Stats(); s.Evictions == 0 || s.UserLoads == 0 {
		t.Fatalf("no evictions or partition reads: %+v", s)
	}
}
