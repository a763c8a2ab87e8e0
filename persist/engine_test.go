package persist

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/readstates/readstates/cache"
)

// fakeStore is an in-memory Store with fault injection, for the engine's
// logic tests. It keeps the record with the highest stamp, as a real store.
type fakeStore struct {
	mu        sync.Mutex
	rows      map[cache.Key]Record
	failWrite atomic.Bool
	failLoad  atomic.Bool
	loads     atomic.Int64 // Loads and LoadUsers
	userLoads atomic.Int64
	loadGate  chan struct{} // if set, Load waits for it
	// loaded, if set, is called by Load after it read k, before it returns.
	loaded func(k cache.Key)
	// writeDelay, if set, is how long a Write takes (outside the lock), so
	// concurrent writes overlap.
	writeDelay time.Duration
}

func newFakeStore() *fakeStore { return &fakeStore{rows: map[cache.Key]Record{}} }

func (s *fakeStore) Load(ctx context.Context, k cache.Key) (cache.State, int64, error) {
	s.loads.Add(1)
	if s.loadGate != nil {
		<-s.loadGate
	}
	if s.failLoad.Load() {
		return cache.State{}, 0, fmt.Errorf("fake: %w", ErrUnavailable)
	}
	s.mu.Lock()
	r := s.rows[k]
	s.mu.Unlock()
	if s.loaded != nil {
		s.loaded(k)
	}
	return r.State, r.Stamp, nil
}

func (s *fakeStore) LoadUser(ctx context.Context, user int64, limit int) ([]Record, error) {
	s.loads.Add(1)
	s.userLoads.Add(1)
	if s.loadGate != nil {
		<-s.loadGate
	}
	if s.failLoad.Load() {
		return nil, fmt.Errorf("fake: %w", ErrUnavailable)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var recs []Record
	for k, r := range s.rows {
		if k.User == user {
			r.Key = k
			recs = append(recs, r)
		}
	}
	slices.SortFunc(recs, func(a, b Record) int { return cmp.Compare(a.Key.Channel, b.Key.Channel) })
	return recs[:min(len(recs), limit)], nil
}

func (s *fakeStore) Write(ctx context.Context, recs []Record) error {
	if s.failWrite.Load() {
		return fmt.Errorf("fake: %w", ErrUnavailable)
	}
	if s.writeDelay > 0 {
		time.Sleep(s.writeDelay)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range recs {
		if old, ok := s.rows[r.Key]; !ok || r.Stamp > old.Stamp {
			s.rows[r.Key] = r
		}
	}
	return nil
}

func (s *fakeStore) Close() error { return nil }

func (s *fakeStore) state(k cache.Key) cache.State {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rows[k].State
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startEngine runs an engine until the test ends, then closes it.
func startEngine(t *testing.T, cfg EngineConfig) *Engine {
	t.Helper()
	cfg.Logger = quietLogger()
	e, err := NewEngine(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		closeCtx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		if err := e.Close(closeCtx); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return e
}

func TestEngineReadsThroughAndWritesBehind(t *testing.T) {
	st := newFakeStore()
	st.Write(context.Background(), []Record{{Key: cache.Key{User: 1, Channel: 2}, State: cache.State{MentionCount: 7, LastMessageID: 70}, Stamp: 1}})
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 100, FlushInterval: time.Hour})
	ctx := context.Background()
	if got, err := e.Get(ctx, cache.Key{User: 1, Channel: 2}); err != nil || got != (cache.State{MentionCount: 7, LastMessageID: 70}) {
		t.Fatalf("read-through: got %+v %v", got, err)
	}
	if n, err := e.Incr(ctx, cache.Key{User: 1, Channel: 2}, 3); err != nil || n != 10 {
		t.Fatalf("Incr: got %d %v", n, err)
	}
	if n, err := e.Incr(ctx, cache.Key{User: 5, Channel: 5}, 1); err != nil || n != 1 {
		t.Fatalf("Incr of a new state: got %d %v", n, err)
	}
	if got := st.state(cache.Key{User: 1, Channel: 2}); got.MentionCount != 7 {
		t.Fatalf("written before a flush: %+v", got)
	}
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if got := st.state(cache.Key{User: 1, Channel: 2}); got != (cache.State{MentionCount: 10, LastMessageID: 70}) {
		t.Fatalf("after Sync: %+v", got)
	}
	if got := st.state(cache.Key{User: 5, Channel: 5}); got != (cache.State{MentionCount: 1, LastMessageID: 0}) {
		t.Fatalf("after Sync: %+v", got)
	}
	if s := e.Stats(); s.Dirty != 0 || s.Pending != 0 || s.Writes != 2 || s.FlushCycles == 0 {
		t.Fatalf("stats: %+v", s)
	}
}

func TestEnginePeriodicFlush(t *testing.T) {
	st := newFakeStore()
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 100, FlushInterval: 20 * time.Millisecond})
	e.Reset(context.Background(), cache.Key{User: 3, Channel: 4}, 99, true)
	deadline := time.Now().Add(5 * time.Second)
	for st.state(cache.Key{User: 3, Channel: 4}).LastMessageID != 99 {
		if time.Now().After(deadline) {
			t.Fatal("the periodic flush did not write the change")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEngineCloseWritesEverything(t *testing.T) {
	st := newFakeStore()
	e, err := NewEngine(EngineConfig{Store: st, CacheEntries: 1000, FlushInterval: time.Hour, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		e.Incr(context.Background(), cache.Key{User: int64(i), Channel: 1}, int64(i))
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if got := st.state(cache.Key{User: int64(i), Channel: 1}).MentionCount; got != int32(i) {
			t.Fatalf("state %d: got %d", i, got)
		}
	}
	if _, err := e.Get(context.Background(), cache.Key{User: 9999, Channel: 1}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: got %v, want ErrClosed", err)
	}
}

// TestWriteBackSaysWhenFull: the cache's WriteBack hook says Taken only
// while the queue has room for a key it does not hold. A take that fills
// its last place, and a newer state of a key it holds taken while it is
// full, say TakenFull: the cache keeps sparing the read states in use
// (cache.Table's eviction while refusing).
func TestWriteBackSaysWhenFull(t *testing.T) {
	e, err := NewEngine(EngineConfig{Store: newFakeStore(), CacheEntries: 100, MaxPending: 2, FlushInterval: time.Hour, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	snap := func(ch, mentions int64) cache.Snapshot {
		return cache.Snapshot{Key: cache.Key{User: 1, Channel: ch}, State: cache.State{MentionCount: int32(mentions)}, Stamp: ch*10 + mentions}
	}
	for i, c := range []struct {
		s    cache.Snapshot
		want cache.Handoff
	}{
		{snap(1, 1), cache.Taken},     // room left
		{snap(1, 2), cache.Taken},     // a held key, room left
		{snap(2, 1), cache.TakenFull}, // fills the last place
		{snap(3, 1), cache.Refused},   // full: a new key
		{snap(2, 2), cache.TakenFull}, // full: a held key, replaced
	} {
		if got := e.writeBack(c.s); got != c.want {
			t.Fatalf("offer %d (%v): got %v, want %v", i, c.s.Key, got, c.want)
		}
	}
	e.mu.Lock()
	pending := maps.Clone(e.mu.pending)
	e.mu.Unlock()
	if len(pending) != 2 || pending[snap(1, 0).Key].state.MentionCount != 2 || pending[snap(2, 0).Key].state.MentionCount != 2 {
		t.Fatalf("queued: %+v, want channels 1 and 2 at their newest states", pending)
	}
}

func TestEngineLoadFailureIsAnErrorNotAZeroState(t *testing.T) {
	st := newFakeStore()
	k := cache.Key{User: 1, Channel: 1}
	st.Write(context.Background(), []Record{{Key: k, State: cache.State{MentionCount: 5}, Stamp: 1}})
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 100, FlushInterval: time.Hour})
	st.failLoad.Store(true)
	if _, err := e.Incr(context.Background(), k, 1); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Incr with the store down: got %v, want ErrUnavailable", err)
	}
	st.failLoad.Store(false)
	if n, err := e.Incr(context.Background(), k, 1); err != nil || n != 6 {
		t.Fatalf("Incr after recovery: got %d %v, want 6", n, err)
	}
}

func TestEngineConcurrentMissesShareOneLoad(t *testing.T) {
	st := newFakeStore()
	st.loadGate = make(chan struct{})
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 100, FlushInterval: time.Hour})
	k := cache.Key{User: 8, Channel: 8}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.Incr(context.Background(), k, 1); err != nil {
				t.Error(err)
			}
		}()
	}
	// Let every goroutine reach the flight before the load returns.
	for e.flightCount() == 0 {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
	close(st.loadGate)
	wg.Wait()
	if n := st.loads.Load(); n != 1 {
		t.Fatalf("loads: got %d, want 1", n)
	}
	if got, _ := e.Get(context.Background(), k); got.MentionCount != 20 {
		t.Fatalf("count: got %d, want 20", got.MentionCount)
	}
}

func (e *Engine) flightCount() int {
	n := 0
	for i := range e.stripes {
		fs := &e.stripes[i]
		fs.mu.Lock()
		n += len(fs.keys)
		fs.mu.Unlock()
	}
	return n
}

// TestEngineChurnIsExact: many goroutines on a key space far larger than
// the cache, with flushes; every final value equals the model's.
func TestEngineChurnIsExact(t *testing.T) {
	for _, writers := range []int{1, 4} {
		t.Run(fmt.Sprintf("writers=%d", writers), func(t *testing.T) { testChurn(t, writers) })
	}
}

func testChurn(t *testing.T, writers int) {
	st := newFakeStore()
	st.writeDelay = 100 * time.Microsecond // writes overlap
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 200, FlushInterval: 10 * time.Millisecond, MaxPending: 64, WriteBatch: 16, Writers: writers})
	const workers, ops, users = 8, 3000, 500
	want := make([][]int64, workers) // per worker: its own channel, so counts are exact
	var wg sync.WaitGroup
	for w := range workers {
		want[w] = make([]int64, users)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(w), 1))
			for range ops {
				u := r.IntN(users)
				k := cache.Key{User: int64(u), Channel: int64(w)}
				if r.IntN(5) == 0 {
					if _, err := e.Reset(context.Background(), k, 0, false); err != nil {
						t.Error(err)
						return
					}
					want[w][u] = 0
					continue
				}
				if _, err := e.Incr(context.Background(), k, 1); err != nil {
					t.Error(err)
					return
				}
				want[w][u]++
			}
		}()
	}
	wg.Wait()
	if err := e.Sync(context.Background()); err != nil {
		t.Fatal(err)
	}
	for w := range workers {
		for u := range users {
			k := cache.Key{User: int64(u), Channel: int64(w)}
			if got := st.state(k).MentionCount; int64(got) != want[w][u] {
				t.Fatalf("store %v: got %d, want %d", k, got, want[w][u])
			}
			if got, err := e.Get(context.Background(), k); err != nil || int64(got.MentionCount) != want[w][u] {
				t.Fatalf("engine %v: got %d %v, want %d", k, got.MentionCount, err, want[w][u])
			}
		}
	}
	if s := e.Stats(); s.Evictions == 0 {
		t.Fatalf("no evictions: %+v", s)
	}
}

// TestEngineOutage: with the store refusing writes, the engine keeps
// serving cached states, queues, then refuses new states with
// cache.ErrFull; after recovery everything is written exactly.
func TestEngineOutage(t *testing.T) {
	st := newFakeStore()
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 64, FlushInterval: 10 * time.Millisecond, MaxPending: 32, FullWait: time.Millisecond})
	ctx := context.Background()
	st.failWrite.Store(true)
	want := map[cache.Key]int32{}
	refused := 0
	for i := range 200 {
		k := cache.Key{User: int64(i), Channel: 1}
		n, err := e.Incr(ctx, k, int64(i+1))
		switch {
		case errors.Is(err, cache.ErrFull):
			refused++
		case err != nil:
			t.Fatalf("Incr %d: %v", i, err)
		default:
			want[k] = n
		}
	}
	if refused == 0 {
		t.Fatal("no change was refused with 64 entries and 32 pending")
	}
	if len(want) > 64+32 {
		t.Fatalf("accepted %d changes; at most 96 can be held", len(want))
	}
	// Cached states still serve.
	for k, n := range want {
		if got, err := e.Get(ctx, k); err == nil && got.MentionCount != n {
			t.Fatalf("%v: got %d, want %d", k, got.MentionCount, n)
		}
	}
	for s := e.Stats(); s.WriteErrors == 0 || s.Pending == 0; s = e.Stats() {
		time.Sleep(time.Millisecond) // the writer has yet to try
	}
	st.failWrite.Store(false)
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	for k, n := range want {
		if got := st.state(k).MentionCount; got != n {
			t.Fatalf("after recovery %v: got %d, want %d", k, got, n)
		}
	}
}

func TestEngineGetMany(t *testing.T) {
	st := newFakeStore()
	for c := range int64(50) {
		st.Write(context.Background(), []Record{{Key: cache.Key{User: 1, Channel: c}, State: cache.State{MentionCount: int32(c), LastMessageID: c * 10}, Stamp: 1}})
	}
	e := startEngine(t, EngineConfig{Store: st, CacheEntries: 1000, FlushInterval: time.Hour})
	e.Incr(context.Background(), cache.Key{User: 1, Channel: 3}, 100) // one cached and changed
	chans := []int64{3, 0, 49, 3, 77}
	out := make([]cache.State, len(chans))
	if err := e.GetMany(context.Background(), 1, chans, out); err != nil {
		t.Fatal(err)
	}
	want := []cache.State{{MentionCount: 103, LastMessageID: 30}, {}, {MentionCount: 49, LastMessageID: 490}, {MentionCount: 103, LastMessageID: 30}, {}}
	for i := range want {
		if out[i] != want[i] {
			t.Fatalf("GetMany: got %v, want %v", out, want)
		}
	}
	st.failLoad.Store(true)
	if err := e.GetMany(context.Background(), 2, []int64{1, 2}, make([]cache.State, 2)); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("GetMany with the store down: got %v", err)
	}
	if n := testing.AllocsPerRun(100, func() { e.GetMany(context.Background(), 1, chans[:3], out) }); n != 0 {
		t.Fatalf("GetMany of cached states: %v allocs, want 0", n)
	}
}

// TestWriteQueue: writers take whole users, in the order users first
// arrived, each user's keys in arrival order; a user larger than a batch
// is split only when it comes first; a failed batch goes back in front.
func TestWriteQueue(t *testing.T) {
	pending := make(map[cache.Key]pendingRecord)
	q := newWriteQueue(pending, 1)
	push := func(u, c int64) {
		k := cache.Key{User: u, Channel: c}
		pending[k] = pendingRecord{}
		q.pushBack(k)
	}
	take := func(room int) []cache.Key {
		var got []cache.Key
		q.take(room, 0, func(k cache.Key) { got = append(got, k) })
		return got
	}
	// Three users interleaved, as a hash-ordered flush hands them over.
	for c := range int64(4) {
		for u := int64(1); u <= 3; u++ {
			push(u, c)
		}
	}
	for c := int64(4); c < 40; c++ {
		push(3, c) // user 3 has 40 keys
	}
	if q.size != 48 {
		t.Fatalf("size %d, want 48", q.size)
	}
	keys := func(u int64, from, to int64) []cache.Key {
		var ks []cache.Key
		for c := from; c < to; c++ {
			ks = append(ks, cache.Key{User: u, Channel: c})
		}
		return ks
	}
	// Room for 10: users 1 and 2 whole; user 3 (40) does not fit and waits.
	if got, want := take(10), append(keys(1, 0, 4), keys(2, 0, 4)...); !slices.Equal(got, want) {
		t.Fatalf("take(10) = %v, want %v", got, want)
	}
	// User 3 first and larger than the room: split.
	got := take(16)
	if want := keys(3, 0, 16); !slices.Equal(got, want) {
		t.Fatalf("take(16) = %v, want %v", got, want)
	}
	// The write failed: back in front, in order, before the rest of user 3.
	for i := len(got) - 1; i >= 0; i-- {
		q.pushFront(got[i])
	}
	push(4, 0)
	if got, want := take(100), append(keys(3, 0, 40), keys(4, 0, 1)...); !slices.Equal(got, want) {
		t.Fatalf("take(100) after the requeue = %v, want %v", got, want)
	}
	if q.size != 0 || len(q.users) != 0 || q.order.size != 0 {
		t.Fatalf("queue not empty: size %d, users %d, order %d", q.size, len(q.users), q.order.size)
	}
	if _, ok := q.front(); ok {
		t.Fatal("front of an empty queue")
	}

	// A bound on users: one user a take, whatever the room, and exceeds
	// tells whether another writer has a take waiting.
	for u := int64(5); u <= 7; u++ {
		push(u, 0)
		push(u, 1)
	}
	if !q.exceeds(100, 1) || q.exceeds(100, 3) || !q.exceeds(5, 0) || q.exceeds(6, 0) {
		t.Fatalf("exceeds with 3 users of 2 keys: wrong")
	}
	for u := int64(5); u <= 7; u++ {
		var got []cache.Key
		q.take(100, 1, func(k cache.Key) { got = append(got, k) })
		if want := keys(u, 0, 2); !slices.Equal(got, want) {
			t.Fatalf("take(100, 1) = %v, want %v", got, want)
		}
	}
	if q.size != 0 || len(q.users) != 0 {
		t.Fatalf("queue not empty after one-user takes: size %d, users %d", q.size, len(q.users))
	}
}

func TestNoWaitNeverReadsThrough(t *testing.T) {
	store := newFakeStore()
	store.rows[cache.Key{User: 1, Channel: 1}] = Record{State: cache.State{MentionCount: 7, LastMessageID: 9}, Stamp: 1}
	e := startEngine(t, EngineConfig{Store: store, CacheEntries: 64})
	nw, ctx := e.NoWait(), context.Background()
	k := cache.Key{User: 1, Channel: 1}
	if _, err := nw.Incr(ctx, k, 1); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("Incr on a miss without waiting: err %v, want ErrWouldBlock", err)
	}
	if _, err := nw.Reset(ctx, k, 1, true); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("Reset: err %v, want ErrWouldBlock", err)
	}
	if _, err := nw.Get(ctx, k); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("Get: err %v, want ErrWouldBlock", err)
	}
	out := make([]cache.State, 2)
	if err := nw.GetMany(ctx, 1, []int64{1, 2}, out); !errors.Is(err, ErrWouldBlock) {
		t.Fatalf("GetMany: err %v, want ErrWouldBlock", err)
	}
	if got := store.loads.Load(); got != 0 {
		t.Fatalf("%d store loads without waiting, want 0", got)
	}
	// Nothing changed: the same operation where it may wait sees the
	// stored state, and then the cached one is served without waiting.
	n, err := e.Incr(context.Background(), k, 1)
	if err != nil || n != 8 {
		t.Fatalf("Incr = %d, %v; want 8", n, err)
	}
	if n, err := nw.Incr(ctx, k, 1); err != nil || n != 9 {
		t.Fatalf("Incr on a hit without waiting = %d, %v; want 9", n, err)
	}
}

// TestFlushHoldMeasured: a flush reports how long it held a shard's lock,
// once.
func TestFlushHoldMeasured(t *testing.T) {
	e := startEngine(t, EngineConfig{Store: newFakeStore(), CacheEntries: 10_000, FlushInterval: time.Hour})
	ctx := context.Background()
	for c := range int64(100) {
		if _, err := e.Incr(ctx, cache.Key{User: c, Channel: c}, 1); err != nil {
			t.Fatal(err)
		}
	}
	e.TakeFlushHold()
	if err := e.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if d := e.TakeFlushHold(); d <= 0 {
		t.Fatalf("a flush of 100 dirty read states held no lock: %v", d)
	}
	if d := e.TakeFlushHold(); d != 0 {
		t.Fatalf("a new window reported %v", d)
	}
	if _, ok := e.TakeJournalWait(); ok {
		t.Fatal("an engine without a journal reported a journal wait")
	}
}
