package cache

// The pointer-rich LRU of Discord's Go design, the cache the arena table
// (table.go) exists to replace: a benchmark baseline and nothing else, not
// for production. It is the Table of a build with -tags ptrcache
// (ptrcache.go), so that the latency-under-GC benchmark compares the same
// server binary (same persist.Engine, commands and server) with only the
// cache swapped; and BenchmarkTable (table_timing_test.go) runs it beside
// the arena in the default build. Nothing else in a default build refers
// to it, so the linker leaves it out of the server.
//
// Each shard is a map[Key]*list.Element and a container/list, and every
// read state is a heap-allocated struct behind a list element, so the
// garbage collector traces every cached entry on every cycle: that cost is
// what the benchmark measures.
//
// It keeps the arena table's exported API and semantics exactly: the same
// sharding by xxhash, the same per-shard capacities, loading placeholders,
// WriteBack handoff and pinning, stamps and counters. Only eviction
// differs: true LRU (a hit moves the entry to the front; victims are taken
// from the back) instead of CLOCK.

import (
	"container/list"
	"math"
	"math/bits"
	"sync"
	"time"

	"github.com/readstates/readstates/internal/latency"
)

// lruItem is one cached read state, a heap object of its own, held by a
// list element's Value.
type lruItem struct {
	key     Key
	state   State
	dirty   bool // changed since it was last known to be written
	loading bool // placeholder reserved by Reserve, not yet filled
}

// ptrTable is a fixed-capacity map from Key to State with LRU eviction,
// built for write-behind. All methods are safe for concurrent use.
type ptrTable struct {
	shards    []ptrShard
	shardBits uint
	writeBack func(Snapshot) Handoff
	onChange  func(Snapshot)
	onRemove  func(Key)
	flushHold latency.Peak
	stampClock
}

// ptrShard is one lock's worth of the table.
//
// Invariants, with mu held:
//   - items and lru hold the same elements, most recently used at the
//     front; len(items) <= limit;
//   - dirty counts items with dirty set, loading those with loading set;
//     an item is never both.
type ptrShard struct {
	mu      sync.Mutex
	items   map[Key]*list.Element
	lru     *list.List
	limit   int
	dirty   int
	loading int

	hits, misses, evictions, pinned uint64

	_ [64]byte // keeps neighbouring shards' locks off one cache line
}

// newPtrTable returns a table with room for cfg.Entries read states. Each
// shard's map is sized for its capacity up front; entries are allocated as
// they are inserted.
func newPtrTable(cfg Config) (*ptrTable, error) {
	shards, err := shardCount(cfg)
	if err != nil {
		return nil, err
	}
	t := &ptrTable{
		shards:    make([]ptrShard, shards),
		shardBits: uint(bits.TrailingZeros(uint(shards))),
		writeBack: cfg.WriteBack,
		onChange:  cfg.OnChange,
		onRemove:  cfg.OnRemove,
	}
	t.now = cfg.Now
	if t.now == nil {
		t.now = time.Now
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.limit = shardLimit(cfg.Entries, shards, i)
		s.items = make(map[Key]*list.Element, s.limit)
		s.lru = list.New()
	}
	return t, nil
}

// Close drops the entries. No method may be called during or after Close.
func (t *ptrTable) Close() error {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		s.items, s.lru = nil, nil
		s.mu.Unlock()
	}
	return nil
}

// shardOf returns the key's shard, its user's, as the arena table does.
func (t *ptrTable) shardOf(k Key) *ptrShard {
	return &t.shards[shardOf(k.User, t.shardBits)]
}

// lookupLocked returns the ready item of k, counting the hit or miss if
// count, and moving a hit to the front.
func (s *ptrShard) lookupLocked(k Key, count bool) *lruItem {
	el, ok := s.items[k]
	if !ok || el.Value.(*lruItem).loading {
		if count {
			s.misses++
		}
		return nil
	}
	if count {
		s.hits++
	}
	s.lru.MoveToFront(el)
	return el.Value.(*lruItem)
}

// changedLocked marks it dirty and reports the change to OnChange.
func (t *ptrTable) changedLocked(s *ptrShard, it *lruItem) {
	if !it.dirty {
		s.dirty++
		it.dirty = true
	}
	if t.onChange != nil {
		t.onChange(t.snapshotLocked(it))
	}
}

func (t *ptrTable) get(k Key, count bool) (State, error) {
	s := t.shardOf(k)
	s.mu.Lock()
	st, err := t.getLocked(s, k, count)
	s.mu.Unlock()
	return st, err
}

func (t *ptrTable) getLocked(s *ptrShard, k Key, count bool) (State, error) {
	it := s.lookupLocked(k, count)
	if it == nil {
		return State{}, ErrMiss
	}
	return it.state, nil
}

// Contains reports whether k is cached or being loaded, counting nothing
// and leaving its recency alone.
func (t *ptrTable) Contains(k Key) bool {
	s := t.shardOf(k)
	s.mu.Lock()
	_, ok := s.items[k]
	s.mu.Unlock()
	return ok
}

func (t *ptrTable) incr(k Key, delta int64, count bool) (int32, error) {
	s := t.shardOf(k)
	s.mu.Lock()
	n, err := t.incrLocked(s, k, delta, count)
	s.mu.Unlock()
	return n, err
}

func (t *ptrTable) incrLocked(s *ptrShard, k Key, delta int64, count bool) (int32, error) {
	it := s.lookupLocked(k, count)
	if it == nil {
		return 0, ErrMiss
	}
	cur := int64(it.state.MentionCount)
	var next int64
	switch {
	case delta > math.MaxInt32-cur:
		return int32(cur), ErrOverflow
	case delta <= -cur:
		next = 0
	default:
		next = cur + delta
	}
	if next != cur {
		it.state.MentionCount = int32(next)
		t.changedLocked(s, it)
	}
	return int32(next), nil
}

func (t *ptrTable) reset(k Key, msgID int64, setMsg, count bool) (int32, error) {
	s := t.shardOf(k)
	s.mu.Lock()
	prev, err := t.resetLocked(s, k, msgID, setMsg, count)
	s.mu.Unlock()
	return prev, err
}

func (t *ptrTable) resetLocked(s *ptrShard, k Key, msgID int64, setMsg, count bool) (int32, error) {
	it := s.lookupLocked(k, count)
	if it == nil {
		return 0, ErrMiss
	}
	prev := it.state.MentionCount
	if prev != 0 || (setMsg && it.state.LastMessageID != msgID) {
		it.state.MentionCount = 0
		if setMsg {
			it.state.LastMessageID = msgID
		}
		t.changedLocked(s, it)
	}
	return prev, nil
}

// atomically is Lookups.Atomically.
func (t *ptrTable) atomically(keys []Key, fn func(Locked), count bool) (missing Key, ok bool) {
	idx := lockOrder(keys, t.shardBits)
	for _, i := range idx {
		t.shards[i].mu.Lock()
	}
	defer func() {
		for _, i := range idx {
			t.shards[i].mu.Unlock()
		}
	}()
	for _, k := range keys {
		if el, found := t.shardOf(k).items[k]; !found || el.Value.(*lruItem).loading {
			return k, false
		}
	}
	if count {
		for _, k := range keys {
			t.shardOf(k).hits++
		}
	}
	fn(Locked{
		locked: idx, shardBits: t.shardBits,
		get:   func(k Key) (State, error) { return t.getLocked(t.shardOf(k), k, false) },
		incr:  func(k Key, d int64) (int32, error) { return t.incrLocked(t.shardOf(k), k, d, false) },
		reset: func(k Key, m int64, set bool) (int32, error) { return t.resetLocked(t.shardOf(k), k, m, set, false) },
	})
	return Key{}, true
}

// Reserve prepares the read-through of k. If k is cached it returns false
// (retry the operation). Otherwise it inserts a loading placeholder and
// returns true: the caller now loads k and must call Fill or Abort.
//
// While the placeholder exists, k's operations return ErrMiss, it is never
// evicted, and nothing else can insert k. Since k was absent, its newest
// state is wherever WriteBack sent it, so the caller reads that (its
// unwritten snapshots, then the database) and Fills it; no newer state can
// appear in between.
//
// Making room may evict other entries; if none can be evicted Reserve
// returns ErrFull.
func (t *ptrTable) Reserve(k Key) (bool, error) {
	s := t.shardOf(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.items[k]; ok {
		if el.Value.(*lruItem).loading {
			return false, ErrReserved
		}
		return false, nil
	}
	if len(s.items) >= s.limit && !t.evictLocked(s) {
		return false, ErrFull
	}
	s.items[k] = s.lru.PushFront(&lruItem{key: k, loading: true})
	s.loading++
	return true, nil
}

// Fill turns k's loading placeholder into a clean entry holding st, read
// with stamp: every later stamp of the table is above it. It does nothing
// if k has no placeholder. If ok is not nil it is called under k's shard
// lock, and if it says no the placeholder is removed as by Abort.
func (t *ptrTable) Fill(k Key, st State, stamp int64, ok func() bool) {
	t.observe(stamp)
	s := t.shardOf(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	el, found := s.items[k]
	if !found || !el.Value.(*lruItem).loading {
		return
	}
	s.loading--
	if ok != nil && !ok() {
		if t.onRemove != nil {
			t.onRemove(k)
		}
		s.removeLocked(el)
		return
	}
	it := el.Value.(*lruItem)
	it.state, it.loading = st, false
	s.lru.MoveToFront(el)
}

// Abort removes k's loading placeholder, after a failed load.
func (t *ptrTable) Abort(k Key) {
	s := t.shardOf(k)
	s.mu.Lock()
	if el, ok := s.items[k]; ok && el.Value.(*lruItem).loading {
		if t.onRemove != nil {
			t.onRemove(k)
		}
		s.loading--
		s.removeLocked(el)
	}
	s.mu.Unlock()
}

func (s *ptrShard) removeLocked(el *list.Element) {
	delete(s.items, s.lru.Remove(el).(*lruItem).key)
}

// evictLocked removes the least recently used entry that is not loading
// and, if dirty, is taken by WriteBack: it walks from the back of the
// list. It reports false if no entry could be evicted.
func (t *ptrTable) evictLocked(s *ptrShard) bool {
	hookRefused := false
	for el := s.lru.Back(); el != nil; el = el.Prev() {
		if hookRefused && len(s.items)-s.dirty-s.loading == 0 {
			return false // only dirty entries are left, and WriteBack is full
		}
		it := el.Value.(*lruItem)
		switch {
		case it.loading:
		case !it.dirty:
			t.evictItemLocked(s, el)
			return true
		case hookRefused:
		case t.writeBack == nil || t.writeBack(t.snapshotLocked(it)).taken():
			s.dirty--
			t.evictItemLocked(s, el)
			return true
		default:
			hookRefused = true
			s.pinned++
		}
	}
	return false
}

func (t *ptrTable) evictItemLocked(s *ptrShard, el *list.Element) {
	if t.onRemove != nil {
		t.onRemove(el.Value.(*lruItem).key)
	}
	s.evictions++
	s.removeLocked(el)
}

// Insert is Table.Insert; the item goes to the back of the LRU list.
func (t *ptrTable) Insert(k Key, st State, stamp int64, ok func() bool) bool {
	s := t.shardOf(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, found := s.items[k]; found || !ok() {
		return true
	}
	if len(s.items) >= s.limit && !t.evictLocked(s) {
		return false
	}
	t.observe(stamp)
	s.items[k] = s.lru.PushBack(&lruItem{key: k, state: st})
	return true
}

func (t *ptrTable) snapshotLocked(it *lruItem) Snapshot {
	return Snapshot{Key: it.key, State: it.state, Stamp: t.stamp()}
}

// Shards returns the number of shards, the unit of Flush.
func (t *ptrTable) Shards() int { return len(t.shards) }

// ShardOf returns the shard that holds user's read states, in [0, Shards()).
func (t *ptrTable) ShardOf(user int64) int { return shardOf(user, t.shardBits) }

// Flush offers the snapshot of every dirty entry of shard i to WriteBack,
// least recently used first, and marks clean those it takes. It stops at
// the first refusal and reports whether the shard was done. Without
// WriteBack it does nothing.
func (t *ptrTable) Flush(i int) (handed int, done bool) {
	if t.writeBack == nil {
		return 0, true
	}
	s := &t.shards[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	start := time.Now()
	defer func() { t.flushHold.Record(time.Since(start)) }()
	for el := s.lru.Back(); el != nil && s.dirty > 0; el = el.Prev() {
		it := el.Value.(*lruItem)
		if !it.dirty {
			continue
		}
		if !t.writeBack(t.snapshotLocked(it)).taken() {
			s.pinned++
			return handed, false
		}
		it.dirty = false
		s.dirty--
		handed++
	}
	return handed, true
}

// TakeFlushHold returns the longest Flush held a shard's lock since the
// last call (the baseline holds it for the whole shard).
func (t *ptrTable) TakeFlushHold() time.Duration { return t.flushHold.Take() }

// RecordDirty reports every dirty entry of shard i to OnChange again and
// leaves it dirty; see the arena table's.
func (t *ptrTable) RecordDirty(i int) int {
	if t.onChange == nil {
		return 0
	}
	s := &t.shards[i]
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for el := s.lru.Back(); el != nil && n < s.dirty; el = el.Prev() {
		if it := el.Value.(*lruItem); it.dirty {
			t.onChange(t.snapshotLocked(it))
			n++
		}
	}
	return n
}

// Stats returns counters summed over the shards; each shard is read under
// its lock, so the sum is not one instant's.
func (t *ptrTable) Stats() Stats {
	var st Stats
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		st.Entries += int64(len(s.items))
		st.Capacity += int64(s.limit)
		st.Dirty += int64(s.dirty)
		st.Hits += s.hits
		st.Misses += s.misses
		st.Evictions += s.evictions
		st.Pinned += s.pinned
		s.mu.Unlock()
	}
	return st
}

// Drop is Table.Drop.
func (t *ptrTable) Drop(drop func(Key) bool, dirty bool) (dropped, kept int) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, el := range s.items {
			if !drop(k) {
				continue
			}
			it := el.Value.(*lruItem)
			if it.loading || (it.dirty && !dirty) {
				kept++
				continue
			}
			if it.dirty {
				s.dirty--
			}
			if t.onRemove != nil {
				t.onRemove(k)
			}
			s.removeLocked(el)
			dropped++
		}
		s.mu.Unlock()
	}
	return dropped, kept
}

// Users is Table.Users: each shard's users from its most recently used.
func (t *ptrTable) Users(dst []int64) []int64 {
	seen := make(map[int64]bool)
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for el := s.lru.Front(); el != nil; el = el.Next() {
			if it := el.Value.(*lruItem); !it.loading && !seen[it.key.User] {
				seen[it.key.User] = true
				dst = append(dst, it.key.User)
			}
		}
		s.mu.Unlock()
	}
	return dst
}
